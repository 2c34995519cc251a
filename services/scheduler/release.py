"""The release loop: claim due timers in batches, announce each as ``timers.fired`` (the
activator's quiet-hours timers as ``timers.release``, see ``TimerFired.subject``), mark them
fired, commit.

Publishing happens inside the claiming transaction, before its commit. A crash in between
leaves the timers pending, so they are published again later with the same
``Nats-Msg-Id`` and JetStream drops the repeat: each timer fires once, with any number
of replicas (``SKIP LOCKED`` gives each a disjoint batch).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import PubAck
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.repository import TimerRepository
from services.scheduler.settings import SchedulerSettings
from shared import bus, db
from shared.bus import MSG_ID
from shared.clock import Clock, wait_or_wake
from shared.logging import get_logger
from shared.timers import TimerFired, TimerKind
from shared.topology import TIMERS, dead_letter_subject

log = get_logger(__name__)

# When due timers exist but none could be claimed (another replica holds them), look
# again this soon rather than spinning.
BUSY_PAUSE_S = 0.02
ERROR_PAUSE_S = 1.0


class NothingPublished(Exception):
    """Not one timer of a claimed batch was acknowledged by JetStream."""


class Releaser:
    """Fires due timers, in due order, and sleeps until the next one falls due."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        js: JetStreamContext,
        clock: Clock,
        settings: SchedulerSettings,
        metrics: SchedulerMetrics,
    ) -> None:
        self._sessions = sessions
        self._js = js
        self._clock = clock
        self._batch = settings.claim_batch
        self._idle_s = settings.idle_poll_s
        self._publish_timeout_s = settings.publish_timeout_s
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._sleeping_until: datetime | None = None
        self.idle_passes = 0

    def notify(self, earliest_due: datetime) -> None:
        """A timer was stored: look again now if it falls due before the loop would."""
        if self._sleeping_until is None or earliest_due < self._sleeping_until:
            self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                while await self.release_batch() == self._batch:
                    pass
                await self._sleep_until_next_due()
            except Exception as exc:
                log.warning("scheduler.release_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(ERROR_PAUSE_S)

    async def release_batch(self) -> int:
        """Release one batch of due timers; returns how many were claimed."""
        now = self._clock.now()
        async with db.transaction(self._sessions) as session:
            repo = TimerRepository(session)
            due = await repo.claim_due(now, self._batch)
            if not due:
                return 0
            fitting, too_large = self._by_size(self._announcements(due, now))
            published = await self._publish(fitting)
            dead = [m for m in too_large if await self._dead_letter(m)]
            if not published and not dead:
                raise NothingPublished(f"none of {len(due)} due timers was acknowledged")
            await repo.mark_fired([m.timer_id for m in published], now)
            await repo.mark_dead([m.timer_id for m in dead], now)
        self._observe(published)
        self._metrics.dead.inc(len(dead))
        return len(due)

    def _by_size(self, messages: Sequence[TimerFired]) -> tuple[list[TimerFired], list[TimerFired]]:
        """The messages the server takes, and those it never would (larger than its
        ``max_payload``: sending one would close the connection)."""
        limit = bus.max_payload(self._js)
        fitting: list[TimerFired] = []
        too_large: list[TimerFired] = []
        for m in messages:
            size = bus.wire_size(m.json_bytes(), {MSG_ID: m.msg_id})
            (fitting if size <= limit else too_large).append(m)
        return fitting, too_large

    async def _dead_letter(self, m: TimerFired) -> bool:
        """Record a timer that can never fire on ``deadletter.TIMERS.scheduler-release``;
        whether it was recorded (if not, it stays pending and is tried again)."""
        data = m.json_bytes()
        why = f"the fired message is {len(data)} bytes; the server takes "
        why += f"{bus.max_payload(self._js)} at most"
        headers = {bus.DEAD_REASON: why, bus.DEAD_SUBJECT: m.subject}
        data, headers = bus.fitting_copy(self._js, data, headers)
        subject = dead_letter_subject(TIMERS.name, "scheduler-release")
        try:
            await bus.publish(self._js, subject, data, f"dl:{m.msg_id}", headers)
        except Exception as exc:
            log.error("scheduler.dead_letter_failed", timer_id=m.timer_id, error=repr(exc))
            return False
        log.error("scheduler.dead_lettered", timer_id=m.timer_id, reason=why)
        return True

    @staticmethod
    def _announcements(due: Sequence[Row[Any]], now: datetime) -> list[TimerFired]:
        """The fired message of each claimed timer. A row that cannot make one (written by
        a newer version, say) is left pending for a replica that can, not in the way."""
        messages = []
        for row in due:
            try:
                messages.append(_fired(row, now))
            except ValueError as exc:
                log.error("scheduler.unreleasable_timer", timer_id=row.timer_id, error=str(exc))
        return messages

    async def _publish(self, messages: Sequence[TimerFired]) -> list[TimerFired]:
        """Publish with at most ``max_in_flight`` awaiting their acks; the ones acked.

        Publishing does not yield to the event loop while a slot is free, so the client
        writes many messages per system call; the deadline covers slots that never free up.
        """
        acks: list[asyncio.Future[PubAck]] = []
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                for m in messages:
                    data, headers = m.json_bytes(), {MSG_ID: m.msg_id}
                    acks.append(await self._js.publish_async(m.subject, data, headers=headers))
                await asyncio.wait(acks)
        except Exception as exc:
            # What was not acked stays pending and is released on a later pass.
            log.warning("scheduler.publish_failed", error=f"{type(exc).__name__}: {exc}")
        for ack in acks:
            ack.cancel()  # frees the in-flight slot of one that will not be waited for
        return [m for m, ack in zip(messages, acks, strict=False) if _acked(ack)]

    def _observe(self, published: Sequence[TimerFired]) -> None:
        acked_at = self._clock.now()
        for m in published:
            self._metrics.lateness.observe(max(0.0, (acked_at - m.due_at).total_seconds()))
        for kind, count in Counter(m.kind.value for m in published).items():
            self._metrics.fired.labels(kind).inc(count)

    async def _sleep_until_next_due(self) -> None:
        """Sleep until the next pending timer falls due, at most ``idle_poll_s``; a clock
        change or an earlier new timer (:meth:`notify`) ends the sleep at once."""
        self._wake.clear()  # before reading: a timer stored after the read wakes us
        async with self._sessions() as session:
            next_due = await TimerRepository(session).next_due()
        now = self._clock.now()
        until = now + timedelta(seconds=self._idle_s)
        if next_due is not None:
            until = min(until, next_due)
        self.idle_passes += 1
        seconds = (until - now).total_seconds()
        self._sleeping_until = until
        try:
            await self._wait(max(seconds, BUSY_PAUSE_S))
        finally:
            self._sleeping_until = None

    async def _wait(self, seconds: float) -> None:
        await wait_or_wake(self._clock, seconds, self._wake)


def _acked(ack: asyncio.Future[PubAck]) -> bool:
    return ack.done() and not ack.cancelled() and ack.exception() is None


def _fired(row: Row[Any], now: datetime) -> TimerFired:
    return TimerFired(
        timer_id=row.timer_id,
        workspace_id=row.workspace_id,
        profile_id=row.profile_id,
        journey_id=row.journey_id,
        kind=TimerKind(row.kind),
        due_at=row.due_at,
        fired_at=now,
        payload=row.payload,
    )
