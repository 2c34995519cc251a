from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.journey import (
    ActivationStep,
    AttributeSplitStep,
    BranchStep,
    EndStep,
    JourneyBody,
    JourneyLimits,
    RandomSplitStep,
    Stage,
    WaitStep,
    dump_journey,
    iter_journey_steps,
    iter_step_lists,
    iter_steps,
)
from shared.problems import json_path

SCENARIOS = Path(__file__).resolve().parents[2] / "examples"
SCENARIO_NAMES = ["welcome", "abandoned-cart", "multichannel-cart", "three-stage"]
PLACEHOLDER = re.compile(r"\{\{(connector|template):([^}]+)\}\}")


def scenario_text(name: str) -> str:
    return (SCENARIOS / f"{name}.journey.json").read_text(encoding="utf-8")


def with_fake_ids(text: str) -> Any:
    """The scenario's JSON with each placeholder replaced by an id like ``connector-smtp``."""
    return json.loads(PLACEHOLDER.sub(lambda m: f"{m[1]}-{m[2]}", text))


def scenario(name: str) -> JourneyBody:
    return JourneyBody.model_validate(with_fake_ids(scenario_text(name)))


def errors_of(raw: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        JourneyBody.model_validate(raw)
    return {json_path(e["loc"]): e["msg"] for e in info.value.errors()}


def journey(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    stage = {"name": "S", "entry": {"event": "go"}, "steps": list(steps)}
    return {"name": "J", "stages": [stage], **fields}


# -- the example journeys ----------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_example_journey_parses(name: str) -> None:
    body = scenario(name)
    assert body.stages
    assert body.stages[0].entry is not None


def test_every_example_in_the_folder_parses() -> None:
    for path in sorted(SCENARIOS.glob("*.journey.json")):
        JourneyBody.model_validate(with_fake_ids(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_example_journey_round_trips_through_json(name: str) -> None:
    body = scenario(name)
    dumped = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped == dump_journey(body)
    again = JourneyBody.model_validate(json.loads(json.dumps(dumped)))
    assert again == body
    assert dump_journey(again) == dumped


def test_dump_keeps_what_was_written() -> None:
    raw = with_fake_ids(scenario_text("three-stage"))
    dumped = dump_journey(scenario("three-stage"))
    assert dumped["max_time_in_journey"] == raw["max_time_in_journey"] == "P24D"
    wait = dumped["stages"][0]["steps"][0]
    assert wait == {"id": "wait-tomorrow-9", "type": "wait", "time_of_day": "09:00"}
    assert raw["stages"][0]["steps"][0] == {**wait, "timezone_attribute": "timezone"}
    holdout = dumped["stages"][2]["steps"][0]["paths"]
    assert [p["percent"] for p in holdout] == [90, 10]
    assert all(isinstance(p["percent"], int) for p in holdout)
    # Union tags never leak into the JSON form.
    assert "Step" not in json.dumps(dumped)


def test_a_wait_dumps_its_timezone_attribute_only_when_not_the_default() -> None:
    dumped = dump_journey(scenario("welcome"))
    assert dumped["stages"][0]["steps"][0] == {"id": "wait-1h", "type": "wait", "duration": "PT1H"}
    local = {"id": "w", "type": "wait", "time_of_day": "08:30", "timezone_attribute": "home.tz"}
    body = JourneyBody.model_validate(journey(local))
    assert dump_journey(body)["stages"][0]["steps"][0] == local


def test_iter_steps_walks_a_branch_depth_first() -> None:
    body = scenario("multichannel-cart")
    walked = [(path, step.id) for path, step in iter_steps(body.stages[0], 0)]
    assert walked == [
        ("stages[0].steps[0]", "email-1"),
        ("stages[0].steps[1]", "opened?"),
        ("stages[0].steps[1].no[0]", "sms-1"),
        ("stages[0].steps[1].no[1]", "wait-1d"),
        ("stages[0].steps[1].no[2]", "push-1"),
    ]


def test_iter_steps_walks_splits_with_paths_into_cases_default_and_paths() -> None:
    body = scenario("three-stage")
    walked = [(path, step.id) for path, step in iter_journey_steps(body)]
    assert walked == [
        ("stages[0].steps[0]", "wait-tomorrow-9"),
        ("stages[0].steps[1]", "tips-email"),
        ("stages[1].steps[0]", "vip?"),
        ("stages[1].steps[0].cases[0].steps[0]", "vip-push"),
        ("stages[1].steps[0].default[0]", "wait-2d"),
        ("stages[1].steps[0].default[1]", "browse-email"),
        ("stages[1].steps[1]", "end-browsing"),
        ("stages[2].steps[0]", "holdout"),
        ("stages[2].steps[0].paths[0].steps[0]", "cart-sms"),
    ]
    assert [p for p, _ in iter_steps(body.stages[2], 2)] == [
        "stages[2].steps[0]",
        "stages[2].steps[0].paths[0].steps[0]",
    ]


def test_iter_step_lists_gives_each_path_with_its_depth() -> None:
    body = scenario("three-stage")
    lists = [(s.path, len(s.steps), s.depth) for s in iter_step_lists(body.stages[1], 1)]
    assert lists == [
        ("stages[1].steps", 2, 0),
        ("stages[1].steps[0].cases[0].steps", 1, 1),
        ("stages[1].steps[0].default", 2, 1),
    ]


def test_steps_parse_into_their_own_models() -> None:
    body = scenario("three-stage")
    kinds = [type(step) for _, step in iter_journey_steps(body)]
    assert kinds == [
        WaitStep,
        ActivationStep,
        AttributeSplitStep,
        ActivationStep,
        WaitStep,
        ActivationStep,
        EndStep,
        RandomSplitStep,
        ActivationStep,
    ]
    branch = scenario("multichannel-cart").stages[0].steps[1]
    assert isinstance(branch, BranchStep)
    assert branch.yes == []


def test_models_built_in_python_validate_as_a_body() -> None:
    wait = WaitStep(id="w1", type="wait", duration="PT1H")
    stage = Stage.model_validate({"name": "S", "steps": [wait, {"id": "e", "type": "end"}]})
    body = JourneyBody.model_validate({"name": "J", "stages": [stage]})
    assert body.stages[0].steps[0] == wait


def test_defaults_of_an_optional_part() -> None:
    body = JourneyBody.model_validate(journey(schedule=None, reentry=None))
    assert body.reentry.mode == "never"
    assert body.reentry.cooldown == "PT0S"
    assert body.schedule.start_at is None
    assert body.schedule.end_at is None
    assert body.exit_criteria == []
    assert body.goal is None


def test_limits_have_the_documented_defaults() -> None:
    limits = JourneyLimits()
    assert (limits.max_stages, limits.max_steps_per_stage, limits.max_steps_per_journey) == (
        8,
        40,
        120,
    )
    assert (limits.max_activations, limits.max_exit_rules, limits.max_jumps) == (50, 20, 20)
    assert (limits.min_split_paths, limits.max_split_paths) == (2, 6)
    assert limits.min_stale_timeout == timedelta(minutes=1)
    assert limits.max_stale_timeout == timedelta(days=24)
    assert limits.max_depth == 10


# -- structural errors the models catch --------------------------------------------------

WAIT = {"id": "w", "type": "wait"}
EMAIL = {"id": "a", "type": "activation", "channel": "email", "connector_id": "c"}


@pytest.mark.parametrize(
    ("step", "path", "fragment"),
    [
        (WAIT, "stages[0].steps[0]", "exactly one of 'duration', 'until' or 'time_of_day'"),
        (
            {**WAIT, "duration": "PT1H", "until": "2030-01-01T00:00:00Z"},
            "stages[0].steps[0]",
            "found 2: duration, until",
        ),
        ({**WAIT, "until": "2030-01-01T00:00:00"}, "stages[0].steps[0].until", "timezone"),
        ({**WAIT, "time_of_day": "24:00"}, "stages[0].steps[0].time_of_day", "HH:MM"),
        ({**WAIT, "time_of_day": "9:00"}, "stages[0].steps[0].time_of_day", "HH:MM"),
        (
            {**WAIT, "duration": "PT1H", "days": ["mon"]},
            "stages[0].steps[0].days",
            "'time_of_day' wait only",
        ),
        (
            {**WAIT, "time_of_day": "09:00", "days": ["mon", "mon"]},
            "stages[0].steps[0].days",
            "once",
        ),
        ({**WAIT, "time_of_day": "09:00", "days": ["monday"]}, "stages[0].steps[0].days[0]", ""),
        ({**WAIT, "duration": "P1Y"}, "stages[0].steps[0].duration", "no fixed length"),
        ({**WAIT, "duration": 3600}, "stages[0].steps[0].duration", "valid string"),
        ({**EMAIL, "template_id": "t"}, "stages[0].steps[0].to_attribute", "required for email"),
        ({**EMAIL, "to_attribute": "email"}, "stages[0].steps[0].template_id", "required"),
        (
            {**EMAIL, "template_id": "t", "to_attribute": "email", "channel": "fax"},
            "stages[0].steps[0].channel",
            "'email', 'sms', 'push' or 'webhook'",
        ),
        ({"id": "x\n", "type": "end"}, "stages[0].steps[0].id", "control characters"),
        ({"id": "x" * 101, "type": "end"}, "stages[0].steps[0].id", "at most 100"),
        ({"id": "", "type": "end"}, "stages[0].steps[0].id", "at least 1"),
        ({"type": "end"}, "stages[0].steps[0].id", "required"),
        ({"id": "e", "type": "end", "color": "red"}, "stages[0].steps[0].color", "Extra"),
        ({"id": "e", "type": "teleport"}, "stages[0].steps[0]", "'type' must be one of"),
        (
            {"id": "s", "type": "split", "mode": "weighted", "paths": []},
            "stages[0].steps[0]",
            "'mode' must be 'attribute', 'random' or 'experiment'",
        ),
        (
            {"id": "s", "type": "split", "mode": "random", "cases": []},
            "stages[0].steps[0].paths",
            "required",
        ),
        (
            {"id": "s", "type": "split", "mode": "random", "paths": [{"percent": 0}]},
            "stages[0].steps[0].paths[0].percent",
            "greater than 0",
        ),
        (
            {"id": "b", "type": "branch", "criteria": {"event": "x"}, "timeout": "P1D", "no": [7]},
            "stages[0].steps[0].no[0]",
            "'type' must be one of",
        ),
        (
            {"id": "j", "type": "jump"},
            "stages[0].steps[0].stage",
            "required",
        ),
    ],
)
def test_a_bad_step_is_an_error_at_its_path(step: dict[str, Any], path: str, fragment: str) -> None:
    errors = errors_of(journey(step))
    assert path in errors, errors
    assert fragment in errors[path]


def test_a_webhook_activation_needs_no_recipient_attribute() -> None:
    step = {**EMAIL, "channel": "webhook", "template_id": "t"}
    body = JourneyBody.model_validate(journey(step))
    activation = body.stages[0].steps[0]
    assert isinstance(activation, ActivationStep)
    assert activation.to_attribute is None


def test_a_split_error_names_only_its_own_mode() -> None:
    # The attribute model alone is judged, so nothing is said about 'paths'.
    split = {"id": "s", "type": "split", "mode": "attribute", "default": "none"}
    errors = errors_of(journey(split))
    assert set(errors) == {"stages[0].steps[0].cases", "stages[0].steps[0].default"}


@pytest.mark.parametrize(
    ("fields", "path", "fragment"),
    [
        ({"name": ""}, "name", "at least 1"),
        ({"name": "   "}, "name", "blank"),
        ({"name": "x" * 201}, "name", "at most 200"),
        ({"purpose": "fun"}, "purpose", "'welcome'"),
        ({"reentry": {"mode": "sometimes"}}, "reentry.mode", "'never'"),
        ({"reentry": {"cooldown": "P1M"}}, "reentry.cooldown", "no fixed length"),
        ({"reentry": {"cooldown": "-PT1H"}}, "reentry.cooldown", "cannot be negative"),
        ({"schedule": {"start_at": "2030-01-01T00:00:00"}}, "schedule.start_at", "timezone"),
        (
            {"schedule": {"start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"}},
            "schedule.end_at",
            "after 'start_at'",
        ),
        (
            {"goal": {"criteria": {"event": "buy"}, "target_percent": 101}},
            "goal.target_percent",
            "",
        ),
        ({"goal": {"target_percent": 50}}, "goal.criteria", "required"),
        (
            {"exit_criteria": [{"criteria": {"event": "stop"}, "to_stage": "S"}]},
            "exit_criteria[0].to_stage",
            "Extra",
        ),
        ({"max_time_in_journey": "forever"}, "max_time_in_journey", "ISO 8601"),
        ({"stages": "S"}, "stages", "valid list"),
        ({"owner": "me"}, "owner", "Extra"),
    ],
)
def test_a_bad_journey_field_is_an_error_at_its_path(
    fields: dict[str, Any], path: str, fragment: str
) -> None:
    errors = errors_of(journey({"id": "e", "type": "end"}, **fields))
    assert path in errors, errors
    assert fragment in errors[path]


def test_a_missing_stages_list_is_required() -> None:
    assert "stages" in errors_of({"name": "J"})
