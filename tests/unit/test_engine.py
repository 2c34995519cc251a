"""The journey engine, pure: every rule of "What moves a profile" in microseconds."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.runtime.engine.compiled import compile_journey
from services.runtime.engine.engine import (
    Catalog,
    LiveJourney,
    activation_id,
    migrate,
    on_event,
    on_resume,
    on_stop,
    on_timer,
)
from services.runtime.engine.state import (
    CancelTimer,
    Event,
    Flow,
    JourneyState,
    Outcome,
    Profile,
    Result,
    SetTimer,
    Timer,
)
from shared.journey import JourneyBody

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ADA = Profile("ada", {"email": "ada@example.com", "tier": "vip", "timezone": "Asia/Tokyo"})


def email(step_id: str) -> dict[str, Any]:
    return {"id": step_id, "type": "activation", "channel": "email", "connector_id": "c",
            "template_id": "t", "to_attribute": "email"}  # fmt: skip


def journey(*stages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "J", "stages": list(stages), **extra}


def stage(name: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": name, "steps": steps, **extra}


WELCOME = journey(
    stage("S", [{"id": "w", "type": "wait", "duration": "PT1H"}, email("mail")],
          entry={"event": "signup"})
)  # fmt: skip


def catalog(*bodies: dict[str, Any], status: str = "live") -> Catalog:
    journeys = {}
    for i, body in enumerate(bodies):
        jid = f"j{i + 1}"
        compiled = compile_journey(jid, 1, JourneyBody.model_validate(body))
        journeys[jid] = LiveJourney({1: compiled}, 1, status)  # type: ignore[arg-type]
    return Catalog(journeys)


def ev(name: str, at: datetime = T0, **props: Any) -> Event:
    return Event(f"e-{name}-{at.timestamp()}", name, at, props)


class Driver:
    """Feeds inputs through the engine the way the runtime does, keeping the state."""

    def __init__(self, cat: Catalog, profile: Profile = ADA) -> None:
        self.cat, self.profile = cat, profile
        self.states: dict[str, JourneyState] = {}
        self.timers: dict[str, SetTimer] = {}
        self.results: list[Result] = []

    def apply(self, result: Result) -> Result:
        self.states = result.states
        for t in result.timers:
            if isinstance(t, SetTimer):
                self.timers[t.timer_id] = t
            else:
                self.timers.pop(t.timer_id, None)
        self.results.append(result)
        return result

    def event(self, name: str, at: datetime = T0, **props: Any) -> Result:
        return self.apply(on_event(self.cat, self.profile, self.states, ev(name, at, **props), at))

    def fire_next(self) -> Result:
        t = min(self.timers.values(), key=lambda t: t.due_at)
        del self.timers[t.timer_id]
        timer = Timer(t.timer_id, t.journey_id, t.due_at)
        return self.apply(on_timer(self.cat, self.profile, self.states, timer, t.due_at))

    def member(self, jid: str = "j1") -> Any:
        state = self.states.get(jid)
        return state.membership if state else None

    def kinds(self) -> list[str]:
        return [e.kind for r in self.results for e in r.timeline]


def test_entry_waits_then_delivers() -> None:
    d = Driver(catalog(WELCOME))
    entered = d.event("signup")
    assert [e.kind for e in entered.timeline] == ["entered", "step_started", "waiting"]
    assert entered.explanations[0].outcome == "entered"
    (timer,) = d.timers.values()
    assert timer.due_at == T0 + timedelta(hours=1)
    assert d.member().flow is Flow.WAITING

    fired = d.fire_next()
    (activation,) = fired.activations
    assert activation.activation_id == activation_id("j1", 1, "ada", 1, "mail")
    assert activation.to == "ada@example.com"
    assert activation.context["event"]["name"] == "signup"
    assert d.member().flow is Flow.ENDED
    assert fired.timeline[0].cause == {"timer": timer.timer_id}


def test_a_non_matching_event_says_why() -> None:
    d = Driver(catalog(WELCOME))
    result = d.event("login")
    assert d.member() is None
    (why,) = result.explanations
    assert why.outcome == "no_match"
    assert "signup" in why.reasons[0]


def test_a_timer_that_no_longer_matches_is_ignored() -> None:
    d = Driver(catalog(WELCOME))
    d.event("signup")
    stale = Timer("ada/j1/1/wait/elsewhere", "j1", T0)
    result = on_timer(d.cat, ADA, d.states, stale, T0 + timedelta(hours=2))
    assert result.activations == []
    assert result.explanations[0].outcome == "stale_timer"


def test_goal_leaves_and_unless_goal_met_refuses_reentry() -> None:
    body = WELCOME | {"goal": {"criteria": {"event": "purchase"}},
                      "reentry": {"mode": "unless_goal_met"}}  # fmt: skip
    d = Driver(catalog(body))
    d.event("signup")
    left = d.event("purchase")
    assert d.member() is None
    assert left.timeline[-1].detail["outcome"] == "goal"
    assert any(isinstance(t, CancelTimer) for t in left.timers)
    assert d.timers == {}
    again = d.event("signup", T0 + timedelta(days=1))
    assert d.member() is None
    assert again.explanations[0].outcome == "reentry_refused"


@pytest.mark.parametrize(
    ("mode", "reenters"), [("never", False), ("unless_goal_met", True), ("always", True)]
)
def test_reentry_after_an_exit(mode: str, reenters: bool) -> None:
    body = WELCOME | {"exit_criteria": [{"criteria": {"event": "unsubscribe"}}],
                      "reentry": {"mode": mode}}  # fmt: skip
    d = Driver(catalog(body))
    d.event("signup")
    d.event("unsubscribe")
    assert d.states["j1"].history.last_outcome is Outcome.EXITED
    d.event("signup", T0 + timedelta(minutes=5))
    assert (d.member() is not None) is reenters
    if reenters:
        assert d.member().entry == 2


def test_cooldown_delays_a_permitted_reentry() -> None:
    body = WELCOME | {"exit_criteria": [{"criteria": {"event": "x"}}],
                      "reentry": {"mode": "always", "cooldown": "PT24H"}}  # fmt: skip
    d = Driver(catalog(body))
    d.event("signup")
    d.event("x")
    early = d.event("signup", T0 + timedelta(hours=23))
    assert early.explanations[0].outcome == "reentry_refused"
    assert "cooldown" in early.explanations[0].reasons[0]
    d.event("signup", T0 + timedelta(hours=24))
    assert d.member().entry == 2


def test_stage_exit_rules_leave_or_move_on() -> None:
    body = journey(
        stage("A", [{"id": "wa", "type": "wait", "duration": "P1D"}], entry={"event": "go"},
              milestone={"event": "next"},
              exit_criteria=[{"criteria": {"event": "skip"}, "to_stage": "C"},
                             {"criteria": {"event": "quit"}}]),
        stage("B", [], milestone={"event": "next"}),
        stage("C", [{"id": "wc", "type": "wait", "duration": "PT1H"}]),
    )  # fmt: skip
    d = Driver(catalog(body))
    d.event("go")
    moved = d.event("skip")
    assert d.member().stage == 2
    assert [e.kind for e in moved.timeline][:1] == ["stage_changed"]
    assert moved.timeline[0].detail == {"from": "A", "to": "C", "reason": "exit_rule"}
    assert set(d.timers) == {"ada/j1/1/wait/wc"}  # the old stage's wait was cancelled

    d2 = Driver(catalog(body))
    d2.event("go")
    quit_ = d2.event("quit")
    assert d2.member() is None
    assert quit_.timeline[-1].detail == {"outcome": "exited", "reason": "stage exit criteria",
                                         "stage": "A"}  # fmt: skip


def test_milestone_abandons_the_pending_wait_and_starts_the_next_stage() -> None:
    body = journey(
        stage("A", [{"id": "w", "type": "wait", "duration": "P3D"}], entry={"event": "go"},
              milestone={"event": "cart_add"}),
        stage("B", [email("mail-b")]),
    )  # fmt: skip
    d = Driver(catalog(body))
    d.event("go")
    moved = d.event("cart_add", items=[1])
    assert d.member().stage == 1
    assert CancelTimer("ada/j1/1/wait/w") in moved.timers
    assert [a.step_id for a in moved.activations] == ["mail-b"]
    assert moved.activations[0].context["event"]["name"] == "cart_add"


def branch_journey() -> dict[str, Any]:
    return journey(
        stage("S", [
            email("email-1"),
            {"id": "opened?", "type": "branch", "timeout": "P1D",
             "criteria": {"event": "email_opened",
                          "where": [{"property": "step_id", "op": "eq", "value": "email-1"}]},
             "yes": [{"id": "thanks", "type": "end"}],
             "no": [{"id": "sms", "type": "activation", "channel": "sms", "connector_id": "c",
                     "template_id": "t", "to_attribute": "phone"}]},
        ], entry={"event": "cart_abandoned"}),
        reentry={"mode": "always"},
    )  # fmt: skip


def test_branch_yes_needs_this_entrys_message() -> None:
    d = Driver(catalog(branch_journey()))
    d.event("cart_abandoned")
    sent = d.results[-1].activations[0].activation_id
    old = d.event("email_opened", step_id="email-1", journey_id="j1", activation_id="act_old")
    assert old.explanations[0].outcome == "no_match"
    assert d.member().flow is Flow.BRANCHING
    yes = d.event("email_opened", step_id="email-1", journey_id="j1", activation_id=sent)
    assert yes.timeline[0].kind == "branch_taken"
    assert yes.timeline[0].detail == {"path": "yes"}
    assert d.member().step_id == "thanks"
    assert d.timers == {}


def test_branch_timeout_takes_the_no_path() -> None:
    d = Driver(catalog(branch_journey()))
    d.event("cart_abandoned")
    fired = d.fire_next()
    assert fired.timeline[0].detail == {"path": "no"}
    assert [a.step_id for a in fired.activations] == ["sms"]


def test_attribute_split_rejoins_after_its_path() -> None:
    body = journey(stage("S", [
        {"id": "vip?", "type": "split", "mode": "attribute",
         "cases": [{"criteria": {"profile": [{"attribute": "tier", "op": "eq", "value": "vip"}]},
                    "steps": [email("vip-mail")]}],
         "default": [email("plain-mail")]},
        email("after"),
    ], entry={"event": "go"}))  # fmt: skip
    vip = Driver(catalog(body)).event("go")
    plain = Driver(catalog(body), Profile("bob", {"tier": "basic"})).event("go")
    assert [a.step_id for a in vip.activations] == ["vip-mail", "after"]
    assert [a.step_id for a in plain.activations] == ["plain-mail", "after"]


def test_random_split_is_deterministic_and_follows_the_percentages() -> None:
    body = journey(stage("S", [
        {"id": "holdout", "type": "split", "mode": "random",
         "paths": [{"percent": 90, "steps": [email("m")]}, {"percent": 10, "steps": []}]},
    ], entry={"event": "go"}))  # fmt: skip
    cat = catalog(body)
    mailed = sum(
        bool(on_event(cat, Profile(f"p{i}", {}), {}, ev("go"), T0).activations) for i in range(2000)
    )
    again = [bool(on_event(cat, Profile(f"p{i}", {}), {}, ev("go"), T0).activations)
             for i in range(50)]  # fmt: skip
    replay = [bool(on_event(cat, Profile(f"p{i}", {}), {}, ev("go"), T0).activations)
              for i in range(50)]  # fmt: skip
    assert 1700 < mailed < 1900
    assert again == replay


def test_jumps_within_and_across_journeys() -> None:
    first = journey(
        stage("A", [{"id": "j-c", "type": "jump", "stage": "C"}], entry={"event": "go"},
              milestone={"event": "never"}),
        stage("B", [], milestone={"event": "never"}),
        stage("C", [{"id": "out", "type": "jump", "journey_id": "j2", "stage": "Later"}]),
    )  # fmt: skip
    second = journey(
        stage("First", [], entry={"event": "other"}, milestone={"event": "never"}),
        stage("Later", [{"id": "wait-l", "type": "wait", "duration": "PT1H"}]),
    )  # fmt: skip
    d = Driver(catalog(first, second))
    result = d.event("go")
    assert d.member("j1") is None
    assert d.states["j1"].history.last_outcome is Outcome.JUMPED
    assert d.member("j2").stage == 1
    kinds = [(e.journey_id, e.kind) for e in result.timeline]
    assert ("j1", "stage_changed") in kinds
    assert ("j2", "entered") in kinds


def test_a_jump_respects_the_targets_reentry() -> None:
    first = journey(stage("A", [{"id": "out", "type": "jump", "journey_id": "j2", "stage": "X"}],
                          entry={"event": "go"}), reentry={"mode": "always"})  # fmt: skip
    second = journey(stage("X", [], entry={"event": "direct"}), reentry={"mode": "never"})
    d = Driver(catalog(first, second))
    d.event("direct")  # enters j2 by itself: ends at once, stays in the stage
    on_stop_result = on_stop(d.cat, ADA, d.states, "j2", T0)
    d.apply(on_stop_result)
    refused = d.event("go", T0 + timedelta(minutes=1))
    assert d.member("j2") is None
    assert any(x.outcome == "reentry_refused" for x in refused.explanations)


def test_paused_journey_admits_no_one_and_holds_due_timers() -> None:
    live = catalog(WELCOME)
    d = Driver(live)
    d.event("signup")
    live.journeys["j1"].status = "paused"
    other = Driver(live, Profile("bob", {})).event("signup")
    assert other.explanations[0].outcome == "paused"
    held = d.fire_next()
    assert held.activations == []
    assert d.member().flow is Flow.HELD
    live.journeys["j1"].status = "live"
    resumed = d.apply(on_resume(live, ADA, d.states, "j1", T0 + timedelta(hours=5)))
    assert [a.step_id for a in resumed.activations] == ["mail"]


def test_stop_makes_everyone_leave() -> None:
    d = Driver(catalog(WELCOME))
    d.event("signup")
    stopped = d.apply(on_stop(d.cat, ADA, d.states, "j1", T0))
    assert d.member() is None
    assert stopped.timeline[-1].detail["outcome"] == "stopped"
    assert d.timers == {}


def test_schedule_window_gates_entries() -> None:
    later = (T0 + timedelta(days=1)).isoformat()
    d = Driver(catalog(WELCOME | {"schedule": {"start_at": later}}))
    assert d.event("signup").explanations[0].outcome == "outside_schedule"
    d.event("signup", T0 + timedelta(days=2))
    assert d.member() is not None


def test_max_time_in_stage_and_in_journey_leave_stale() -> None:
    body = journey(stage("S", [{"id": "w", "type": "wait", "duration": "P30D"}],
                         entry={"event": "go"}, max_time_in_stage="P1D"))  # fmt: skip
    d = Driver(catalog(body))
    d.event("go")
    left = d.fire_next()
    assert left.timeline[-1].detail["reason"] == "max time in stage"
    assert d.states["j1"].history.last_outcome is Outcome.STALE
    assert d.timers == {}


@pytest.mark.parametrize(
    ("wait", "due"),
    [
        ({"until": "2020-01-01T00:00:00Z"}, None),  # already past: goes on at once
        ({"time_of_day": "09:00"}, datetime(2026, 11, 24, 0, 0, tzinfo=UTC)),  # 09:00 Tokyo
        ({"time_of_day": "09:00", "days": ["fri"]}, datetime(2026, 11, 27, 0, 0, tzinfo=UTC)),
    ],
)
def test_wait_kinds(wait: dict[str, Any], due: datetime | None) -> None:
    body = journey(stage("S", [{"id": "w", "type": "wait", **wait}, email("m")],
                         entry={"event": "go"}))  # fmt: skip
    d = Driver(catalog(body))
    result = d.event("go")
    if due is None:
        assert [a.step_id for a in result.activations] == ["m"]
    else:
        assert [t.due_at for t in d.timers.values()] == [due]


@pytest.mark.parametrize(
    ("tz", "midnight", "at", "due"),
    [
        # 02:30 does not exist in New York on 2026-03-08: 03:00 EDT, when the clocks jumped.
        ("America/New_York", datetime(2026, 3, 8, 5, 0, tzinfo=UTC), "02:30",
         datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
        # Lord Howe moves 30 minutes: 02:15 on 2026-10-04 -> 02:30 (+11:00).
        ("Australia/Lord_Howe", datetime(2026, 10, 3, 13, 30, tzinfo=UTC), "02:15",
         datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
        # 01:30 happens twice in London on 2026-10-25: the first (BST), once.
        ("Europe/London", datetime(2026, 10, 24, 23, 0, tzinfo=UTC), "01:30",
         datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_a_time_of_day_wait_across_a_clock_change_is_due_once(
    tz: str, midnight: datetime, at: str, due: datetime
) -> None:
    body = journey(stage("S", [{"id": "w", "type": "wait", "time_of_day": at,
                                "timezone_attribute": "timezone"}, email("m")],
                         entry={"event": "go"}))  # fmt: skip
    d = Driver(catalog(body), Profile("ny", {"email": "a@example.com", "timezone": tz}))
    d.event("go", midnight)
    assert [t.due_at for t in d.timers.values()] == [due]
    fired = d.fire_next()
    assert [a.step_id for a in fired.activations] == ["m"]
    assert d.timers == {}


def test_migration_keeps_the_position_and_due_time() -> None:
    v2_body = JourneyBody.model_validate(WELCOME | {"description": "v2"})
    cat = catalog(WELCOME)
    d = Driver(cat)
    d.event("signup")
    v1 = cat.journeys["j1"].versions[1]
    v2 = compile_journey("j1", 2, v2_body)
    state = d.states["j1"]
    assert migrate(state, v1, v2)
    assert state.membership is not None
    assert state.membership.version == 2
    assert state.membership.step_timer is not None
    assert state.membership.step_timer.due_at == T0 + timedelta(hours=1)
    moved_away = JourneyBody.model_validate(journey(stage("Other", [], entry={"event": "x"})))
    fresh = Driver(catalog(WELCOME))
    fresh.event("signup")
    assert not migrate(fresh.states["j1"], v1, compile_journey("j1", 3, moved_away))


def test_the_engine_never_changes_its_inputs() -> None:
    d = Driver(catalog(WELCOME))
    d.event("signup")
    before = copy.deepcopy(d.states)
    on_event(d.cat, ADA, d.states, ev("anything"), T0)
    on_timer(d.cat, ADA, d.states, Timer(next(iter(d.timers)), "j1", T0), T0 + timedelta(hours=1))
    assert d.states == before


def test_states_survive_the_round_trip_through_json() -> None:
    import json

    from services.runtime.codec import dump_state, load_state

    d = Driver(catalog(branch_journey()))
    d.event("cart_abandoned")
    state = d.states["j1"]
    assert load_state(json.loads(json.dumps(dump_state(state)))) == state
    d.apply(on_stop(d.cat, ADA, d.states, "j1", T0))
    left = d.states["j1"]
    assert load_state(json.loads(json.dumps(dump_state(left)))) == left
