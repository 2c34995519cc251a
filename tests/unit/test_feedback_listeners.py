"""Which delivery feedback events a workspace's live journeys could react to: a criterion
may match an event name unless it can only match other names."""

from __future__ import annotations

from typing import Any

import pytest

from services.runtime.catalog import unheard
from services.runtime.engine.engine import Catalog
from tests.unit.test_engine import WELCOME, catalog, journey, stage

BOTH = frozenset({"message_sent", "message_failed"})


def wait_stage(**extra: Any) -> dict[str, Any]:
    return stage("S", [{"id": "w", "type": "wait", "duration": "PT1H"}], **extra)


def test_journeys_that_name_other_events_hear_no_feedback() -> None:
    assert unheard(catalog(WELCOME)) == BOTH
    assert unheard(Catalog()) == BOTH


@pytest.mark.parametrize(
    ("criteria", "heard"),
    [
        ({"event": "message_sent"}, {"message_sent"}),
        ({"any": [{"event": "purchase"}, {"event": "message_failed"}]}, {"message_failed"}),
        ({"all": [{"event": "purchase"}, {"event": "message_sent"}]}, set()),
        ({"all": [{"event": "message_sent"}, {"profile": [
            {"attribute": "vip", "op": "eq", "value": True}]}]}, {"message_sent"}),
        # No event named: any event may match, feedback too.
        ({"profile": [{"attribute": "vip", "op": "eq", "value": True}]}, set(BOTH)),
        ({"not": {"event": "purchase"}}, set(BOTH)),
    ],
)  # fmt: skip
def test_a_goal_hears_what_it_could_match(criteria: dict[str, Any], heard: set[str]) -> None:
    body = journey(wait_stage(entry={"event": "signup"}), goal={"criteria": criteria})
    assert unheard(catalog(body)) == BOTH - heard


def test_milestones_exits_and_entries_are_listened_to_as_well() -> None:
    milestone = journey(
        wait_stage(entry={"event": "signup"}, milestone={"event": "message_sent"}),
        stage("T", [{"id": "x", "type": "wait", "duration": "PT1H"}]),
    )
    exits = journey(
        wait_stage(entry={"event": "signup"}),
        exit_criteria=[{"criteria": {"event": "message_failed"}}],
    )
    entry = journey(wait_stage(entry={"event": "message_failed"}))
    assert unheard(catalog(milestone)) == {"message_failed"}
    assert unheard(catalog(exits)) == {"message_sent"}
    assert unheard(catalog(entry, WELCOME)) == {"message_sent"}
