from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.event_schema import declaration, parse
from shared.journey import JourneyBody, JourneyLimits
from shared.journey_validation import (
    Catalog,
    ConnectorRef,
    EventRef,
    JourneyRef,
    TemplateRef,
    journey_jump_targets,
    validate_journey,
)
from shared.problems import FieldError

Json = dict[str, Any]

# -- a small builder for journey bodies --------------------------------------------------


def wait(sid: str, duration: str = "PT1H") -> Json:
    return {"id": sid, "type": "wait", "duration": duration}


def send(sid: str, channel: str = "email", template: str = "", connector: str = "") -> Json:
    step = {
        "id": sid,
        "type": "activation",
        "channel": channel,
        "connector_id": connector or CONNECTOR_OF[channel],
        "template_id": template or f"t-{channel}",
    }
    return step if channel == "webhook" else {**step, "to_attribute": "contact"}


def branch(
    sid: str, yes: list[Json] | None = None, no: list[Json] | None = None, **kw: Any
) -> Json:
    step = {"id": sid, "type": "branch", "criteria": {"event": "email_opened"}, "timeout": "P1D"}
    return {**step, "yes": yes or [], "no": no or [], **kw}


def by_attribute(sid: str, *cases: list[Json], default: list[Json] | None = None) -> Json:
    return {
        "id": sid,
        "type": "split",
        "mode": "attribute",
        "cases": [
            {"criteria": {"profile": [{"attribute": "tier", "op": "eq", "value": i}]}, "steps": s}
            for i, s in enumerate(cases)
        ],
        "default": default or [],
    }


def at_random(sid: str, *percents: float) -> Json:
    paths = [{"percent": p, "steps": []} for p in percents]
    return {"id": sid, "type": "split", "mode": "random", "paths": paths}


def jump(sid: str, stage: str, journey_id: str | None = None) -> Json:
    step = {"id": sid, "type": "jump", "stage": stage}
    return step if journey_id is None else {**step, "journey_id": journey_id}


def end(sid: str) -> Json:
    return {"id": sid, "type": "end"}


def stage(name: str, *steps: Json, **fields: Any) -> Json:
    return {"name": name, "steps": list(steps), **fields}


def journey(*stages: Json, **fields: Any) -> Json:
    """A journey whose stages get entry / milestone criteria as the rules want them."""
    shaped = [dict(s) for s in stages]
    for i, s in enumerate(shaped):
        if i == 0:
            s.setdefault("entry", {"event": "signed_up"})
        if i < len(shaped) - 1:
            s.setdefault("milestone", {"event": f"reached_{i + 1}"})
    return {"name": "Journey", "stages": shaped, **fields}


def stages_named(*names: str) -> list[Json]:
    return [stage(name, end(f"end-{name}")) for name in names]


CONNECTOR_OF = {"email": "c-smtp", "sms": "c-sms", "push": "c-push", "webhook": "c-hook"}
CATALOG = Catalog(
    templates={
        "t-email": TemplateRef("email", "ready"),
        "t-sms": TemplateRef("sms", "ready"),
        "t-push": TemplateRef("push", "ready"),
        "t-webhook": TemplateRef("webhook", "ready"),
        "t-draft": TemplateRef("email", "draft"),
    },
    connectors={
        "c-smtp": ConnectorRef("smtp"),
        "c-sms": ConnectorRef("sms_http"),
        "c-push": ConnectorRef("push_http"),
        "c-hook": ConnectorRef("webhook"),
    },
    journeys={
        "other": JourneyRef(["Welcome", "Offer"], "live"),
        "drafty": JourneyRef(["Start"], "draft"),
        "loop": JourneyRef(["Start"], "live", frozenset({"current"})),
        "via": JourneyRef(["Start"], "live", frozenset({"elsewhere", "loop"})),
        "elsewhere": JourneyRef(["Start"], "live"),
    },
    journey_id="current",
)
LIMITS = JourneyLimits()


def problems(
    raw: object,
    *,
    for_publish: bool = False,
    limits: JourneyLimits = LIMITS,
    catalog: Catalog = CATALOG,
) -> list[FieldError]:
    return validate_journey(raw, limits, catalog, for_publish=for_publish)[1]


def valid_journey() -> Json:
    """Every kind of step, three stages, references that exist: no problem at all."""
    return journey(
        stage(
            "Cart",
            wait("w1"),
            send("a1"),
            branch("b1", yes=[end("e1")], no=[send("a2", "sms"), jump("j1", "Win-back")]),
            max_time_in_stage="P3D",
            exit_criteria=[{"criteria": {"event": "refund"}, "to_stage": "Win-back"}],
        ),
        stage(
            "Browse",
            {"id": "w2", "type": "wait", "time_of_day": "09:00", "days": ["mon", "fri"]},
            by_attribute("s1", [send("a3", "push")], default=[send("a4", "webhook")]),
            at_random("s2", 33.3, 33.3, 33.4),
        ),
        stage("Win-back", jump("j2", "Offer", journey_id="other")),
        goal={"criteria": {"event": "purchase"}, "target_percent": 50},
        exit_criteria=[{"criteria": {"event": "unsubscribe"}}],
        max_time_in_journey="P24D",
        reentry={"mode": "unless_goal_met", "cooldown": "PT24H"},
    )


# -- the matrix: one rule per case -------------------------------------------------------


def nine_stages() -> Json:
    return journey(*stages_named(*"ABCDEFGHI"))


def steps_in_stage(count: int, prefix: str = "w") -> list[Json]:
    return [wait(f"{prefix}{k}") for k in range(count)]


def too_many_jumps() -> Json:
    # Each split has 6 paths, each ending in a jump: 4 splits hold 24 jumps.
    def split(n: int) -> Json:
        paths = [[jump(f"j{n}-{k}", "Later")] for k in range(6)]
        return by_attribute(f"s{n}", *paths[:5], default=paths[5])

    return journey(stage("First", *(split(n) for n in range(4))), stage("Later"))


def nested_branches(levels: int) -> Json:
    inner: list[Json] = []
    for level in reversed(range(levels)):
        inner = [branch(f"b{level}", yes=inner)]
    return journey(stage("Deep", *inner))


def too_many_exit_rules() -> Json:
    rule = {"criteria": {"event": "stop"}}
    return journey(stage("A", exit_criteria=[rule] * 11), exit_criteria=[rule] * 10)


def deep_criteria() -> Json:
    criteria: Json = {"event": "purchase"}
    for _ in range(9):
        criteria = {"not": criteria}
    return journey(stage("A"), goal={"criteria": criteria})


Case = tuple[str, Callable[[], Json], str, str]

MATRIX: list[Case] = [
    ("no stage", lambda: journey(), "stages", "at least 1 stage"),
    ("too many stages", nine_stages, "stages", "at most 8 stages (found 9)"),
    (
        "duplicate stage name",
        lambda: journey(*stages_named("A", "B"), stage("A", end("e"))),
        "stages[2].name",
        "'A' is also the name of stages[0]",
    ),
    (
        "duplicate step id across stages",
        lambda: journey(stage("A", wait("w1")), stage("B", wait("w2"), wait("w1"))),
        "stages[1].steps[1].id",
        "'w1' is also the id of stages[0].steps[0]",
    ),
    (
        "duplicate step id inside a path",
        lambda: journey(stage("A", wait("w1"), branch("b", no=[wait("w1")]))),
        "stages[0].steps[1].no[0].id",
        "step ids are unique",
    ),
    (
        "first stage without entry",
        lambda: {"name": "J", "stages": [stage("A")]},
        "stages[0].entry",
        "first stage needs entry criteria",
    ),
    (
        "later stage with entry",
        lambda: journey(stage("A"), stage("B", entry={"event": "x"})),
        "stages[1].entry",
        "only the first stage has entry criteria",
    ),
    (
        "stage without milestone",
        lambda: {"name": "J", "stages": [stage("A", entry={"event": "x"}), stage("B")]},
        "stages[0].milestone",
        "needs a milestone",
    ),
    (
        "last stage with milestone",
        lambda: journey(stage("A", milestone={"event": "x"})),
        "stages[0].milestone",
        "the last stage has no milestone",
    ),
    (
        "stale timeout too short",
        lambda: journey(stage("A", max_time_in_stage="PT30S")),
        "stages[0].max_time_in_stage",
        "between 1 minute (PT1M) and 24 days (P24D) (found PT30S)",
    ),
    (
        "stale timeout too long",
        lambda: journey(stage("A"), stage("B", max_time_in_stage="P25D")),
        "stages[1].max_time_in_stage",
        "between 1 minute (PT1M) and 24 days (P24D) (found P25D)",
    ),
    (
        "max time in journey too long",
        lambda: journey(stage("A"), max_time_in_journey="P4W"),
        "max_time_in_journey",
        "24 days (P24D) (found P4W)",
    ),
    (
        "too many steps in a stage",
        lambda: journey(stage("A", *steps_in_stage(41))),
        "stages[0].steps",
        "at most 40 steps per stage, counting the steps inside branches and splits (found 41)",
    ),
    (
        "nested steps count for the stage",
        lambda: journey(stage("A", *steps_in_stage(39), branch("b", yes=[end("e")]))),
        "stages[0].steps",
        "(found 41)",
    ),
    (
        "too many steps in a journey",
        lambda: journey(*(stage(n, *steps_in_stage(31, n)) for n in "ABCD")),
        "stages",
        "at most 120 steps per journey (found 124)",
    ),
    (
        "too many activations",
        lambda: journey(
            stage("A", *(send(f"a{k}") for k in range(26))),
            stage("B", *(send(f"b{k}") for k in range(25))),
        ),
        "stages",
        "at most 50 activations per journey (found 51)",
    ),
    (
        "too many exit rules",
        too_many_exit_rules,
        "exit_criteria",
        "at most 20 exit rules per journey (journey and stages) (found 21)",
    ),
    ("too many jumps", too_many_jumps, "stages", "at most 20 jumps per journey (found 24)"),
    (
        "random split with one path",
        lambda: journey(stage("A", at_random("s", 100))),
        "stages[0].steps[0].paths",
        "a split has 2 to 6 paths (found 1)",
    ),
    (
        "random split with seven paths",
        lambda: journey(stage("A", at_random("s", 10, 10, 10, 10, 20, 20, 20))),
        "stages[0].steps[0].paths",
        "a split has 2 to 6 paths (found 7)",
    ),
    (
        "attribute split without cases",
        lambda: journey(stage("A", by_attribute("s", default=[end("e")]))),
        "stages[0].steps[0].cases",
        "at least 1 case",
    ),
    (
        "attribute split with seven paths",
        lambda: journey(stage("A", by_attribute("s", *([[]] * 6)))),
        "stages[0].steps[0].cases",
        "a split has 2 to 6 paths (found 7, the default included)",
    ),
    (
        "random percentages not adding up",
        lambda: journey(stage("A", at_random("s", 90, 5))),
        "stages[0].steps[0].paths",
        "add up to 100 (found 95)",
    ),
    (
        "exit rule to an unknown stage",
        lambda: journey(stage("A", exit_criteria=[{"criteria": {"event": "x"}, "to_stage": "Z"}])),
        "stages[0].exit_criteria[0].to_stage",
        "no stage named 'Z' in this journey",
    ),
    (
        "exit rule to an earlier stage",
        lambda: journey(
            stage("A"), stage("B", exit_criteria=[{"criteria": {"event": "x"}, "to_stage": "A"}])
        ),
        "stages[1].exit_criteria[0].to_stage",
        "can only lead to a later stage: 'A' does not come after 'B'",
    ),
    (
        "exit rule to its own stage",
        lambda: journey(stage("A", exit_criteria=[{"criteria": {"event": "x"}, "to_stage": "A"}])),
        "stages[0].exit_criteria[0].to_stage",
        "later stage",
    ),
    (
        "jump back within the journey",
        lambda: journey(stage("A"), stage("B", branch("b", no=[jump("j", "A")]))),
        "stages[1].steps[0].no[0].stage",
        "a jump can only lead to a later stage: 'A' does not come after 'B'",
    ),
    (
        "jump to an unknown stage",
        lambda: journey(stage("A", jump("j", "Nowhere"))),
        "stages[0].steps[0].stage",
        "no stage named 'Nowhere'",
    ),
    (
        "jump before the end of its path",
        lambda: journey(stage("A", jump("j", "B"), wait("w")), stage("B")),
        "stages[0].steps[0]",
        "a jump must be the last step of its path (1 step after it)",
    ),
    (
        "jump inside a path before its end",
        lambda: journey(
            stage("A", branch("b", yes=[jump("j", "B"), wait("w"), end("e")])), stage("B")
        ),
        "stages[0].steps[0].yes[0]",
        "a jump must be the last step of its path (2 steps after it)",
    ),
    (
        "end before the end of its path",
        lambda: journey(stage("A", end("e"), wait("w"))),
        "stages[0].steps[0]",
        "an end must be the last step of its path",
    ),
    (
        "branch timeout of zero",
        lambda: journey(stage("A", branch("b", timeout="PT0S"))),
        "stages[0].steps[0].timeout",
        "must be longer than zero",
    ),
    (
        "branch timeout too long",
        lambda: journey(stage("A", branch("b", timeout="P400D"))),
        "stages[0].steps[0].timeout",
        "365 days (P365D) (found P400D)",
    ),
    (
        "wait too long",
        lambda: journey(stage("A", wait("w", "P53W"))),
        "stages[0].steps[0].duration",
        "between 0 seconds (PT0S) and 365 days (P365D) (found P53W)",
    ),
    (
        "cooldown too long",
        lambda: journey(stage("A"), reentry={"mode": "always", "cooldown": "P400D"}),
        "reentry.cooldown",
        "(found P400D)",
    ),
    (
        "unknown template",
        lambda: journey(stage("A", send("a", template="t-gone"))),
        "stages[0].steps[0].template_id",
        "no template 't-gone' in this workspace",
    ),
    (
        "template of another channel",
        lambda: journey(stage("A", send("a", template="t-sms"))),
        "stages[0].steps[0].template_id",
        "template 't-sms' is for sms, not email",
    ),
    (
        "unknown connector",
        lambda: journey(stage("A", send("a", "push", connector="c-gone"))),
        "stages[0].steps[0].connector_id",
        "no connector 'c-gone' in this workspace",
    ),
    (
        "connector of another channel",
        lambda: journey(stage("A", send("a", connector="c-sms"))),
        "stages[0].steps[0].connector_id",
        "connector 'c-sms' is of type sms_http (sms), not for email",
    ),
    (
        "jump to an unknown journey",
        lambda: journey(stage("A", jump("j", "Start", journey_id="nope"))),
        "stages[0].steps[0].journey_id",
        "no journey 'nope' in this workspace",
    ),
    (
        "jump to an unknown stage of another journey",
        lambda: journey(stage("A", jump("j", "Start", journey_id="other"))),
        "stages[0].steps[0].stage",
        "journey 'other' has no stage named 'Start' (its stages: Welcome, Offer)",
    ),
    (
        "jump to this very journey",
        lambda: journey(stage("A", jump("j", "A", journey_id="current"))),
        "stages[0].steps[0].journey_id",
        "names this journey",
    ),
    (
        "jump that closes a cycle",
        lambda: journey(stage("A", jump("j", "Start", journey_id="loop"))),
        "stages[0].steps[0].journey_id",
        "cycle between journeys: this journey -> loop -> this journey",
    ),
    (
        "jump that closes a longer cycle",
        lambda: journey(stage("A", branch("b", no=[jump("j", "Start", journey_id="via")]))),
        "stages[0].steps[0].no[0].journey_id",
        "this journey -> via -> loop -> this journey",
    ),
    ("criteria nested too deep", deep_criteria, "goal.criteria", "at most 8 levels"),
]


@pytest.mark.parametrize(
    ("build", "path", "fragment"),
    [pytest.param(build, path, fragment, id=name) for name, build, path, fragment in MATRIX],
)
def test_each_rule_reports_one_problem_at_its_path(
    build: Callable[[], Json], path: str, fragment: str
) -> None:
    found = problems(build())
    assert [p.path for p in found] == [path], found
    assert fragment in found[0].message


def test_a_valid_journey_has_no_problem_even_for_publish() -> None:
    body, found = validate_journey(valid_journey(), LIMITS, CATALOG, for_publish=True)
    assert found == []
    assert isinstance(body, JourneyBody)
    assert [s.name for s in body.stages] == ["Cart", "Browse", "Win-back"]


def test_paths_nest_at_most_ten_levels() -> None:
    assert problems(nested_branches(10)) == []
    found = problems(nested_branches(11))
    deepest = "stages[0].steps[0]" + ".yes[0]" * 10
    assert [p.path for p in found] == [f"{deepest}.yes", f"{deepest}.no"]
    assert "nest at most 10 levels deep" in found[0].message


def test_a_draft_template_is_refused_only_for_publish() -> None:
    raw = journey(stage("A", send("a", template="t-draft")))
    assert problems(raw, for_publish=False) == []
    found = problems(raw, for_publish=True)
    assert [p.path for p in found] == ["stages[0].steps[0].template_id"]
    assert "template 't-draft' is draft: only ready templates can be published" in (
        found[0].message
    )


def test_a_jump_to_a_journey_not_live_is_refused_only_for_publish() -> None:
    raw = journey(stage("A", jump("j", "Start", journey_id="drafty")))
    assert problems(raw, for_publish=False) == []
    found = problems(raw, for_publish=True)
    assert [p.path for p in found] == ["stages[0].steps[0].journey_id"]
    assert "is draft: a jump can only lead to a live journey" in found[0].message


def test_no_cycle_is_possible_before_the_journey_exists() -> None:
    raw = journey(stage("A", jump("j", "Start", journey_id="loop")))
    unsaved = Catalog(CATALOG.templates, CATALOG.connectors, CATALOG.journeys, journey_id=None)
    assert problems(raw, catalog=unsaved) == []


def test_limits_are_configurable_and_named_in_the_message() -> None:
    limits = JourneyLimits(max_stages=2, max_split_paths=3)
    raw = journey(*stages_named("A", "B"), stage("C", at_random("s", 25, 25, 25, 25)))
    found = {p.path: p.message for p in problems(raw, limits=limits)}
    assert found == {
        "stages": "at most 2 stages (found 3)",
        "stages[2].steps[0].paths": "a split has 2 to 3 paths (found 4)",
    }


def test_every_problem_is_reported_at_once() -> None:
    raw = journey(
        stage("A", wait("w1"), send("a1", template="t-gone"), max_time_in_stage="PT10S"),
        stage("A", wait("w1"), at_random("s", 50, 40), entry={"event": "again"}),
        stage("C", send("a2", "sms", template="t-draft"), jump("j", "A")),
        max_time_in_journey="P30D",
    )
    found = [(p.path, p.message) for p in problems(raw, for_publish=True)]
    paths = [path for path, _ in found]
    assert sorted(paths) == sorted(
        [
            "stages[1].name",
            "stages[1].entry",
            "stages[1].steps[0].id",
            "max_time_in_journey",
            "stages[0].max_time_in_stage",
            "stages[1].steps[1].paths",
            "stages[0].steps[1].template_id",
            "stages[2].steps[0].template_id",
            "stages[2].steps[1].stage",
        ]
    )
    assert len(found) == len(set(found))


def test_parsing_errors_are_all_reported_with_their_paths() -> None:
    raw = journey(
        stage(
            "A",
            {"id": "w", "type": "wait", "duration": "P1M"},
            {"id": "x", "type": "teleport"},
            {"id": "s", "type": "split", "paths": []},
            {**send("a"), "to_attribute": None, "colour": "red"},
        ),
        purpose=7,
        stages_extra=True,
    )
    body, found = validate_journey(raw, LIMITS, CATALOG, for_publish=False)
    assert body is None
    messages = {p.path: p.message for p in found}
    assert set(messages) == {
        "stages[0].steps[0].duration",
        "stages[0].steps[1].type",
        "stages[0].steps[2].mode",
        "stages[0].steps[3].to_attribute",
        "stages[0].steps[3].colour",
        "purpose",
        "stages_extra",
    }
    assert "years and months have no fixed length" in messages["stages[0].steps[0].duration"]
    assert messages["stages[0].steps[1].type"].startswith("unknown step type 'teleport'")
    assert messages["stages[0].steps[2].mode"] == "required: one of attribute, random, experiment"
    assert "required for email" in messages["stages[0].steps[3].to_attribute"]
    assert messages["stages[0].steps[3].colour"] == "unknown field 'colour'"
    assert messages["stages_extra"] == "unknown field 'stages_extra'"


@pytest.mark.parametrize(
    ("raw", "path", "fragment"),
    [
        ({"name": 5, "stages": []}, "name", "valid string"),
        ({"name": "J", "stages": [{"name": "A", "steps": {}}]}, "stages[0].steps", "valid list"),
        (
            {"name": "J", "stages": [{"name": "A", "steps": [{"id": 1, "type": "end"}]}]},
            "stages[0].steps[0].id",
            "valid string",
        ),
        (
            journey(stage("A", {**at_random("s", 50, 50), "paths": [{"percent": "half"}]})),
            "stages[0].steps[0].paths[0].percent",
            "valid number",
        ),
        (
            journey(stage("A", entry={"event": "x", "where": [{"property": "p", "op": "gt"}]})),
            "stages[0].entry.where[0]",
            "needs a value",
        ),
        ([], "$", "valid dictionary"),
    ],
)
def test_a_wrong_type_is_an_error_at_its_path(raw: object, path: str, fragment: str) -> None:
    found = {p.path: p.message for p in problems(raw)}
    assert path in found, found
    assert fragment in found[path]


def test_a_journey_exit_rule_cannot_move_to_a_stage() -> None:
    raw = journey(stage("A"), exit_criteria=[{"criteria": {"event": "x"}, "to_stage": "A"}])
    found = problems(raw)
    assert [p.path for p in found] == ["exit_criteria[0].to_stage"]
    assert "use a stage exit rule" in found[0].message


def test_jump_targets_are_the_other_journeys_jumped_to() -> None:
    raw = journey(
        stage("A", branch("b", yes=[jump("j1", "Offer", "other")], no=[jump("j2", "B")])),
        stage("B", jump("j3", "Start", "elsewhere")),
    )
    body, _ = validate_journey(raw, LIMITS, CATALOG, for_publish=False)
    assert body is not None
    assert journey_jump_targets(body) == {"other", "elsewhere"}


# -- event triggers at publish ----------------------------------------------------------


def _events(**declared: dict[str, Any]) -> dict[str, EventRef]:
    refs = {}
    for name, properties in declared.items():
        schema, errors = parse(declaration(properties))
        assert schema is not None, errors
        refs[name] = EventRef(schema)
    return refs


TRIGGERED = {
    "name": "T",
    "goal": {"criteria": {"event": "purchase", "where": [
        {"property": "total", "op": "gte", "value": 10}]}},
    "stages": [{
        "name": "S",
        "entry": {"any": [{"event": "signup"}, {"event": "profile_updated"}]},
        "exit_criteria": [{"criteria": {"event": "unsubscribe"}}],
        "steps": [{"id": "b", "type": "branch", "timeout": "P1D",
                   "criteria": {"event": "email_clicked", "where": [
                       {"property": "url", "op": "contains", "value": "x"}]},
                   "yes": [], "no": []}],
    }],
}  # fmt: skip


def _publish_errors(events: dict[str, EventRef] | None) -> dict[str, str]:
    catalog = Catalog(events=events)
    _, errors = validate_journey(TRIGGERED, JourneyLimits(), catalog, for_publish=True)
    return {e.path: e.message for e in errors}


def test_publishing_needs_a_trigger_for_every_event_but_the_built_in_ones() -> None:
    errors = _publish_errors(_events(signup={}))
    assert set(errors) == {"goal.criteria.event", "stages[0].exit_criteria[0].criteria.event"}
    assert "'purchase'" in errors["goal.criteria.event"]


def test_publishing_checks_the_properties_criteria_compare() -> None:
    total = {"type": "integer"}
    assert _publish_errors(_events(signup={}, unsubscribe={}, purchase={"total": total})) == {}
    wrong = _publish_errors(_events(signup={}, unsubscribe={}, purchase={"sum": total}))
    assert list(wrong) == ["goal.criteria.where[0].property"]
    text = {"type": "string"}
    typed = _publish_errors(_events(signup={}, unsubscribe={}, purchase={"total": text}))
    assert list(typed) == ["goal.criteria.where[0].value"]


def test_without_the_setting_and_for_drafts_no_trigger_is_needed() -> None:
    assert _publish_errors(None) == {}
    catalog = Catalog(events={})
    _, errors = validate_journey(TRIGGERED, JourneyLimits(), catalog, for_publish=False)
    assert errors == []


# -- one pass ---------------------------------------------------------------------------


def test_a_journey_that_does_not_parse_still_answers_every_other_problem() -> None:
    from shared.journey_validation import Catalog as Refs
    from shared.journey_validation import validate_journey

    raw = {"name": "x", "stages": [{"name": "s", "entry": {"event": "e"}, "steps": [
        {"id": "a", "type": "wait", "duration": "PT1H"},
        {"id": "a", "type": "activation", "channel": "sms", "connector_id": "c",
         "template_id": "t"},  # no to_attribute: does not parse; its id is a duplicate
        {"id": "m", "type": "activation", "channel": "sms", "connector_id": "c",
         "template_id": "gone", "to_attribute": "phone"},  # parses; names no template
        {"id": "w", "type": "wat"},
    ]}]}  # fmt: skip
    body, errors = validate_journey(raw, JourneyLimits(), Refs(), for_publish=True)
    assert body is None
    paths = {e.path for e in errors}
    assert {
        "stages[0].steps[1].to_attribute", "stages[0].steps[3].type",  # parse errors
        "stages[0].steps[1].id", "stages[0].steps[2].template_id",  # found beside them
    } <= paths  # fmt: skip
    # Nothing is said of a step set aside beyond its parse errors and its id.
    assert "stages[0].steps[1].template_id" not in paths
    assert not [p for p in paths if p.startswith("stages[0].steps[3].") and p.endswith("id")]


def test_a_problem_outside_any_step_answers_the_parse_errors_alone() -> None:
    from shared.journey_validation import Catalog as Refs
    from shared.journey_validation import validate_journey

    raw = {"stages": [{"name": "s", "entry": {"event": "e"}, "steps": [wait("a"), wait("a")]}]}
    body, errors = validate_journey(raw, JourneyLimits(), Refs(), for_publish=False)
    assert body is None
    assert [e.path for e in errors] == ["name"]


@pytest.mark.parametrize(
    ("given", "meant"), [(">", "gt"), ("greater_than", "gt"), ("gtt", "gt"), ("==", "eq"),
                         ("not in", "not_in"), ("contain", "contains")],
)  # fmt: skip
def test_an_unknown_operator_says_which_one_was_meant(given: str, meant: str) -> None:
    from shared.journey_validation import Catalog as Refs
    from shared.journey_validation import validate_journey

    where = [{"property": "n", "op": given, "value": 1}]
    branch = {"id": "b", "type": "branch", "timeout": "P1D",
              "criteria": {"event": "x", "where": where}}  # fmt: skip
    raw = {"name": "x", "stages": [{"name": "s", "entry": {"event": "e"}, "steps": [branch]}]}
    _body, errors = validate_journey(raw, JourneyLimits(), Refs(), for_publish=False)
    (error,) = [e for e in errors if e.path.endswith(".op")]
    assert error.path == "stages[0].steps[0].criteria.where[0].op"
    assert f"did you mean '{meant}'?" in error.message
    assert "expected one of eq, neq" in error.message
