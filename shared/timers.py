"""The timer contract between the runtime and the scheduler, on stream ``TIMERS``.

- ``timers.schedule.<workspace>``, ``Nats-Msg-Id: schedule:<timer_id>``: :class:`TimerSchedule`
- ``timers.cancel.<workspace>``, ``Nats-Msg-Id: cancel:<timer_id>``: :class:`TimerCancel`
- ``timers.fired.<workspace>``, ``Nats-Msg-Id: fired:<timer_id>``: :class:`TimerFired`, for
  the runtime's kinds
- ``timers.release.<workspace>``, ``Nats-Msg-Id: release:<timer_id>``: :class:`TimerFired`,
  for the activator's kind (``quiet_hours``), so the runtime's consumer of
  ``timers.fired.>`` never sees them

Timer ids are unique for the life of a timer, so each message id names one command; the
stream's duplicate window drops a repeat of any of them. Times are RFC 3339 with an offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_serializer

SCHEDULE = "schedule"
CANCEL = "cancel"
FIRED = "fired"
RELEASE = "release"

SCHEDULE_SUBJECTS = "timers.schedule.>"
CANCEL_SUBJECTS = "timers.cancel.>"
FIRED_SUBJECTS = "timers.fired.>"
RELEASE_SUBJECTS = "timers.release.>"

# A workspace id is one subject token: no dots, wildcards or whitespace.
SubjectToken = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^.*>\s]+$")]
Ident = Annotated[str, Field(min_length=1, max_length=500)]


def _not_a_number(value: Any) -> Any:
    if isinstance(value, int | float):
        raise ValueError("a time is an RFC 3339 string with an offset, not a number")
    return value


# RFC 3339 with an offset (or an aware datetime in Python); naive times are refused.
Instant = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]


class TimerKind(StrEnum):
    WAIT = "wait"
    BRANCH = "branch_timeout"
    STALE = "stale"
    JOURNEY = "journey_max"
    SCHEDULE_END = "schedule_end"  # a journey's schedule closes: everyone inside leaves
    QUIET_HOURS = "quiet_hours"  # the activator's: a message held by quiet hours may go


# Kinds announced on ``timers.release`` (for the activator), not ``timers.fired``.
RELEASED_KINDS = frozenset({TimerKind.QUIET_HOURS})


SCHEDULE_END_PROFILE = "*"  # a journey-wide timer concerns no one profile


def schedule_subject(workspace_id: str) -> str:
    return f"timers.{SCHEDULE}.{workspace_id}"


def cancel_subject(workspace_id: str) -> str:
    return f"timers.{CANCEL}.{workspace_id}"


def fired_subject(workspace_id: str) -> str:
    return f"timers.{FIRED}.{workspace_id}"


def release_subject(workspace_id: str) -> str:
    return f"timers.{RELEASE}.{workspace_id}"


def schedule_msg_id(timer_id: str) -> str:
    return f"{SCHEDULE}:{timer_id}"


def cancel_msg_id(timer_id: str) -> str:
    return f"{CANCEL}:{timer_id}"


def fired_msg_id(timer_id: str) -> str:
    return f"{FIRED}:{timer_id}"


def release_msg_id(timer_id: str) -> str:
    return f"{RELEASE}:{timer_id}"


def subject_workspace(subject: str) -> str | None:
    """The workspace a ``timers.<verb>.<workspace>`` subject is addressed to."""
    parts = subject.split(".")
    return parts[2] if len(parts) == 3 and parts[0] == "timers" else None


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    timer_id: Ident
    workspace_id: SubjectToken

    def json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class TimerSchedule(_Message):
    """Arm a timer; a second schedule of the same id changes nothing."""

    profile_id: Ident
    journey_id: Ident
    kind: TimerKind
    due_at: Instant
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_serializer("due_at")
    def _due_at(self, value: datetime) -> str:
        return _rfc3339(value)

    @property
    def subject(self) -> str:
        return schedule_subject(self.workspace_id)

    @property
    def msg_id(self) -> str:
        return schedule_msg_id(self.timer_id)


class TimerCancel(_Message):
    """Disarm a timer; it wins even when it arrives before the schedule it cancels."""

    @property
    def subject(self) -> str:
        return cancel_subject(self.workspace_id)

    @property
    def msg_id(self) -> str:
        return cancel_msg_id(self.timer_id)


class TimerFired(_Message):
    """A timer fell due; ``fired_at`` is the product clock's time when it was released.
    The activator's kinds go out on ``timers.release``, the others on ``timers.fired``."""

    profile_id: Ident
    journey_id: Ident
    kind: TimerKind
    due_at: Instant
    fired_at: Instant
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_serializer("due_at", "fired_at")
    def _times(self, value: datetime) -> str:
        return _rfc3339(value)

    @property
    def subject(self) -> str:
        if self.kind in RELEASED_KINDS:
            return release_subject(self.workspace_id)
        return fired_subject(self.workspace_id)

    @property
    def msg_id(self) -> str:
        if self.kind in RELEASED_KINDS:
            return release_msg_id(self.timer_id)
        return fired_msg_id(self.timer_id)
