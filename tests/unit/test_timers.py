"""The timer contract: message models, subjects and message ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from shared.timers import (
    CANCEL_SUBJECTS,
    FIRED_SUBJECTS,
    RELEASE_SUBJECTS,
    SCHEDULE_SUBJECTS,
    TimerCancel,
    TimerFired,
    TimerKind,
    TimerSchedule,
    subject_workspace,
)

TIMER_ID = "prof-1/journey-1/1/wait/step-3"


def schedule_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "timer_id": TIMER_ID,
        "workspace_id": "ws1",
        "profile_id": "prof-1",
        "journey_id": "journey-1",
        "kind": "wait",
        "due_at": "2026-11-24T10:00:00+01:00",
        "payload": {"step_id": "step-3"},
    }
    return {**body, **overrides}


def test_schedule_parses_the_contract_and_keeps_the_instant() -> None:
    command = TimerSchedule.model_validate(schedule_body())
    assert command.kind is TimerKind.WAIT
    assert command.due_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert command.payload == {"step_id": "step-3"}


def test_schedule_payload_is_optional() -> None:
    body = schedule_body()
    del body["payload"]
    assert TimerSchedule.model_validate(body).payload == {}


@pytest.mark.parametrize(
    "due_at", ["2026-11-24T10:00:00", "2026-11-24", "tomorrow", "", None, 1_700_000_000]
)
def test_schedule_needs_a_due_time_with_an_offset(due_at: object) -> None:
    with pytest.raises(ValidationError, match="due_at"):
        TimerSchedule.model_validate(schedule_body(due_at=due_at))


@pytest.mark.parametrize(
    ("field", "value"),
    [("kind", "snooze"), ("workspace_id", "a.b"), ("workspace_id", "a*"), ("workspace_id", ""),
     ("timer_id", ""), ("profile_id", None), ("payload", [1, 2])],
)  # fmt: skip
def test_schedule_rejects_bad_fields(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        TimerSchedule.model_validate(schedule_body(**{field: value}))


def test_every_kind_the_engine_and_the_activator_use_is_accepted() -> None:
    kinds = {"wait", "branch_timeout", "stale", "journey_max", "schedule_end", "quiet_hours"}
    assert {k.value for k in TimerKind} == kinds
    for kind in kinds:
        assert TimerSchedule.model_validate(schedule_body(kind=kind)).kind == kind


def test_subjects_and_message_ids() -> None:
    schedule = TimerSchedule.model_validate(schedule_body())
    cancel = TimerCancel(timer_id=TIMER_ID, workspace_id="ws1")
    assert (schedule.subject, schedule.msg_id) == ("timers.schedule.ws1", f"schedule:{TIMER_ID}")
    assert (cancel.subject, cancel.msg_id) == ("timers.cancel.ws1", f"cancel:{TIMER_ID}")
    fired = fired_from(schedule)
    assert (fired.subject, fired.msg_id) == ("timers.fired.ws1", f"fired:{TIMER_ID}")
    assert [SCHEDULE_SUBJECTS, CANCEL_SUBJECTS, FIRED_SUBJECTS, RELEASE_SUBJECTS] == [
        "timers.schedule.>", "timers.cancel.>", "timers.fired.>", "timers.release.>"
    ]  # fmt: skip


def test_quiet_hours_timers_are_released_apart_from_the_runtimes() -> None:
    quiet = TimerSchedule.model_validate(schedule_body(kind="quiet_hours"))
    assert (quiet.subject, quiet.msg_id) == ("timers.schedule.ws1", f"schedule:{TIMER_ID}")
    released = fired_from(quiet)
    assert (released.subject, released.msg_id) == ("timers.release.ws1", f"release:{TIMER_ID}")
    assert subject_workspace(released.subject) == "ws1"


@pytest.mark.parametrize(
    ("subject", "workspace"),
    [("timers.schedule.ws1", "ws1"), ("timers.cancel.w-2", "w-2"), ("timers.schedule", None),
     ("timers.schedule.a.b", None), ("events.ws1.0", None)],
)  # fmt: skip
def test_workspace_of_a_subject(subject: str, workspace: str | None) -> None:
    assert subject_workspace(subject) == workspace


def fired_from(schedule: TimerSchedule) -> TimerFired:
    fired_at = schedule.due_at + timedelta(milliseconds=40)
    return TimerFired(**schedule.model_dump(), fired_at=fired_at)


def test_fired_message_has_exactly_the_contract_fields_in_rfc3339() -> None:
    fired = fired_from(TimerSchedule.model_validate(schedule_body()))
    body = json.loads(fired.json_bytes())
    assert set(body) == {
        "timer_id", "workspace_id", "profile_id", "journey_id", "kind", "due_at", "fired_at",
        "payload",
    }  # fmt: skip
    assert body["due_at"] == "2026-11-24T09:00:00+00:00"
    assert body["fired_at"] == "2026-11-24T09:00:00.040000+00:00"
    assert body["kind"] == "wait"
    assert datetime.fromisoformat(body["due_at"]) == fired.due_at
    assert TimerFired.model_validate_json(fired.json_bytes()) == fired


def test_schedule_round_trips_through_json_with_an_offset() -> None:
    due = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    schedule = TimerSchedule.model_validate(schedule_body(due_at=due))
    body = json.loads(schedule.json_bytes())
    assert body["due_at"] == "2026-01-02T08:04:05+00:00"
    assert TimerSchedule.model_validate(body) == schedule


def test_cancel_carries_only_the_timer_and_workspace() -> None:
    cancel = TimerCancel(timer_id=TIMER_ID, workspace_id="ws1")
    assert json.loads(cancel.json_bytes()) == {"timer_id": TIMER_ID, "workspace_id": "ws1"}
    with pytest.raises(ValidationError):
        TimerCancel.model_validate({"timer_id": TIMER_ID})
