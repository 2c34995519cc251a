"""Per-step counts by id from the counters alone (what a stopped journey still shows)."""

from __future__ import annotations

from services.runtime.analytics import _steps


def test_step_counts_come_from_the_counters_and_the_profiles_still_there() -> None:
    counters = {
        "entered": 5, "stage:Cart:entered": 5, "left:goal": 1,
        "step:sms-1:entered": 5, "step:a:b:entered": 2, "step:wait:entered": 3,
    }  # fmt: skip
    active = {("Cart", "wait"): 2, ("Cart", None): 1, ("Other", "wait"): 1}
    assert _steps(counters, active) == {
        "sms-1": {"entered": 5, "active": 0, "completed": 5},
        "a:b": {"entered": 2, "active": 0, "completed": 2},
        "wait": {"entered": 3, "active": 3, "completed": 0},
    }
    assert _steps({"stage:Cart:entered": 2}, {}) == {}
