"""Per-journey analytics from the exact counters and the current memberships."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.runtime.engine.compiled import CompiledJourney
from services.runtime.processor import Processor
from services.runtime.repository import RuntimeRepository
from shared.journey import iter_steps

OUTCOMES = ("goal", "exited", "stale", "jumped", "stopped")


async def journey_analytics(
    session: AsyncSession,
    processor: Processor,
    workspace_id: str,
    journey_id: str,
    version: int | None,
    deliveries: dict[str, int] | None = None,
) -> dict[str, Any]:
    repo = RuntimeRepository(session)
    counters = await repo.counters(workspace_id, journey_id, version)
    rows = await repo.active_counts(workspace_id, journey_id, version)
    active = {(stage, step): n for stage, step, n in rows}
    compiled = await _compiled(processor, workspace_id, journey_id, version)
    entered = counters.get("entered", 0)
    reached = counters.get("left:goal", 0)
    target = compiled.body.goal.target_percent if compiled and compiled.body.goal else None
    percent = round(100 * reached / entered, 2) if entered else 0.0
    requested = counters.get("activations:requested", 0)
    return {
        "entered": entered,
        "active": sum(active.values()),
        "goal": {
            "reached": reached,
            "percent": percent,
            "target_percent": target,
            "target_met": None if target is None else percent >= target,
        },
        "exits": {o: counters.get(f"left:{o}", 0) for o in OUTCOMES},
        "stages": _stages(compiled, counters, active) if compiled else [],
        "steps": _steps(counters, active),
        "activations": _activations(requested, deliveries or {}),
    }


def _steps(
    counters: dict[str, int], active: dict[tuple[str | None, str | None], int]
) -> dict[str, dict[str, int]]:
    """Per-step counts by step id, from the counters alone: unlike ``stages`` they need no
    loaded version, so a stopped journey still shows its last counts."""
    out: dict[str, dict[str, int]] = {}
    for key, came in counters.items():
        kind, _, rest = key.partition(":")
        step_id, _, what = rest.rpartition(":")
        if kind != "step" or what != "entered" or not step_id:
            continue
        here = sum(n for (_s, st), n in active.items() if st == step_id)
        out[step_id] = {"entered": came, "active": here, "completed": max(0, came - here)}
    return out


def _activations(requested: int, deliveries: dict[str, int]) -> dict[str, int]:
    """Final statuses come from the activator; what it has not settled yet is pending."""
    settled = {k: int(deliveries.get(k, 0)) for k in ("sent", "skipped", "failed")}
    return {"requested": requested, **settled, "pending": max(0, requested - sum(settled.values()))}


async def _compiled(
    processor: Processor, workspace_id: str, journey_id: str, version: int | None
) -> CompiledJourney | None:
    live = processor.catalogs.for_workspace(workspace_id).journeys.get(journey_id)
    if live is None:
        return None
    return live.versions.get(version or live.live_version)


def _stages(
    compiled: CompiledJourney,
    counters: dict[str, int],
    active: dict[tuple[str | None, str | None], int],
) -> list[dict[str, Any]]:
    out = []
    for index, stage in enumerate(compiled.body.stages):
        steps = []
        for _path, step in iter_steps(stage, index):
            here = sum(n for (s, st), n in active.items() if s == stage.name and st == step.id)
            came = counters.get(f"step:{step.id}:entered", 0)
            steps.append({"id": step.id, "type": step.type, "entered": came, "active": here,
                          "completed": max(0, came - here)})  # fmt: skip
        out.append({
            "name": stage.name,
            "entered": counters.get(f"stage:{stage.name}:entered", 0),
            "active": sum(n for (s, _st), n in active.items() if s == stage.name),
            "steps": steps,
        })  # fmt: skip
    return out
