"""Validate a journey body: structure, limits and references, every problem at once.

``validate_journey`` is pure: what it needs from the database (templates, connectors, the
workspace's other journeys) comes in a ``Catalog`` the caller fills. Each problem is a
``FieldError`` with the JSON path of the offending field, so a client can show it in place.
"""

from __future__ import annotations

import copy
import difflib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from shared import criteria as criteria_model
from shared import event_schema
from shared.criteria import All, AnyOf, Match, Not
from shared.durations import describe, format_duration, to_timedelta
from shared.journey import (
    SPLIT_MODE_ERROR,
    SPLIT_MODES,
    STEP_TYPE_ERROR,
    STEP_TYPES,
    ActivationStep,
    AnyStep,
    AttributeSplitStep,
    BranchStep,
    EndStep,
    ExperimentSplitStep,
    JourneyBody,
    JourneyLimits,
    JumpStep,
    RandomSplitStep,
    Stage,
    WaitStep,
    iter_journey_steps,
    iter_step_lists,
    iter_steps,
)
from shared.problems import UNION_TAGS, FieldError, json_path

# Which channel each connector type delivers on.
CONNECTOR_CHANNELS: Mapping[str, str] = {
    "smtp": "email",
    "sms_http": "sms",
    "push_http": "push",
    "webhook": "webhook",
}


@dataclass(frozen=True)
class TemplateRef:
    channel: str
    status: str  # draft | ready


@dataclass(frozen=True)
class ConnectorRef:
    type: str  # smtp | sms_http | push_http | webhook


@dataclass(frozen=True)
class JourneyRef:
    """Another journey of the workspace, as a jump target."""

    stage_names: Sequence[str]
    status: str  # draft | live | paused | stopped
    jump_targets: Set[str] = frozenset()  # journeys its own jumps lead to


# Events the product itself records: always known, whatever triggers a workspace declares.
BUILTIN_EVENTS = frozenset(
    {"message_sent", "message_failed", "email_opened", "email_clicked", "profile_updated"}
)


@dataclass(frozen=True)
class EventRef:
    """A published event trigger: the properties its event declares."""

    schema: event_schema.Schema


@dataclass(frozen=True)
class Catalog:
    """What a journey may refer to, read by the caller from the workspace's data."""

    templates: Mapping[str, TemplateRef] = field(default_factory=dict)
    connectors: Mapping[str, ConnectorRef] = field(default_factory=dict)
    journeys: Mapping[str, JourneyRef] = field(default_factory=dict)
    journey_id: str | None = None  # the journey being validated; None before it exists
    # The published event triggers; None when the workspace does not require them.
    events: Mapping[str, EventRef] | None = None


def validate_journey(
    raw: object, limits: JourneyLimits, catalog: Catalog, *, for_publish: bool
) -> tuple[JourneyBody | None, list[FieldError]]:
    """Parse and check ``raw``; the body (None if it does not parse) and every problem found.

    ``for_publish`` adds what only publishing needs: ready templates, live jump targets,
    published event triggers for every event named (when the catalog has them).
    """
    try:
        body = JourneyBody.model_validate(raw)
    except ValidationError as exc:
        errors = [_field_error(e) for e in exc.errors(include_url=False)]
        return None, errors + _beside(raw, exc, limits, catalog, for_publish)
    errors = list(_semantic_errors(body, limits, catalog, for_publish))
    return body, errors


# -- one pass ---------------------------------------------------------------------------

# The keys under which a journey holds lists of steps.
STEP_LISTS = frozenset({"steps", "yes", "no", "default"})
# Rounds of setting steps aside (a step kept its id, and the id was at fault); past them,
# only the parse errors are answered.
SET_ASIDE_ROUNDS = 3


def _beside(
    raw: object,
    exc: ValidationError,
    limits: JourneyLimits,
    catalog: Catalog,
    for_publish: bool,
) -> list[FieldError]:
    """The other problems of a journey that does not parse, so that one answer names every
    problem: each step that does not parse is set aside (a plain wait takes its place and
    its id, so every other step keeps its path and a duplicate id still shows), and the
    checks run on the rest. Nothing is said about a step set aside beyond its parse errors;
    when what does not parse is not inside a step, only the parse errors are answered."""
    data = copy.deepcopy(raw)
    set_aside: set[str] = set()
    errors = exc.errors(include_url=False)
    for _ in range(SET_ASIDE_ROUNDS):
        for error in errors:
            at = _step_at(error["loc"])
            # A step set aside that still does not parse: its own id was the fault.
            keep_id = at is not None and json_path(at) not in set_aside
            if at is None or not _replace_step(data, at, len(set_aside), keep_id):
                return []
            set_aside.add(json_path(at))
        try:
            body = JourneyBody.model_validate(data)
        except ValidationError as again:
            errors = again.errors(include_url=False)
            continue
        return [
            e
            for e in _semantic_errors(body, limits, catalog, for_publish)
            if not any(_under(e.path, path) for path in set_aside) or _duplicate_id(e)
        ]
    return []


def _step_at(loc: Sequence[str | int]) -> tuple[str | int, ...] | None:
    """The location of the innermost step holding ``loc``, if any."""
    parts = [p for p in loc if not (isinstance(p, str) and (p in UNION_TAGS or "[" in p))]
    for end in range(len(parts) - 1, 0, -1):
        if isinstance(parts[end], int) and parts[end - 1] in STEP_LISTS:
            return tuple(parts[: end + 1])
    return None


def _replace_step(data: Any, at: Sequence[str | int], n: int, keep_id: bool) -> bool:
    container = data
    for part in at[:-1]:
        try:
            container = container[part]
        except (KeyError, IndexError, TypeError):
            return False
    if not isinstance(container, list) or not isinstance(at[-1], int):
        return False
    given = container[at[-1]]
    step_id = given.get("id") if isinstance(given, dict) and keep_id else None
    if not isinstance(step_id, str):
        step_id = f"set-aside-{n}"
    container[at[-1]] = {"id": step_id, "type": "wait", "duration": "PT1M"}
    return True


def _duplicate_id(error: FieldError) -> bool:
    """A step set aside keeps its id: that it is another step's too is still said."""
    return error.path.endswith(".id") and error.message.startswith("step ids are unique")


def _under(path: str, step: str) -> bool:
    return path == step or path.startswith((f"{step}.", f"{step}["))


def journey_jump_targets(body: JourneyBody) -> set[str]:
    """Ids of the other journeys this journey's jumps lead to."""
    return {
        step.journey_id
        for _, step in iter_journey_steps(body)
        if isinstance(step, JumpStep) and step.journey_id is not None
    }


# -- parsing errors ---------------------------------------------------------------------


def _field_error(error: ErrorDetails) -> FieldError:
    path = json_path(error["loc"])
    kind, given = error["type"], error["input"]
    if kind in (STEP_TYPE_ERROR, SPLIT_MODE_ERROR) and isinstance(given, dict):
        return _tag_error(path, kind, given)
    if kind == "extra_forbidden":
        return FieldError(path, _unknown_field_message(path, str(error["loc"][-1])))
    if kind == "enum" and error["loc"][-1:] == ("op",):
        return FieldError(path, _unknown_operator_message(given))
    return FieldError(path, error["msg"])


# What people write for an operator, and the one they mean.
OPERATOR_SPELLINGS = {
    "=": "eq", "==": "eq", "equals": "eq", "is": "eq",
    "!=": "neq", "<>": "neq", "ne": "neq", "not_equals": "neq",
    ">": "gt", "greater_than": "gt", ">=": "gte", "ge": "gte",
    "<": "lt", "less_than": "lt", "<=": "lte", "le": "lte",
    "nin": "not_in", "includes": "contains", "has": "contains",
    "present": "exists", "missing": "not_exists", "absent": "not_exists",
}  # fmt: skip


def _unknown_operator_message(given: object) -> str:
    known = [op.value for op in criteria_model.Op]
    message = f"unknown operator {given!r}; expected one of {', '.join(known)}"
    if not isinstance(given, str):
        return message
    meant = OPERATOR_SPELLINGS.get(given.strip().lower())
    if meant is None:
        close = difflib.get_close_matches(given.strip().lower(), known, n=1, cutoff=0.5)
        meant = close[0] if close else None
    return message if meant is None else f"{message}: did you mean {meant!r}?"


def _tag_error(path: str, kind: str, given: dict[str, Any]) -> FieldError:
    # An unknown tag is the tag field's fault: point at it and say what was found.
    key, allowed, what = (
        ("type", STEP_TYPES, "step type")
        if kind == STEP_TYPE_ERROR
        else ("mode", SPLIT_MODES, "split mode")
    )
    expected = ", ".join(allowed)
    if key not in given:
        return FieldError(f"{path}.{key}", f"required: one of {expected}")
    return FieldError(f"{path}.{key}", f"unknown {what} {given[key]!r}; expected one of {expected}")


def _unknown_field_message(path: str, name: str) -> str:
    if path.startswith("exit_criteria[") and name == "to_stage":
        return (
            "a journey exit rule cannot have 'to_stage': it removes the profile from the "
            "journey; use a stage exit rule to move to a later stage"
        )
    return f"unknown field '{name}'"


# -- semantic checks --------------------------------------------------------------------


def _semantic_errors(
    body: JourneyBody, limits: JourneyLimits, catalog: Catalog, for_publish: bool
) -> Iterator[FieldError]:
    yield from _stage_count(body, limits)
    yield from _stage_names(body)
    yield from _entries_and_milestones(body)
    yield from _step_ids(body)
    yield from _durations(body, limits)
    yield from _counts(body, limits)
    yield from _stage_exit_targets(body)
    yield from _step_lists(body, limits)
    yield from _criteria_depths(body)
    for i, stage in enumerate(body.stages):
        for path, step in iter_steps(stage, i):
            yield from _step_errors(body, i, path, step, limits, catalog, for_publish)
    if for_publish and catalog.events is not None:
        yield from _event_references(body, catalog.events)


def _stage_count(body: JourneyBody, limits: JourneyLimits) -> Iterator[FieldError]:
    found = len(body.stages)
    if found == 0:
        yield FieldError("stages", "a journey needs at least 1 stage")
    elif found > limits.max_stages:
        yield FieldError("stages", f"at most {limits.max_stages} stages (found {found})")


def _stage_names(body: JourneyBody) -> Iterator[FieldError]:
    first: dict[str, int] = {}
    for i, stage in enumerate(body.stages):
        if stage.name in first:
            yield FieldError(
                f"stages[{i}].name",
                f"stage names are unique in a journey: '{stage.name}' is also "
                f"the name of stages[{first[stage.name]}]",
            )
        else:
            first[stage.name] = i


def _entries_and_milestones(body: JourneyBody) -> Iterator[FieldError]:
    last = len(body.stages) - 1
    for i, stage in enumerate(body.stages):
        if i == 0 and stage.entry is None:
            yield FieldError("stages[0].entry", "the first stage needs entry criteria")
        if i > 0 and stage.entry is not None:
            yield FieldError(
                f"stages[{i}].entry",
                "only the first stage has entry criteria: a later stage is entered "
                "when the previous stage's milestone matches",
            )
        if i < last and stage.milestone is None:
            yield FieldError(
                f"stages[{i}].milestone",
                "every stage but the last needs a milestone: the criteria that move a "
                f"profile on to stage '{body.stages[i + 1].name}'",
            )
        if i == last and stage.milestone is not None:
            yield FieldError(
                f"stages[{i}].milestone", "the last stage has no milestone: no stage follows it"
            )


def _step_ids(body: JourneyBody) -> Iterator[FieldError]:
    first: dict[str, str] = {}
    for path, step in iter_journey_steps(body):
        if step.id in first:
            yield FieldError(
                f"{path}.id",
                f"step ids are unique in a journey: '{step.id}' is also the id of {first[step.id]}",
            )
        else:
            first[step.id] = path


def _durations(body: JourneyBody, limits: JourneyLimits) -> Iterator[FieldError]:
    stale = (limits.min_stale_timeout, limits.max_stale_timeout)
    if body.max_time_in_journey is not None:
        yield from _within("max_time_in_journey", body.max_time_in_journey, *stale)
    for i, stage in enumerate(body.stages):
        if stage.max_time_in_stage is not None:
            yield from _within(f"stages[{i}].max_time_in_stage", stage.max_time_in_stage, *stale)
    yield from _within("reentry.cooldown", body.reentry.cooldown, timedelta(0), limits.max_duration)


def _within(path: str, duration: str, low: timedelta, high: timedelta) -> Iterator[FieldError]:
    value = to_timedelta(duration)
    if not low <= value <= high:
        yield FieldError(
            path,
            f"must be between {_reading(low)} and {_reading(high)} (found {duration})",
        )


def _reading(value: timedelta) -> str:
    return f"{describe(value)} ({format_duration(value)})"


def _counts(body: JourneyBody, limits: JourneyLimits) -> Iterator[FieldError]:
    steps = list(iter_journey_steps(body))
    for i, stage in enumerate(body.stages):
        found = sum(1 for _ in iter_steps(stage, i))
        if found > limits.max_steps_per_stage:
            yield FieldError(
                f"stages[{i}].steps",
                f"at most {limits.max_steps_per_stage} steps per stage, counting the steps "
                f"inside branches and splits (found {found})",
            )
    yield from _at_most("stages", len(steps), limits.max_steps_per_journey, "steps per journey")
    activations = sum(1 for _, step in steps if isinstance(step, ActivationStep))
    yield from _at_most("stages", activations, limits.max_activations, "activations per journey")
    jumps = sum(1 for _, step in steps if isinstance(step, JumpStep))
    yield from _at_most("stages", jumps, limits.max_jumps, "jumps per journey")
    rules = len(body.exit_criteria) + sum(len(stage.exit_criteria) for stage in body.stages)
    yield from _at_most(
        "exit_criteria", rules, limits.max_exit_rules, "exit rules per journey (journey and stages)"
    )


def _at_most(path: str, found: int, limit: int, what: str) -> Iterator[FieldError]:
    if found > limit:
        yield FieldError(path, f"at most {limit} {what} (found {found})")


def _stage_exit_targets(body: JourneyBody) -> Iterator[FieldError]:
    for i, stage in enumerate(body.stages):
        for k, rule in enumerate(stage.exit_criteria):
            if rule.to_stage is not None:
                path = f"stages[{i}].exit_criteria[{k}].to_stage"
                yield from _later_stage(body, i, rule.to_stage, path, "an exit rule")


def _later_stage(
    body: JourneyBody, index: int, name: str, path: str, what: str
) -> Iterator[FieldError]:
    names = [stage.name for stage in body.stages]
    if name not in names:
        yield FieldError(path, f"no stage named '{name}' in this journey")
    elif names.index(name) <= index:
        yield FieldError(
            path,
            f"{what} can only lead to a later stage: '{name}' does not come after "
            f"'{body.stages[index].name}'",
        )


def _step_lists(body: JourneyBody, limits: JourneyLimits) -> Iterator[FieldError]:
    for i, stage in enumerate(body.stages):
        for steps in iter_step_lists(stage, i):
            if steps.depth > limits.max_depth:
                # Report the outermost list that is too deep, not each list inside it.
                if steps.depth == limits.max_depth + 1:
                    yield FieldError(
                        steps.path,
                        f"branches and splits nest at most {limits.max_depth} levels deep",
                    )
                continue
            yield from _flow_enders(steps.path, steps.steps)


def _flow_enders(path: str, steps: Sequence[AnyStep]) -> Iterator[FieldError]:
    # Steps after a jump or an end would never run.
    for k, step in enumerate(steps[:-1]):
        after = len(steps) - k - 1
        if isinstance(step, JumpStep | EndStep):
            yield FieldError(
                f"{path}[{k}]",
                f"{'a jump' if isinstance(step, JumpStep) else 'an end'} must be the last "
                f"step of its path ({after} step{'s' if after > 1 else ''} after it)",
            )


def _criteria_depths(body: JourneyBody) -> Iterator[FieldError]:
    for path, value in _all_criteria(body):
        if criteria_model.depth(value) > criteria_model.MAX_DEPTH:
            yield FieldError(path, f"criteria nest at most {criteria_model.MAX_DEPTH} levels deep")


def _all_criteria(body: JourneyBody) -> Iterator[tuple[str, Match | All | AnyOf | Not]]:
    if body.goal is not None:
        yield "goal.criteria", body.goal.criteria
    for k, rule in enumerate(body.exit_criteria):
        yield f"exit_criteria[{k}].criteria", rule.criteria
    for i, stage in enumerate(body.stages):
        yield from _stage_criteria(stage, i)


def _stage_criteria(stage: Stage, i: int) -> Iterator[tuple[str, Match | All | AnyOf | Not]]:
    if stage.entry is not None:
        yield f"stages[{i}].entry", stage.entry
    if stage.milestone is not None:
        yield f"stages[{i}].milestone", stage.milestone
    for k, rule in enumerate(stage.exit_criteria):
        yield f"stages[{i}].exit_criteria[{k}].criteria", rule.criteria
    for path, step in iter_steps(stage, i):
        if isinstance(step, BranchStep):
            yield f"{path}.criteria", step.criteria
        if isinstance(step, AttributeSplitStep):
            for c, case in enumerate(step.cases):
                yield f"{path}.cases[{c}].criteria", case.criteria
        if isinstance(step, ExperimentSplitStep) and step.experiment.metric != "goal":
            yield f"{path}.experiment.metric", step.experiment.metric


# -- event triggers ---------------------------------------------------------------------


def _event_references(body: JourneyBody, events: Mapping[str, EventRef]) -> Iterator[FieldError]:
    for path, value in _all_criteria(body):
        for where, match in _matches(path, value):
            yield from _event_reference(where, match, events)


def _matches(path: str, value: Match | All | AnyOf | Not) -> Iterator[tuple[str, Match]]:
    """Every event match inside criteria, with its JSON path."""
    if isinstance(value, Match):
        yield path, value
    elif isinstance(value, Not):
        yield from _matches(f"{path}.not", value.not_)
    else:
        key, parts = ("all", value.all) if isinstance(value, All) else ("any", value.any)
        for k, part in enumerate(parts):
            yield from _matches(f"{path}.{key}[{k}]", part)


def _event_reference(
    path: str, match: Match, events: Mapping[str, EventRef]
) -> Iterator[FieldError]:
    if match.event is None or match.event in BUILTIN_EVENTS:
        return
    trigger = events.get(match.event)
    if trigger is None:
        yield FieldError(
            f"{path}.event",
            f"no published event trigger '{match.event}': declare the event "
            "(POST /v1/event-triggers) and publish it before a journey uses it",
        )
        return
    for k, condition in enumerate(match.where):
        where = f"{path}.where[{k}]"
        declared = event_schema.resolve(trigger.schema, condition.property)
        if declared is None:
            yield FieldError(
                f"{where}.property",
                f"event '{match.event}' declares no property '{condition.property}'",
            )
            continue
        problem = event_schema.comparison_problem(declared, condition.op, condition.value)
        if problem is not None:
            yield FieldError(f"{where}.value", f"'{condition.property}': {problem}")


# -- per step ---------------------------------------------------------------------------


def _step_errors(
    body: JourneyBody,
    stage_index: int,
    path: str,
    step: AnyStep,
    limits: JourneyLimits,
    catalog: Catalog,
    for_publish: bool,
) -> Iterator[FieldError]:
    if isinstance(step, WaitStep) and step.duration is not None:
        yield from _within(f"{path}.duration", step.duration, timedelta(0), limits.max_duration)
    elif isinstance(step, BranchStep):
        yield from _branch_timeout(path, step, limits)
    elif isinstance(step, AttributeSplitStep | RandomSplitStep | ExperimentSplitStep):
        yield from _split_paths(path, step, limits)
        if isinstance(step, ExperimentSplitStep):
            yield from _experiment(body, path, step, limits)
    elif isinstance(step, ActivationStep):
        yield from _template(path, step, catalog, for_publish)
        yield from _connector(path, step, catalog)
    elif isinstance(step, JumpStep):
        yield from _jump(body, stage_index, path, step, catalog, for_publish)


def _branch_timeout(path: str, step: BranchStep, limits: JourneyLimits) -> Iterator[FieldError]:
    if to_timedelta(step.timeout) <= timedelta(0):
        yield FieldError(f"{path}.timeout", f"must be longer than zero (found {step.timeout})")
    else:
        yield from _within(f"{path}.timeout", step.timeout, timedelta(0), limits.max_duration)


def _split_paths(
    path: str,
    step: AttributeSplitStep | RandomSplitStep | ExperimentSplitStep,
    limits: JourneyLimits,
) -> Iterator[FieldError]:
    if isinstance(step, AttributeSplitStep):
        if not step.cases:
            yield FieldError(f"{path}.cases", "an attribute split needs at least 1 case")
            return
        found, where, counted = len(step.cases) + 1, f"{path}.cases", ", the default included"
    else:
        found, where, counted = len(step.paths), f"{path}.paths", ""
        yield from _percent_sum(where, step)
    low, high = limits.min_split_paths, limits.max_split_paths
    if not low <= found <= high:
        yield FieldError(where, f"a split has {low} to {high} paths (found {found}{counted})")


def _percent_sum(path: str, step: RandomSplitStep | ExperimentSplitStep) -> Iterator[FieldError]:
    total = sum(p.percent for p in step.paths)
    what = "an experiment" if isinstance(step, ExperimentSplitStep) else "a random split"
    # Percentages like 33.3 + 33.3 + 33.4 add up with float noise.
    if abs(total - 100) > 1e-6:
        yield FieldError(path, f"the percentages of {what} add up to 100 (found {total:g})")


def _experiment(
    body: JourneyBody, path: str, step: ExperimentSplitStep, limits: JourneyLimits
) -> Iterator[FieldError]:
    """Names unique, one control at most, a metric that can happen, windows that end."""
    names: dict[str, int] = {}
    control: int | None = None
    for i, arm in enumerate(step.paths):
        if arm.name in names:
            yield FieldError(
                f"{path}.paths[{i}].name",
                f"path names are unique in an experiment: '{arm.name}' is also the name of "
                f"paths[{names[arm.name]}]",
            )
        else:
            names[arm.name] = i
        if arm.control and control is not None:
            yield FieldError(
                f"{path}.paths[{i}].control",
                f"an experiment has at most one control: paths[{control}] is the control",
            )
        elif arm.control:
            control = i
    experiment, at = step.experiment, f"{path}.experiment"
    if experiment.metric == "goal" and body.goal is None:
        yield FieldError(
            f"{at}.metric", "the metric is the journey's goal, and this journey has no goal"
        )
    elif experiment.metric != "goal" and not _names_an_event(experiment.metric):
        yield FieldError(
            f"{at}.metric",
            "a metric is an event: criteria that name the event a conversion is "
            '(e.g. {"event": "purchase"}), or "goal"',
        )
    if to_timedelta(experiment.window) <= timedelta(0):
        yield FieldError(f"{at}.window", f"must be longer than zero (found {experiment.window})")
    else:
        yield from _within(f"{at}.window", experiment.window, timedelta(0), limits.max_duration)
    if experiment.max_duration is not None:
        longest = experiment.max_duration
        yield from _within(f"{at}.max_duration", longest, timedelta(0), limits.max_duration)
        if to_timedelta(longest) <= to_timedelta(experiment.window):
            yield FieldError(
                f"{at}.max_duration",
                f"must be longer than the window ({experiment.window}): no profile's window "
                "could close before the experiment ends",
            )


def _names_an_event(criteria: Match | All | AnyOf | Not) -> bool:
    """Whether every way the criteria can match needs an event (not a profile alone)."""
    if isinstance(criteria, Match):
        return criteria.event is not None
    if isinstance(criteria, Not):
        return False
    parts = criteria.all if isinstance(criteria, All) else criteria.any
    if isinstance(criteria, All):
        return any(_names_an_event(part) for part in parts)
    return all(_names_an_event(part) for part in parts)


def _template(
    path: str, step: ActivationStep, catalog: Catalog, for_publish: bool
) -> Iterator[FieldError]:
    template = catalog.templates.get(step.template_id)
    where = f"{path}.template_id"
    if template is None:
        yield FieldError(where, f"no template '{step.template_id}' in this workspace")
    elif template.channel != step.channel:
        yield FieldError(
            where,
            f"template '{step.template_id}' is for {template.channel}, not {step.channel}",
        )
    elif for_publish and template.status != "ready":
        yield FieldError(
            where,
            f"template '{step.template_id}' is {template.status}: "
            "only ready templates can be published",
        )


def _connector(path: str, step: ActivationStep, catalog: Catalog) -> Iterator[FieldError]:
    connector = catalog.connectors.get(step.connector_id)
    where = f"{path}.connector_id"
    if connector is None:
        yield FieldError(where, f"no connector '{step.connector_id}' in this workspace")
        return
    channel = CONNECTOR_CHANNELS.get(connector.type)
    if channel != step.channel:
        yield FieldError(
            where,
            f"connector '{step.connector_id}' is of type {connector.type} "
            f"({channel or 'unknown channel'}), not for {step.channel}",
        )


def _jump(
    body: JourneyBody,
    stage_index: int,
    path: str,
    step: JumpStep,
    catalog: Catalog,
    for_publish: bool,
) -> Iterator[FieldError]:
    if step.journey_id is None:
        yield from _later_stage(body, stage_index, step.stage, f"{path}.stage", "a jump")
        return
    where = f"{path}.journey_id"
    target = catalog.journeys.get(step.journey_id)
    if step.journey_id == catalog.journey_id:
        yield FieldError(
            where, "names this journey: leave out journey_id to jump to a later stage of it"
        )
    elif target is None:
        yield FieldError(where, f"no journey '{step.journey_id}' in this workspace")
    else:
        yield from _jump_target(path, step.journey_id, step.stage, target, for_publish)
        yield from _jump_cycle(path, step.journey_id, catalog)


def _jump_target(
    path: str, journey_id: str, stage: str, target: JourneyRef, for_publish: bool
) -> Iterator[FieldError]:
    if stage not in target.stage_names:
        yield FieldError(
            f"{path}.stage",
            f"journey '{journey_id}' has no stage named '{stage}' "
            f"(its stages: {', '.join(target.stage_names) or 'none'})",
        )
    if for_publish and target.status != "live":
        yield FieldError(
            f"{path}.journey_id",
            f"journey '{journey_id}' is {target.status}: a jump can only lead to a live journey",
        )


def _jump_cycle(path: str, journey_id: str, catalog: Catalog) -> Iterator[FieldError]:
    cycle = _cycle_through(journey_id, catalog)
    if cycle is not None:
        yield FieldError(
            f"{path}.journey_id",
            "jumps may not form a cycle between journeys: "
            + " -> ".join(["this journey", *cycle, "this journey"]),
        )


def _cycle_through(start: str, catalog: Catalog) -> list[str] | None:
    """The journeys from ``start`` back to the validated journey via jumps, if any lead back."""
    home = catalog.journey_id
    if home is None:
        return None  # a journey not yet stored cannot be the target of any jump
    came_from: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        ref = catalog.journeys.get(node)
        for target in sorted(ref.jump_targets) if ref is not None else ():
            if target == home:
                return _route(came_from, node)
            if target not in came_from:
                came_from[target] = node
                queue.append(target)
    return None


def _route(came_from: Mapping[str, str | None], last: str) -> list[str]:
    route = [last]
    while (previous := came_from[route[-1]]) is not None:
        route.append(previous)
    return route[::-1]
