"""What a ``migrate`` publish would do to the profiles inside a journey, without doing it.

The same rule as :func:`services.runtime.engine.engine.migrate` decides, on copies of the
states: a profile moves when its stage (by name) exists in the new version and its step, if
it waits at one, is in that same stage there; otherwise it stays on its version and the
plan says why. Nothing is written."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.runtime.engine import engine
from services.runtime.engine.compiled import CompiledJourney
from services.runtime.engine.engine import LiveJourney
from services.runtime.engine.state import JourneyState


@dataclass
class Position:
    version: int
    stage: str
    step: str | None
    move: int = 0
    stay: int = 0
    reason: str = ""


def _reason(state: JourneyState, live: LiveJourney, target: CompiledJourney) -> str:
    m = state.membership
    assert m is not None
    source = live.versions.get(m.version)
    if source is None:
        return f"version {m.version} is no longer loaded by the runtime"
    stage = source.stages[m.stage].name
    index = target.stage_index(stage)
    if index is None:
        return f"stage '{stage}' is not in the new version"
    return f"step '{m.step_id}' is not in stage '{stage}' of the new version"


def plan(
    states: Iterable[JourneyState], live: LiveJourney | None, target: CompiledJourney
) -> dict[str, Any]:
    """Counts per (version, stage, step) of the profiles inside: how many would move."""
    positions: dict[tuple[int, str, str | None], Position] = {}
    for state in states:
        m = state.membership
        if m is None or live is None:
            continue
        source = live.versions.get(m.version)
        stage = source.stages[m.stage].name if source is not None else f"#{m.stage}"
        key = (m.version, stage, m.step_id)
        position = positions.setdefault(key, Position(m.version, stage, m.step_id))
        if source is not None and engine.migrate(state.copy(), source, target):
            position.move += 1
        else:
            position.stay += 1
            position.reason = _reason(state, live, target)
    rows = sorted(positions.values(), key=lambda p: (p.version, p.stage, p.step or ""))
    moved = sum(p.move for p in rows)
    stayed = sum(p.stay for p in rows)
    return {
        "active": moved + stayed,
        "would_move": moved,
        "would_stay": stayed,
        "steps": [_row(p) for p in rows],
    }


def _row(p: Position) -> dict[str, Any]:
    return {
        "version": p.version, "stage": p.stage, "step": p.step,
        "move": p.move, "stay": p.stay, "reason": p.reason or None,
    }  # fmt: skip
