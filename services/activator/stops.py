"""Stopped journeys: the designer announces a stop on ``journeys.changed``.

Stopping is final, so the journey's deliveries not gone out are skipped (``journey_stopped``)
and the stop is remembered: a request the runtime made before it heard the stop may still
be on its way, and is skipped on arrival. Other changes (publish, pause, resume) are not
the activator's business: a paused journey's waiting messages still go out.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.activator.repository import DeliveryRepository
from shared import db
from shared.clock import Clock
from shared.logging import get_logger

log = get_logger(__name__)

STOPPED = "stopped"


class JourneyChanged(BaseModel):
    """The part of the designer's announcement the activator reads."""

    model_config = ConfigDict(extra="ignore")

    workspace_id: str = Field(min_length=1, max_length=64)
    journey_id: str = Field(min_length=1, max_length=64)
    change: str = Field(max_length=64)


class Stops:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def take(self, changes: Sequence[JourneyChanged]) -> None:
        stops = sorted({(c.workspace_id, c.journey_id) for c in changes if c.change == STOPPED})
        if not stops:
            return
        async with db.transaction(self._sessions) as session:
            repo = DeliveryRepository(session)
            for workspace_id, journey_id in stops:
                skipped = await repo.stop_journey(workspace_id, journey_id, self._clock.now())
                log.info(
                    "journey.stopped", workspace_id=workspace_id, journey_id=journey_id,
                    skipped=skipped,
                )  # fmt: skip
