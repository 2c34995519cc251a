"""The envelope of an accepted event on the ``EVENTS`` stream, and where it is published.

The gateway publishes every accepted event (and every profile upsert) as one
:class:`AcceptedEvent` on ``events.<workspace_id>.<partition>``, where the partition is a
stable hash of the profile id. One profile always lands on the same subject, so a consumer
that reads each subject in order sees that profile's events in the order they were accepted.
"""

from __future__ import annotations

import zlib
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints

SUBJECT_PREFIX = "events"

# A NATS subject token: no dots, wildcards or whitespace.
SubjectToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]

EventKind = Literal["event", "profile"]


class AcceptedEvent(BaseModel):
    """One accepted event as it travels from the gateway to the runtime.

    ``kind`` is ``"event"`` for a posted event and ``"profile"`` for a profile upsert
    (``PUT /v1/profiles/{id}``). A profile upsert carries the attributes to set in
    ``traits`` and the consent map in ``properties["consent"]``; its ``name`` is
    :data:`PROFILE_UPDATED`. ``timestamp`` is when it happened (as the sender says),
    ``accepted_at`` when the gateway accepted it, both on the product's clock.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace_id: SubjectToken
    event_id: Text
    profile_id: Text
    name: Text
    timestamp: AwareDatetime
    accepted_at: AwareDatetime
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    kind: EventKind = "event"

    @property
    def msg_id(self) -> str:
        return msg_id_for(self.workspace_id, self.event_id)

    def subject(self, partitions: int) -> str:
        return subject_for(self.workspace_id, self.profile_id, partitions)


PROFILE_UPDATED = "profile_updated"


def partition_of(profile_id: str, partitions: int) -> int:
    """The partition of ``profile_id`` in ``[0, partitions)``; the same in every process.

    CRC-32 rather than ``hash()``: Python salts string hashes per process.
    """
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    return zlib.crc32(profile_id.encode()) % partitions


def subject_for(workspace_id: str, profile_id: str, partitions: int) -> str:
    """``events.<workspace_id>.<partition>``: the subject of every event of this profile."""
    return f"{SUBJECT_PREFIX}.{workspace_id}.{partition_of(profile_id, partitions)}"


def msg_id_for(workspace_id: str, event_id: str) -> str:
    """The ``Nats-Msg-Id``: JetStream drops a second publish of the same event."""
    return f"{workspace_id}:{event_id}"


def workspace_subjects(workspace_id: str) -> str:
    """Filter subject for every event of one workspace."""
    return f"{SUBJECT_PREFIX}.{workspace_id}.*"
