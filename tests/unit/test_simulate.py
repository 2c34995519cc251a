"""The simulator's limits: events times steps, timers, answer size and simulated time are
bounded and refused with the limit named, and the report is the JSON the API answers."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic_core
import pytest

from services.runtime.simulate import (
    SimEvent,
    SimLimits,
    SimulationRefused,
    check,
    check_size,
    run_report,
)
from shared.journey import JourneyBody, JourneyLimits

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)


def welcome(wait: str = "PT1H", reentry: str = "always") -> JourneyBody:
    raw = {
        "name": "Welcome",
        "reentry": {"mode": reentry},
        "stages": [{
            "name": "Signed up",
            "entry": {"event": "signup"},
            "steps": [
                {"id": "wait", "type": "wait", "duration": wait},
                {"id": "hello", "type": "activation", "channel": "sms", "connector_id": "c",
                 "template_id": "t", "to_attribute": "phone"},
            ],
        }],
    }  # fmt: skip
    body, errors = check(raw, JourneyLimits())
    assert body is not None, errors
    assert not errors
    return body


def signups(n: int, *, profiles: int | None = None, at: datetime = T0) -> list[SimEvent]:
    return [
        SimEvent(f"e{i}", f"p{i % (profiles or n)}", "signup", at + timedelta(minutes=i), {},
                 {"phone": "+15550100"})
        for i in range(n)
    ]  # fmt: skip


def report(body: JourneyBody, events: list[SimEvent], limits: SimLimits) -> Any:
    simulated = run_report(body, {}, events, "UTC", limits)
    messages = json.loads(pydantic_core.to_json(simulated.messages))
    return {"profiles": json.loads(simulated.profiles), "activations": messages}


def test_events_times_steps_over_the_limit_are_refused_before_running() -> None:
    limits = SimLimits(max_event_steps=100)
    assert check_size(welcome(), 50, limits) is None
    problem = check_size(welcome(), 51, limits)
    assert problem is not None
    assert problem.path == "events"
    assert "51 events through 2 steps" in problem.message
    assert "simulation limit" in problem.message


def test_a_simulation_within_the_limits_answers_paths_and_messages_as_json() -> None:
    body = report(welcome(), signups(3), SimLimits())
    kinds = [[e["kind"] for e in p["path"]] for p in body["profiles"]]
    assert kinds == [["entered", "step_started", "waiting", "step_started", "activation"]] * 3
    assert [a["profile_id"] for a in body["activations"]] == ["p0", "p1", "p2"]
    assert body["activations"][0]["at"] == "2026-11-23T11:00:00Z"


def test_more_timers_than_the_limit_are_refused_naming_it() -> None:
    limits = SimLimits(max_timers=10, max_answer_entries=10_000)
    report(welcome(), signups(10), limits)
    with pytest.raises(SimulationRefused, match="more than 10 timers \\(the timer limit\\)") as e:
        report(welcome(), signups(11), limits)
    assert (e.value.path, e.value.limit) == ("events", "timers")


def test_an_answer_larger_than_the_limit_is_refused_naming_it() -> None:
    with pytest.raises(SimulationRefused, match="\\(the answer limit\\)") as e:
        report(welcome(), signups(100), SimLimits(max_answer_entries=50))
    assert e.value.limit == "answer"


@pytest.mark.parametrize(
    ("wait", "at"),
    [
        ("P365D", datetime(9999, 6, 1, tzinfo=UTC)),
        ("PT1H", datetime(9999, 12, 31, 23, 30, tzinfo=UTC)),
    ],
)
def test_simulated_time_past_the_calendar_is_refused_not_a_crash(wait: str, at: datetime) -> None:
    with pytest.raises(SimulationRefused, match="outside the years 1 to 9999") as e:
        report(welcome(wait), signups(1, at=at), SimLimits())
    assert e.value.limit == "time_range"


def test_a_refusal_keeps_its_path_and_limit_through_a_process_boundary() -> None:
    error = pickle.loads(pickle.dumps(SimulationRefused("events", "too many", "timers")))
    assert (error.path, str(error), error.limit) == ("events", "too many", "timers")


def test_more_messages_than_the_limit_are_refused_naming_it() -> None:
    limits = SimLimits(max_messages=5)
    assert len(report(welcome(), signups(5), limits)["activations"]) == 5
    with pytest.raises(
        SimulationRefused, match="more than 5 messages \\(the message limit\\)"
    ) as e:
        report(welcome(), signups(6), limits)
    assert (e.value.path, e.value.limit) == ("events", "messages")


async def test_an_activator_that_cannot_decide_the_messages_is_unavailable() -> None:
    import httpx

    from services.runtime.simulate import ActivatorPreview, Unavailable

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def fail(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="boom")

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.raw_path == b"/internal/workspaces/w%2F1/previews"
        return httpx.Response(200, json={"items": [{"activation_id": "a", "status": "sent"}]})

    ask = [{"activation_id": "a"}]
    for handler, error in ((refuse, "not reachable"), (fail, "answered 500")):
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            with pytest.raises(Unavailable, match=error):
                await ActivatorPreview(http, "http://activator")("w/1", ask)
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        preview = ActivatorPreview(http, "http://activator")
        assert await preview("w/1", ask) == [{"activation_id": "a", "status": "sent"}]
        assert await preview("w/1", []) == []


def test_a_journey_that_does_not_parse_is_checked_with_its_resources_taken_as_ready() -> None:
    send = {"id": "hello", "type": "activation", "channel": "sms", "connector_id": "c",
            "template_id": "t", "to_attribute": "phone"}  # fmt: skip
    broken = {"id": "hello", "type": "wait"}  # no duration; and its id is taken
    raw = {"name": "x", "stages": [{"name": "s", "entry": {"event": "e"}, "steps": [send, broken]}]}
    body, errors = check(raw, JourneyLimits())
    assert body is None
    assert {e.path for e in errors} == {"stages[0].steps[1]", "stages[0].steps[1].id"}
