"""Per-step counts by id from the counters alone (what a stopped journey still shows), the
paths taken at branches and splits, and totals across versions."""

from __future__ import annotations

from services.runtime.analytics import _paths, _positions, _steps, _sum, _versions, engagement
from services.runtime.counter_keys import (
    MIGRATED_IN,
    MIGRATED_OUT,
    engage_key,
    path_key,
    stage_left_key,
)


def test_step_counts_come_from_the_counters_and_the_profiles_still_there() -> None:
    counters = {
        "entered": 5, "stage:Cart:entered": 5, "left:goal": 1,
        "step:sms-1:entered": 5, "step:a:b:entered": 2, "step:wait:entered": 3,
    }  # fmt: skip
    here = {("Cart", "wait"): 2, ("Cart", None): 1, ("Other", "wait"): 1}
    finished = {("Cart", "sms-1"): 4}
    assert _steps(counters, here, finished) == {
        "sms-1": {"entered": 5, "active": 0, "finished": 4, "completed": 5},
        "a:b": {"entered": 2, "active": 0, "finished": 0, "completed": 2},
        "wait": {"entered": 3, "active": 3, "finished": 0, "completed": 0},
    }
    assert _steps({"stage:Cart:entered": 2}, {}, {}) == {}


def test_profiles_whose_steps_ended_are_finished_not_on_their_last_step() -> None:
    rows = [
        (1, "Cart", "email", "ended", 13),
        (1, "Cart", "wait", "waiting", 2),
        (2, "Cart", "branch", "branching", 3),
        (2, "Cart", "branch", "ended", 1),
    ]
    here, finished = _positions(rows, None)
    assert here == {("Cart", "wait"): 2, ("Cart", "branch"): 3}
    assert finished == {("Cart", "email"): 13, ("Cart", "branch"): 1}
    here, finished = _positions(rows, 2)
    assert here == {("Cart", "branch"): 3}
    assert finished == {("Cart", "branch"): 1}


def test_each_path_counts_with_its_share_and_odd_names_survive() -> None:
    counters = {
        path_key("b:1", "yes"): 3, path_key("b:1", "no"): 1,
        path_key("split", 'case "0"'): 2, "step:b:1:entered": 4,
    }  # fmt: skip
    assert _paths(counters) == {
        "b:1": [{"path": "no", "count": 1, "percent": 25.0},
                {"path": "yes", "count": 3, "percent": 75.0}],
        "split": [{"path": 'case "0"', "count": 2, "percent": 100.0}],
    }  # fmt: skip
    assert stage_left_key("a:b", "goal") != stage_left_key("a", "b:goal")


def test_totals_add_up_across_versions_with_a_breakdown() -> None:
    by_version = {
        1: {"entered": 5, "left:goal": 1, MIGRATED_OUT: 3},
        2: {"entered": 2, MIGRATED_IN: 3},
    }
    assert _sum(by_version, None) == {"entered": 7, "left:goal": 1, MIGRATED_OUT: 3, MIGRATED_IN: 3}
    assert _sum(by_version, 2)["entered"] == 2
    rows = [(2, "Cart", "wait", "waiting", 4), (1, "Cart", "wait", "waiting", 1)]
    versions = _versions(by_version, rows)
    assert [(v["version"], v["entered"], v["active"]) for v in versions] == [(1, 5, 1), (2, 2, 4)]
    assert versions[0]["migrated_out"] == 3
    assert versions[1]["migrated_in"] == 3
    assert versions[0]["exits"]["goal"] == 1


def test_the_funnel_rates_are_shares_of_the_messages_sent() -> None:
    counters = {
        engage_key("mail", "sent", "email"): 4, engage_key("mail", "opened", "email"): 2,
        engage_key("mail", "clicked", "email"): 3, engage_key("mail", "goal", None): 1,
        engage_key("text", "goal", None): 1,  # a goal counted before any feedback arrived
    }  # fmt: skip
    out = engagement(counters)
    mail, text = out["steps"]
    assert mail == {
        "step_id": "mail", "channel": "email", "sent": 4, "opened": 2, "clicked": 3, "goal": 1,
        "open_rate": 50.0, "click_rate": 75.0, "goal_rate": 25.0,
    }  # fmt: skip
    assert (text["channel"], text["goal"], text["goal_rate"]) == (None, 1, None)
    assert out["channels"]["email"]["sent"] == 4
    assert out["channels"]["unknown"]["goal"] == 1
    assert engagement({}) == {"steps": [], "channels": {}}
