"""The journey body (docs/journeys.md) as pydantic models, shared by the designer and the runtime.

The designer validates bodies with these models (then with ``shared.journey_validation``
for limits and references); the runtime compiles and simulates the parsed models. The models
hold only checks that need no counting and no outside knowledge (types, required fields,
exactly one kind of wait), so that everything else is reported together with them.

Steps are a union tagged by ``type`` (and splits by ``mode``); the tags in validation
locations are class names, registered in ``UNION_TAGS`` so error paths leave them out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.criteria import Criteria
from shared.durations import Duration
from shared.problems import UNION_TAGS

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _no_control_chars(value: str) -> str:
    if _CONTROL_CHARS.search(value):
        raise PydanticCustomError("control_chars", "must not contain control characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be blank")
    return value


def _whole_as_int(value: float) -> int | float:
    # Percentages are floats so 33.3 works; 90 reads back as 90, not 90.0.
    return int(value) if value.is_integer() else value


StepId = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_no_control_chars)]
Name = Annotated[
    str,
    Field(min_length=1, max_length=200),
    AfterValidator(_not_blank),
    AfterValidator(_no_control_chars),
]
ResourceId = Annotated[str, Field(min_length=1, max_length=100)]
# A dotted path into the profile's attributes, as in criteria.
AttributePath = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[^.\s]+(\.[^.\s]+)*$")
]
_TIME_OF_DAY = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _check_time_of_day(value: str) -> str:
    if not re.fullmatch(_TIME_OF_DAY, value):
        raise PydanticCustomError("time_of_day", "must be a time of day HH:MM, 00:00 to 23:59")
    return value


TimeOfDay = Annotated[
    str,
    Field(json_schema_extra={"pattern": _TIME_OF_DAY}, examples=["09:00"]),
    AfterValidator(_check_time_of_day),
]
SplitPercent = Annotated[float, Field(gt=0, le=100), PlainSerializer(_whole_as_int)]
TargetPercent = Annotated[float, Field(ge=0, le=100), PlainSerializer(_whole_as_int)]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Channel = Literal["email", "sms", "push", "webhook"]
Purpose = Literal["welcome", "purchase", "anniversary", "win-back", "custom"]
ReentryMode = Literal["never", "unless_goal_met", "always"]

STEP_TYPES = ("wait", "activation", "branch", "split", "jump", "end")
SPLIT_MODES = ("attribute", "random", "experiment")
DEFAULT_TIMEZONE_ATTRIBUTE = "timezone"
# Channels whose recipient is a profile attribute; a webhook may go without one.
ADDRESSED_CHANNELS = frozenset({"email", "sms", "push"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Step(_Model):
    id: StepId


class WaitStep(_Step):
    """Wait a fixed ``duration``, ``until`` a moment, or until the next local ``time_of_day``."""

    type: Literal["wait"]
    duration: Duration | None = None
    until: AwareDatetime | None = None
    time_of_day: TimeOfDay | None = None
    days: Annotated[list[Weekday], Field(min_length=1, max_length=7)] | None = None
    # Left out of dumps when it is the default, which is what almost every wait has.
    timezone_attribute: AttributePath = Field(
        DEFAULT_TIMEZONE_ATTRIBUTE, exclude_if=lambda v: v == DEFAULT_TIMEZONE_ATTRIBUTE
    )

    @field_validator("days")
    @classmethod
    def _days_need_time_of_day(
        cls, days: list[Weekday] | None, info: ValidationInfo
    ) -> list[Weekday] | None:
        # A time_of_day that failed is absent from data (and reported): "" skips this check.
        if days is not None and info.data.get("time_of_day", "") is None:
            raise PydanticCustomError("wait_days", "'days' applies to a 'time_of_day' wait only")
        if days is not None and len(set(days)) != len(days):
            raise PydanticCustomError("wait_days", "each day may appear once")
        return days

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> WaitStep:
        kinds = [k for k in ("duration", "until", "time_of_day") if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = f"found {len(kinds)}: {', '.join(kinds)}" if kinds else "found none"
            raise PydanticCustomError(
                "wait_kind",
                "a wait needs exactly one of 'duration', 'until' or 'time_of_day' ({found})",
                {"found": found},
            )
        return self


class ActivationStep(_Step):
    """Deliver one message through a connector with a template to a profile attribute."""

    type: Literal["activation"]
    channel: Channel
    connector_id: ResourceId
    template_id: ResourceId
    to_attribute: Annotated[AttributePath | None, Field(validate_default=True)] = None

    @field_validator("to_attribute")
    @classmethod
    def _recipient_for_addressed_channels(
        cls, attribute: str | None, info: ValidationInfo
    ) -> str | None:
        channel = info.data.get("channel")
        if attribute is None and channel in ADDRESSED_CHANNELS:
            raise PydanticCustomError(
                "recipient_missing",
                "required for {channel}: the profile attribute that holds the recipient",
                {"channel": channel},
            )
        return attribute


class BranchStep(_Step):
    """Wait up to ``timeout`` for an event matching ``criteria``: then ``yes``, else ``no``."""

    type: Literal["branch"]
    criteria: Criteria
    timeout: Duration
    yes: list[Step] = []
    no: list[Step] = []


class SplitCase(_Model):
    criteria: Criteria
    steps: list[Step] = []


class AttributeSplitStep(_Step):
    """Take the steps of the first case whose criteria match the profile, else ``default``."""

    type: Literal["split"]
    mode: Literal["attribute"]
    cases: list[SplitCase]
    default: list[Step] = []


class RandomPath(_Model):
    percent: SplitPercent
    steps: list[Step] = []


class RandomSplitStep(_Step):
    """Take one path at random, weighted by ``percent`` (a path without steps is a holdout)."""

    type: Literal["split"]
    mode: Literal["random"]
    paths: list[RandomPath]


class ExperimentPath(_Model):
    """One arm of an experiment; ``control`` marks the baseline the others are measured by."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    percent: SplitPercent
    steps: list[Step] = []
    control: bool = False


def _metric_tag(raw: Any) -> str:
    return "GoalMetric" if isinstance(raw, str) else "CriteriaMetric"


# What converts a profile: an event matching criteria, or the journey's goal ("goal").
Metric = Annotated[
    Annotated[Literal["goal"], Tag("GoalMetric")] | Annotated[Criteria, Tag("CriteriaMetric")],
    Discriminator(_metric_tag),
]


class Experiment(_Model):
    """How an experiment split measures its paths and what it does with a winner."""

    metric: Metric
    window: Duration
    min_per_path: Annotated[int, Field(ge=1, le=10_000_000)]
    confidence: Annotated[float, Field(ge=0.8, le=0.999)]
    on_winner: Literal["send_all", "report"]
    max_duration: Duration | None = None


class ExperimentSplitStep(_Step):
    """A random split that measures ``experiment.metric`` per path and may pick a winner."""

    type: Literal["split"]
    mode: Literal["experiment"]
    paths: list[ExperimentPath]
    experiment: Experiment


class JumpStep(_Step):
    """Go to a later ``stage`` of this journey, or to a stage of journey ``journey_id``."""

    type: Literal["jump"]
    journey_id: ResourceId | None = None
    stage: Name


class EndStep(_Step):
    type: Literal["end"]


SplitStep = AttributeSplitStep | RandomSplitStep | ExperimentSplitStep
AnyStep = WaitStep | ActivationStep | BranchStep | SplitStep | JumpStep | EndStep

_STEP_TAGS = {
    "wait": "WaitStep",
    "activation": "ActivationStep",
    "branch": "BranchStep",
    "split": "SplitStep",
    "jump": "JumpStep",
    "end": "EndStep",
}
_SPLIT_TAGS = {
    "attribute": "AttributeSplitStep",
    "random": "RandomSplitStep",
    "experiment": "ExperimentSplitStep",
}
_MODEL_TAGS = {
    WaitStep: "WaitStep",
    ActivationStep: "ActivationStep",
    BranchStep: "BranchStep",
    AttributeSplitStep: "SplitStep",
    RandomSplitStep: "SplitStep",
    ExperimentSplitStep: "SplitStep",
    JumpStep: "JumpStep",
    EndStep: "EndStep",
}


def _tag_of(raw: Any, key: str, tags: dict[str, str]) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return tags.get(value) if isinstance(value, str) else None


def _step_tag(raw: Any) -> str | None:
    if isinstance(raw, BaseModel):
        return _MODEL_TAGS.get(type(raw))
    return _tag_of(raw, "type", _STEP_TAGS)


def _split_tag(raw: Any) -> str | None:
    if isinstance(raw, BaseModel):
        splits = AttributeSplitStep | RandomSplitStep | ExperimentSplitStep
        return type(raw).__name__ if isinstance(raw, splits) else None
    return _tag_of(raw, "mode", _SPLIT_TAGS)


# Error types of an unknown tag: validation reports them at the tag field itself.
STEP_TYPE_ERROR = "step_type"
SPLIT_MODE_ERROR = "split_mode"

_Split = Annotated[
    Annotated[AttributeSplitStep, Tag("AttributeSplitStep")]
    | Annotated[RandomSplitStep, Tag("RandomSplitStep")]
    | Annotated[ExperimentSplitStep, Tag("ExperimentSplitStep")],
    Discriminator(
        _split_tag,
        custom_error_type=SPLIT_MODE_ERROR,
        custom_error_message="a split's 'mode' must be 'attribute', 'random' or 'experiment'",
    ),
]

Step = Annotated[
    Annotated[WaitStep, Tag("WaitStep")]
    | Annotated[ActivationStep, Tag("ActivationStep")]
    | Annotated[BranchStep, Tag("BranchStep")]
    | Annotated[_Split, Tag("SplitStep")]
    | Annotated[JumpStep, Tag("JumpStep")]
    | Annotated[EndStep, Tag("EndStep")],
    Discriminator(
        _step_tag,
        custom_error_type=STEP_TYPE_ERROR,
        custom_error_message=f"a step's 'type' must be one of: {', '.join(STEP_TYPES)}",
    ),
]

UNION_TAGS.update(_STEP_TAGS.values(), _SPLIT_TAGS.values(), ("GoalMetric", "CriteriaMetric"))


class StageExitRule(_Model):
    """Leave the journey when ``criteria`` match, or move to the later stage ``to_stage``."""

    criteria: Criteria
    to_stage: Name | None = None


class JourneyExitRule(_Model):
    """Leave the journey when ``criteria`` match (no ``to_stage``: that is for stages)."""

    criteria: Criteria


class Stage(_Model):
    name: Name
    entry: Criteria | None = None
    milestone: Criteria | None = None
    exit_criteria: list[StageExitRule] = []
    max_time_in_stage: Duration | None = None
    steps: list[Step] = []


class Reentry(_Model):
    mode: ReentryMode = "never"
    cooldown: Duration = "PT0S"


class Schedule(_Model):
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None

    @field_validator("end_at")
    @classmethod
    def _ends_after_start(cls, end_at: Any, info: ValidationInfo) -> Any:
        start_at = info.data.get("start_at")
        if end_at is not None and start_at is not None and end_at <= start_at:
            raise PydanticCustomError("schedule_order", "must be after 'start_at'")
        return end_at


class Goal(_Model):
    criteria: Criteria
    target_percent: TargetPercent | None = None


class JourneyBody(_Model):
    name: Name
    description: Annotated[str, Field(max_length=2000)] = ""
    purpose: Purpose | None = None
    folder_id: ResourceId | None = None
    reentry: Reentry = Reentry()
    schedule: Schedule = Schedule()
    goal: Goal | None = None
    exit_criteria: list[JourneyExitRule] = []
    max_time_in_journey: Duration | None = None
    stages: list[Stage]

    @field_validator("reentry", "schedule", mode="before")
    @classmethod
    def _null_means_default(cls, value: Any) -> Any:
        # Clients send "schedule": null for "no schedule"; the defaults say exactly that.
        return {} if value is None else value


for _model in (
    BranchStep, SplitCase, AttributeSplitStep, RandomPath, RandomSplitStep, ExperimentPath,
    ExperimentSplitStep, Stage,
):  # fmt: skip
    _model.model_rebuild()
JourneyBody.model_rebuild()


def dump_journey(body: JourneyBody) -> dict[str, Any]:
    """The JSON form of a journey, as stored and answered."""
    return body.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class StepList:
    """One ordered list of steps: a stage's own, or a path inside a branch or split."""

    path: str  # JSON path of the list itself, e.g. ``stages[0].steps[1].no``
    steps: Sequence[AnyStep]
    depth: int  # 0 for a stage's own steps, +1 inside each branch or split


def child_lists(step: AnyStep, at: str) -> Iterator[tuple[str, Sequence[AnyStep]]]:
    """The paths a branch or split leads to, each with its JSON path; none for other steps."""
    if isinstance(step, BranchStep):
        yield f"{at}.yes", step.yes
        yield f"{at}.no", step.no
    elif isinstance(step, AttributeSplitStep):
        for i, case in enumerate(step.cases):
            yield f"{at}.cases[{i}].steps", case.steps
        yield f"{at}.default", step.default
    elif isinstance(step, RandomSplitStep):
        for i, path in enumerate(step.paths):
            yield f"{at}.paths[{i}].steps", path.steps
    elif isinstance(step, ExperimentSplitStep):
        for i, arm in enumerate(step.paths):
            yield f"{at}.paths[{i}].steps", arm.steps


def iter_step_lists(stage: Stage, stage_index: int = 0) -> Iterator[StepList]:
    """Every list of steps of a stage, depth-first, starting with the stage's own."""
    return _lists(f"stages[{stage_index}].steps", stage.steps, 0)


def _lists(path: str, steps: Sequence[AnyStep], depth: int) -> Iterator[StepList]:
    yield StepList(path, steps, depth)
    for k, step in enumerate(steps):
        for child_path, child in child_lists(step, f"{path}[{k}]"):
            yield from _lists(child_path, child, depth + 1)


def iter_steps(stage: Stage, stage_index: int = 0) -> Iterator[tuple[str, AnyStep]]:
    """Every step of a stage with its JSON path, depth-first: a step, then its paths' steps.

    ``stage_index`` is the stage's position in the journey (paths read ``stages[i]...``).
    """
    return _steps(f"stages[{stage_index}].steps", stage.steps)


def _steps(path: str, steps: Sequence[AnyStep]) -> Iterator[tuple[str, AnyStep]]:
    for k, step in enumerate(steps):
        at = f"{path}[{k}]"
        yield at, step
        for child_path, child in child_lists(step, at):
            yield from _steps(child_path, child)


def iter_journey_steps(body: JourneyBody) -> Iterator[tuple[str, AnyStep]]:
    """Every step of every stage with its JSON path, in stage order."""
    for i, stage in enumerate(body.stages):
        yield from iter_steps(stage, i)


@dataclass(frozen=True)
class JourneyLimits:
    """The journey limits of docs/journeys.md (defaults), configurable per deployment."""

    max_stages: int = 8
    max_steps_per_stage: int = 40
    max_steps_per_journey: int = 120
    max_activations: int = 50
    max_exit_rules: int = 20
    max_jumps: int = 20
    min_split_paths: int = 2
    max_split_paths: int = 6
    # Bounds of max_time_in_stage (the stale timeout) and of max_time_in_journey.
    min_stale_timeout: timedelta = timedelta(minutes=1)
    max_stale_timeout: timedelta = timedelta(days=24)
    # How deep branches and splits may nest inside each other.
    max_depth: int = 10
    # Longest wait, branch timeout or re-entry cooldown.
    max_duration: timedelta = timedelta(days=365)
