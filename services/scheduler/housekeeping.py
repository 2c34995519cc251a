"""Now and then: recount pending timers for the gauge, delete long-settled timers."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.repository import TimerRepository
from services.scheduler.settings import SchedulerSettings
from shared import db
from shared.clock import Clock
from shared.logging import get_logger

log = get_logger(__name__)

PRUNE_EVERY_S = 60.0
PRUNE_BATCH = 10_000


class Housekeeper:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        settings: SchedulerSettings,
        metrics: SchedulerMetrics,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._refresh_s = settings.pending_refresh_s
        self._keep = timedelta(seconds=settings.keep_settled_s)
        self._metrics = metrics
        self._pruned_at = 0.0

    async def run(self) -> None:
        while True:
            try:
                await self.refresh_pending()
                await self._prune_now_and_then()
            except Exception as exc:
                log.warning("scheduler.housekeeping_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self._refresh_s)

    async def refresh_pending(self) -> None:
        async with self._sessions() as session:
            pending, _first = await TimerRepository(session).pending_stats()
        self._metrics.pending.set(pending)

    async def _prune_now_and_then(self) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = time.monotonic()
        # Settled rows are kept a while so a late repeat of their command still finds them.
        before = self._clock.now() - self._keep
        while await self.prune_once(before) == PRUNE_BATCH:
            pass

    async def prune_once(self, before: datetime) -> int:
        async with db.transaction(self._sessions) as session:
            return await TimerRepository(session).prune_settled(before, PRUNE_BATCH)
