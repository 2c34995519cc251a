"""Quiet hours through the scheduler: a message that may not go out now is ``held``, and a
``quiet_hours`` timer asks the scheduler to release it when the window opens.

The timer is written to the outbox in the transaction that holds the delivery, so it is
scheduled exactly when the hold commits. The scheduler announces it on
``timers.release.<workspace>`` (not ``timers.fired``, which is the runtime's); the
``activator-release`` consumer then makes the delivery pending and due now, and the delivery
loop sends it. A hold is named by the delivery's attempt count, so the late release of an
earlier hold (a retry may be held again another night) releases nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.activator.repository import DeliveryRepository
from shared import bus, db
from shared.clock import Clock
from shared.timers import TimerFired, TimerKind, TimerSchedule


def hold_timer(
    activation_id: str,
    workspace_id: str,
    profile_id: str,
    journey_id: str,
    attempts: int,
    due_at: datetime,
) -> TimerSchedule:
    """The timer that releases the hold a delivery got after ``attempts`` attempts."""
    return TimerSchedule(
        timer_id=f"quiet:{activation_id}:{attempts}",
        workspace_id=workspace_id,
        profile_id=profile_id,
        journey_id=journey_id,
        kind=TimerKind.QUIET_HOURS,
        due_at=due_at,
        payload={"activation_id": activation_id, "attempts": attempts},
    )


def released_hold(fired: TimerFired) -> tuple[str, int]:
    """``(activation_id, attempts)`` of the hold a released timer ends."""
    if fired.kind is not TimerKind.QUIET_HOURS:
        raise bus.Poison(f"timer {fired.timer_id} of kind {fired.kind} is not the activator's")
    activation_id, attempts = fired.payload.get("activation_id"), fired.payload.get("attempts")
    if not isinstance(activation_id, str) or type(attempts) is not int:
        raise bus.Poison(f"timer {fired.timer_id} names no hold: {fired.payload}")
    return activation_id, attempts


class Releases:
    """Makes held deliveries due when their timers are released, a batch per transaction."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        on_released: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._on_released = on_released

    async def take(self, fired: Sequence[TimerFired]) -> None:
        holds = [released_hold(f) for f in fired]
        async with db.transaction(self._sessions) as session:
            released = await DeliveryRepository(session).release(holds, self._clock.now())
        if released:
            self._on_released()
