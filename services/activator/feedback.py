"""The events a delivery feeds back onto the profile: ``message_sent`` and ``message_failed``,
published on ``EVENTS`` like any accepted event, so journeys can react to them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.activator.models import Delivery
from shared.events import AcceptedEvent

MESSAGE_SENT = "message_sent"
MESSAGE_FAILED = "message_failed"


@dataclass(frozen=True)
class Feedback:
    """One outbox row: where it goes, its dedup id, and the event itself."""

    subject: str
    msg_id: str
    payload: dict[str, Any]


def feedback(
    delivery: Delivery, name: str, now: datetime, partitions: int, reason: str | None = None
) -> Feedback:
    """The event of ``delivery``'s outcome. Its id derives from the activation id, so a
    second recording of the same outcome is dropped by JetStream and by the runtime."""
    suffix = "sent" if name == MESSAGE_SENT else "failed"
    properties: dict[str, Any] = {
        "journey_id": delivery.journey_id,
        "step_id": delivery.step_id,
        "activation_id": delivery.activation_id,
        "channel": delivery.channel,
    }
    if reason is not None:
        properties["reason"] = reason
    event = AcceptedEvent(
        workspace_id=delivery.workspace_id,
        event_id=f"{delivery.activation_id}:{suffix}",
        profile_id=delivery.profile_id,
        name=name,
        timestamp=now,
        accepted_at=now,
        properties=properties,
        kind="event",
    )
    return Feedback(event.subject(partitions), event.msg_id, event.model_dump(mode="json"))
