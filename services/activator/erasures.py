"""Profile erasure: the runtime deleted a profile and sent ``activations.erase``.

Deliveries of the profile that have not gone out are skipped (``profile_erased``), every
delivery of it loses its recipient and request, and the erasure is remembered, so a
request made before it (it may still be on its way) is skipped on arrival too.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.activator.repository import DeliveryRepository
from shared import db
from shared.clock import Clock
from shared.erasure import ProfileErased
from shared.logging import get_logger

log = get_logger(__name__)


class Erasures:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def take(self, erasures: Sequence[ProfileErased]) -> None:
        async with db.transaction(self._sessions) as session:
            repo = DeliveryRepository(session)
            for e in sorted(erasures, key=lambda e: (e.workspace_id, e.profile_id)):
                skipped = await repo.erase(
                    e.workspace_id, e.profile_id, e.erased_at, self._clock.now()
                )
                log.info("profile.erased", workspace_id=e.workspace_id, skipped=skipped)
