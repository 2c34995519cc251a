"""What the engine reads and returns: a profile's place in each journey, inputs, effects."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal


class Outcome(StrEnum):
    GOAL = "goal"
    EXITED = "exited"
    STALE = "stale"
    JUMPED = "jumped"
    STOPPED = "stopped"


class Flow(StrEnum):
    """Where a profile is in its stage's steps."""

    WAITING = "waiting"  # on a wait step, a timer will move it on
    BRANCHING = "branching"  # on a branch step, an event or its timeout moves it on
    HELD = "held"  # a timer fell due while the journey was paused
    ENDED = "ended"  # no further action in this flow; still in the stage


class TimerKind(StrEnum):
    WAIT = "wait"
    BRANCH = "branch_timeout"
    STALE = "stale"
    JOURNEY = "journey_max"


@dataclass
class Pending:
    timer_id: str
    kind: TimerKind
    due_at: datetime
    step_id: str | None = None


@dataclass
class Membership:
    """One entry of a profile into a journey, while it is inside."""

    journey_id: str
    version: int
    entry: int  # 1 for the first entry into this journey, 2 for the second, ...
    stage: int
    step_id: str | None
    flow: Flow
    entered_at: datetime
    stage_entered_at: datetime
    trigger: dict[str, Any] = field(default_factory=dict)  # event that started the stage
    step_timer: Pending | None = None
    stage_timer: Pending | None = None
    journey_timer: Pending | None = None
    activations: dict[str, str] = field(default_factory=dict)  # step id -> activation id

    def timers(self) -> list[Pending]:
        return [t for t in (self.step_timer, self.stage_timer, self.journey_timer) if t]

    def copy(self) -> Membership:
        """A copy the engine may change: pending timers and the trigger are only ever
        replaced, never changed in place, so they are shared."""
        return replace(self, activations=dict(self.activations))


@dataclass
class History:
    """What re-entry needs to know of a profile's past in a journey."""

    entries: int = 0
    last_outcome: Outcome | None = None
    last_left_at: datetime | None = None
    goal_met: bool = False


@dataclass
class JourneyState:
    history: History = field(default_factory=History)
    membership: Membership | None = None

    def copy(self) -> JourneyState:
        return JourneyState(replace(self.history), self.membership and self.membership.copy())


@dataclass(frozen=True)
class Profile:
    profile_id: str
    attributes: dict[str, Any]
    default_timezone: str = "UTC"


@dataclass(frozen=True)
class Event:
    event_id: str
    name: str
    at: datetime
    properties: dict[str, Any]


@dataclass(frozen=True)
class Timer:
    timer_id: str
    journey_id: str
    due_at: datetime


# Effects ----------------------------------------------------------------------------------

TimelineKind = Literal[
    "entered",
    "stage_changed",
    "step_started",
    "waiting",
    "branch_taken",
    "activation",
    "left",
    "migrated",
]


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    journey_id: str
    version: int
    kind: TimelineKind
    stage: str | None
    step_id: str | None
    detail: dict[str, Any]
    cause: dict[str, str]


@dataclass(frozen=True)
class SetTimer:
    timer_id: str
    journey_id: str
    due_at: datetime
    kind: TimerKind


@dataclass(frozen=True)
class CancelTimer:
    timer_id: str


@dataclass(frozen=True)
class RequestActivation:
    activation_id: str
    journey_id: str
    version: int
    step_id: str
    channel: str
    connector_id: str
    template_id: str
    to: Any
    context: dict[str, Any]


@dataclass(frozen=True)
class Explanation:
    """Why an input did or did not enter or move the profile in one journey."""

    journey_id: str
    outcome: str  # entered|moved|goal|exited|branch|no_match|reentry_refused|paused|...
    reasons: list[str]


@dataclass
class Result:
    states: dict[str, JourneyState]
    timeline: list[TimelineEntry] = field(default_factory=list)
    timers: list[SetTimer | CancelTimer] = field(default_factory=list)
    activations: list[RequestActivation] = field(default_factory=list)
    explanations: list[Explanation] = field(default_factory=list)
