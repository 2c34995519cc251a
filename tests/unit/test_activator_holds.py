"""The quiet-hours timer of a held delivery, and what a released timer must name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.activator.holds import hold_timer, released_hold
from shared import bus
from shared.timers import TimerFired, TimerKind

DUE = datetime(2026, 3, 2, 8, 4, tzinfo=UTC)


def released(timer_kind: TimerKind = TimerKind.QUIET_HOURS, **payload: object) -> TimerFired:
    return TimerFired(
        timer_id="quiet:act_1:0", workspace_id="ws1", profile_id="ada", journey_id="j1",
        kind=timer_kind, due_at=DUE, fired_at=DUE + timedelta(milliseconds=30), payload=payload,
    )  # fmt: skip


def test_each_hold_of_a_delivery_has_its_own_timer_released_to_the_activator() -> None:
    first = hold_timer("act_1", "ws1", "ada", "j1", 0, DUE)
    again = hold_timer("act_1", "ws1", "ada", "j1", 3, DUE + timedelta(days=1))
    assert first.timer_id != again.timer_id
    assert (first.kind, first.subject, first.payload) == (
        TimerKind.QUIET_HOURS, "timers.schedule.ws1", {"activation_id": "act_1", "attempts": 0}
    )  # fmt: skip
    fired = TimerFired(**first.model_dump(), fired_at=DUE)
    assert (fired.subject, fired.msg_id) == ("timers.release.ws1", f"release:{first.timer_id}")
    assert released_hold(fired) == ("act_1", 0)


@pytest.mark.parametrize(
    "timer",
    [
        released(TimerKind.WAIT, activation_id="act_1", attempts=0),
        released(attempts=0),
        released(activation_id="act_1"),
        released(activation_id="act_1", attempts="0"),
        released(activation_id="act_1", attempts=True),
    ],
)
def test_a_release_that_names_no_hold_is_poison(timer: TimerFired) -> None:
    with pytest.raises(bus.Poison):
        released_hold(timer)
