"""JourneyState to and from the JSON kept in ``runtime.memberships.state``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.runtime.engine.state import (
    Flow,
    History,
    JourneyState,
    Membership,
    Outcome,
    Pending,
    TimerKind,
)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _pending_out(p: Pending | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"timer_id": p.timer_id, "kind": p.kind.value, "due_at": p.due_at.isoformat(),
            "step_id": p.step_id}  # fmt: skip


def _pending_in(raw: dict[str, Any] | None) -> Pending | None:
    if raw is None:
        return None
    due = _time(raw["due_at"])
    assert due is not None
    return Pending(raw["timer_id"], TimerKind(raw["kind"]), due, raw.get("step_id"))


def dump_state(state: JourneyState) -> dict[str, Any]:
    h = state.history
    out: dict[str, Any] = {
        "history": {
            "entries": h.entries,
            "last_outcome": h.last_outcome.value if h.last_outcome else None,
            "last_left_at": h.last_left_at.isoformat() if h.last_left_at else None,
            "goal_met": h.goal_met,
        },
        "membership": None,
    }
    m = state.membership
    if m is not None:
        out["membership"] = {
            "journey_id": m.journey_id,
            "version": m.version,
            "entry": m.entry,
            "stage": m.stage,
            "step_id": m.step_id,
            "flow": m.flow.value,
            "entered_at": m.entered_at.isoformat(),
            "stage_entered_at": m.stage_entered_at.isoformat(),
            "trigger": m.trigger,
            "step_timer": _pending_out(m.step_timer),
            "stage_timer": _pending_out(m.stage_timer),
            "journey_timer": _pending_out(m.journey_timer),
            "activations": m.activations,
        }
    return out


def load_state(raw: dict[str, Any]) -> JourneyState:
    h = raw.get("history", {})
    history = History(
        entries=h.get("entries", 0),
        last_outcome=Outcome(h["last_outcome"]) if h.get("last_outcome") else None,
        last_left_at=_time(h.get("last_left_at")),
        goal_met=bool(h.get("goal_met")),
    )
    m = raw.get("membership")
    if m is None:
        return JourneyState(history, None)
    entered = datetime.fromisoformat(m["entered_at"])
    stage_entered = datetime.fromisoformat(m["stage_entered_at"])
    membership = Membership(
        journey_id=m["journey_id"],
        version=m["version"],
        entry=m["entry"],
        stage=m["stage"],
        step_id=m["step_id"],
        flow=Flow(m["flow"]),
        entered_at=entered,
        stage_entered_at=stage_entered,
        trigger=m.get("trigger", {}),
        step_timer=_pending_in(m.get("step_timer")),
        stage_timer=_pending_in(m.get("stage_timer")),
        journey_timer=_pending_in(m.get("journey_timer")),
        activations=m.get("activations", {}),
    )
    return JourneyState(history, membership)
