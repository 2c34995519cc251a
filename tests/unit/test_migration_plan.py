"""The migrate preview's rule: the same as the migration's, on copies, with the reason a
profile stays; the states it is given are left as they were."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.runtime.engine.compiled import CompiledJourney, compile_journey
from services.runtime.engine.engine import LiveJourney
from services.runtime.engine.state import Flow, JourneyState, Membership
from services.runtime.migration_plan import plan
from shared.journey import JourneyBody

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def wait(step_id: str) -> dict[str, Any]:
    return {"id": step_id, "type": "wait", "duration": "P1D"}


def compiled(version: int, stages: list[tuple[str, list[str]]]) -> CompiledJourney:
    entry = {"entry": {"event": "go"}}
    body = {
        "name": "Plan",
        "stages": [
            {"name": name, "steps": [wait(s) for s in steps]} | (entry if i == 0 else {})
            for i, (name, steps) in enumerate(stages)
        ],
    }
    return compile_journey("j", version, JourneyBody.model_validate(body))


def at(version: int, stage: int, step: str | None) -> JourneyState:
    return JourneyState(membership=Membership(
        journey_id="j", version=version, entry=1, stage=stage, step_id=step,
        flow=Flow.WAITING, entered_at=T0, stage_entered_at=T0,
    ))  # fmt: skip


def test_profiles_move_where_their_stage_and_step_remain_and_the_others_say_why() -> None:
    v1 = compiled(1, [("Cart", ["w1", "w2"]), ("Checkout", ["w3"])])
    live = LiveJourney({1: v1}, 1)
    draft = compiled(2, [("Cart", ["w1"]), ("Later", ["w3"])])
    states = [at(1, 0, "w1"), at(1, 0, "w1"), at(1, 0, "w2"), at(1, 1, "w3"), at(1, 0, None)]

    result = plan(states, live, draft)

    assert (result["active"], result["would_move"], result["would_stay"]) == (5, 3, 2)
    rows = {(r["stage"], r["step"]): r for r in result["steps"]}
    assert (rows[("Cart", "w1")]["move"], rows[("Cart", "w1")]["stay"]) == (2, 0)
    assert (rows[("Cart", None)]["move"], rows[("Cart", None)]["stay"]) == (1, 0)
    assert rows[("Cart", "w2")]["stay"] == 1
    assert rows[("Cart", "w2")]["reason"] == "step 'w2' is not in stage 'Cart' of the new version"
    assert rows[("Checkout", "w3")]["reason"] == "stage 'Checkout' is not in the new version"
    assert all(s.membership is not None and s.membership.version == 1 for s in states)


def test_a_step_moved_to_another_stage_stays_and_an_unloaded_version_is_named() -> None:
    v1 = compiled(1, [("Cart", ["w1"]), ("Checkout", ["w2"])])
    draft = compiled(3, [("Cart", ["w2"]), ("Checkout", ["w1"])])
    result = plan([at(1, 0, "w1"), at(2, 0, "w1")], LiveJourney({1: v1}, 1), draft)
    reasons = [r["reason"] for r in result["steps"]]
    assert reasons == [
        "step 'w1' is not in stage 'Cart' of the new version",
        "version 2 is no longer loaded by the runtime",
    ]
    assert result["would_move"] == 0


def test_nothing_inside_or_no_live_journey_is_an_empty_plan() -> None:
    draft = compiled(2, [("Cart", ["w1"])])
    empty = {"active": 0, "would_move": 0, "would_stay": 0, "steps": []}
    assert plan([], LiveJourney({1: compiled(1, [("Cart", ["w1"])])}, 1), draft) == empty
    assert plan([at(1, 0, "w1")], None, draft) == empty
