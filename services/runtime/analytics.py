"""Per-journey analytics from the exact counters and the current memberships.

Where profiles are now and where they ended are kept apart: a profile whose steps ran out
(``flow = ended``: past an end step, or a branch or split whose path had no more steps)
is still inside its stage, but it is no longer *on* its last step, so it counts as
``finished`` there rather than ``active``. Each branch and split counts the profiles that
took each of its paths (``paths``), and the journey's totals add up across versions, with a
breakdown per version (``versions``) that also counts profiles a migrate publish moved.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.runtime.counter_keys import (
    ENGAGEMENT_VERSION,
    MIGRATED_IN,
    MIGRATED_OUT,
    parse_engage_key,
    parse_path_key,
    stage_left_key,
)
from services.runtime.engine.compiled import CompiledJourney
from services.runtime.processor import Processor
from services.runtime.repository import RuntimeRepository
from shared.journey import iter_steps

OUTCOMES = ("goal", "exited", "stale", "jumped", "stopped")
ENDED = "ended"

Where = tuple[str | None, str | None]  # (stage, step_id)


async def journey_analytics(
    session: AsyncSession,
    processor: Processor,
    workspace_id: str,
    journey_id: str,
    version: int | None,
    deliveries: dict[str, int] | None = None,
) -> dict[str, Any]:
    repo = RuntimeRepository(session)
    by_version = await repo.counters_by_version(workspace_id, journey_id)
    counters = _sum(by_version, version)
    rows = await repo.member_counts(workspace_id, journey_id)
    here, finished = _positions(rows, version)
    compiled = await _compiled(processor, workspace_id, journey_id, version)
    entered = counters.get("entered", 0)
    reached = counters.get("left:goal", 0)
    target = compiled.body.goal.target_percent if compiled and compiled.body.goal else None
    percent = round(100 * reached / entered, 2) if entered else 0.0
    requested = counters.get("activations:requested", 0)
    waiting, done = sum(here.values()), sum(finished.values())
    return {
        "entered": entered,
        "active": waiting + done,
        "waiting": waiting,
        "finished": done,
        "goal": {
            "reached": reached,
            "percent": percent,
            "target_percent": target,
            "target_met": None if target is None else percent >= target,
        },
        "exits": {o: counters.get(f"left:{o}", 0) for o in OUTCOMES},
        "ends": {**{o: counters.get(f"left:{o}", 0) for o in OUTCOMES}, "finished": done},
        "stages": _stages(compiled, counters, here, finished) if compiled else [],
        "steps": _steps(counters, here, finished),
        "paths": _paths(counters),
        "versions": _versions(by_version, rows),
        "engagement": engagement(by_version.get(ENGAGEMENT_VERSION, {})),
        "activations": _activations(requested, deliveries or {}),
    }


def _sum(by_version: dict[int, dict[str, int]], version: int | None) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v, counters in by_version.items():
        if version is None or v == version:
            for key, n in counters.items():
                out[key] += n
    return dict(out)


def _positions(
    rows: list[tuple[int | None, str | None, str | None, str | None, int]], version: int | None
) -> tuple[dict[Where, int], dict[Where, int]]:
    """(stage, step) -> profiles on the step now, and -> profiles whose steps ended there."""
    here: dict[Where, int] = defaultdict(int)
    finished: dict[Where, int] = defaultdict(int)
    for v, stage, step, flow, n in rows:
        if version is None or v == version:
            (finished if flow == ENDED else here)[(stage, step)] += n
    return dict(here), dict(finished)


def _versions(
    by_version: dict[int, dict[str, int]],
    rows: list[tuple[int | None, str | None, str | None, str | None, int]],
) -> list[dict[str, Any]]:
    """Each version's share of the totals: who entered it, who is in it now (moved in by a
    migrate or not), who left it and how, and who a migrate moved in or out."""
    inside: dict[int, int] = defaultdict(int)
    for v, _stage, _step, _flow, n in rows:
        if v is not None:
            inside[v] += n
    out = []
    for v in sorted((set(by_version) | set(inside)) - {ENGAGEMENT_VERSION}):
        c = by_version.get(v, {})
        out.append({
            "version": v,
            "entered": c.get("entered", 0),
            "active": inside.get(v, 0),
            "exits": {o: c.get(f"left:{o}", 0) for o in OUTCOMES},
            "migrated_in": c.get(MIGRATED_IN, 0),
            "migrated_out": c.get(MIGRATED_OUT, 0),
        })  # fmt: skip
    return out


def _steps(
    counters: dict[str, int], here: dict[Where, int], finished: dict[Where, int]
) -> dict[str, dict[str, int]]:
    """Per-step counts by step id, from the counters alone: unlike ``stages`` they need no
    loaded version, so a stopped journey still shows its last counts."""
    out: dict[str, dict[str, int]] = {}
    for key, came in counters.items():
        kind, _, rest = key.partition(":")
        step_id, _, what = rest.rpartition(":")
        if kind != "step" or what != "entered" or not step_id:
            continue
        out[step_id] = _step_counts(came, _at(here, step_id), _at(finished, step_id))
    return out


def _at(counts: dict[Where, int], step_id: str, stage: str | None = None) -> int:
    return sum(n for (s, st), n in counts.items() if st == step_id and stage in (None, s))


def _step_counts(came: int, here: int, ended: int) -> dict[str, int]:
    """``active``: on the step now (waiting on it); ``finished``: their steps ended here and
    they are still in the stage; ``completed``: went past the step (or ended on it)."""
    return {"entered": came, "active": here, "finished": ended, "completed": max(0, came - here)}


def _paths(counters: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Branch and split step id -> each path taken, how many took it and their share."""
    taken: dict[str, dict[str, int]] = defaultdict(dict)
    for key, n in counters.items():
        parsed = parse_path_key(key)
        if parsed is not None:
            taken[parsed[0]][parsed[1]] = n
    out: dict[str, list[dict[str, Any]]] = {}
    for step_id, by_path in sorted(taken.items()):
        total = sum(by_path.values())
        out[step_id] = [
            {"path": p, "count": n, "percent": round(100 * n / total, 2) if total else 0.0}
            for p, n in sorted(by_path.items())
        ]
    return out


FUNNEL = ("sent", "opened", "clicked", "goal")


def engagement(counters: dict[str, int]) -> dict[str, Any]:
    """sent -> opened -> clicked -> goal for each message step and each channel, with
    each rate a share of the messages sent (clicks count one per link, so their rate may
    pass the opens'). Feedback names no version: these are the journey's, across versions."""
    steps: dict[str, dict[str, Any]] = {}
    for key, n in counters.items():
        parsed = parse_engage_key(key)
        if parsed is None:
            continue
        step_id, what, channel = parsed
        step = steps.setdefault(
            step_id, {"step_id": step_id, "channel": None} | dict.fromkeys(FUNNEL, 0)
        )
        step[what] = step.get(what, 0) + n
        if channel and (what == "sent" or step["channel"] is None):
            step["channel"] = channel  # the channel it was sent on; opens and clicks: email
    channels: dict[str, dict[str, Any]] = {}
    for step in steps.values():
        total = channels.setdefault(step["channel"] or "unknown", dict.fromkeys(FUNNEL, 0))
        for what in FUNNEL:
            total[what] += step[what]
    return {
        "steps": [_rates(steps[k]) for k in sorted(steps)],
        "channels": {k: _rates(v) for k, v in sorted(channels.items())},
    }


def _rates(counts: dict[str, Any]) -> dict[str, Any]:
    sent = counts["sent"]

    def rate(n: int) -> float | None:
        return round(100 * n / sent, 2) if sent else None

    return {**counts, "open_rate": rate(counts["opened"]), "click_rate": rate(counts["clicked"]),
            "goal_rate": rate(counts["goal"])}  # fmt: skip


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
    here: dict[Where, int],
    finished: dict[Where, int],
) -> list[dict[str, Any]]:
    out = []
    for index, stage in enumerate(compiled.body.stages):
        steps = []
        for _path, step in iter_steps(stage, index):
            came = counters.get(f"step:{step.id}:entered", 0)
            counts = _step_counts(came, _at(here, step.id, stage.name),
                                  _at(finished, step.id, stage.name))  # fmt: skip
            steps.append({"id": step.id, "type": step.type, **counts})
        inside = {k: n for k, n in (*here.items(), *finished.items()) if k[0] == stage.name}
        out.append({
            "name": stage.name,
            "entered": counters.get(f"stage:{stage.name}:entered", 0),
            "active": sum(inside.values()),
            "finished": sum(n for (s, _st), n in finished.items() if s == stage.name),
            "ends": {o: counters.get(stage_left_key(stage.name, o), 0) for o in OUTCOMES},
            "steps": steps,
        })  # fmt: skip
    return out


# The response, as OpenAPI documents it ----------------------------------------------------

Outcomes = dict[str, int]


class GoalOut(BaseModel):
    reached: int = Field(description="Profiles that left with the goal met.")
    percent: float = Field(description="reached / entered, in percent.")
    target_percent: float | None
    target_met: bool | None


class StepOut(BaseModel):
    entered: int = Field(description="Times profiles started the step.")
    active: int = Field(description="Profiles on the step now (waiting on it).")
    finished: int = Field(
        description="Profiles whose steps ran out here (an end, or a path with no more "
        "steps): still in the stage, no longer on the step."
    )
    completed: int = Field(description="Times profiles went past the step (or ended on it).")


class StageStepOut(StepOut):
    id: str
    type: str


class StageOut(BaseModel):
    name: str
    entered: int
    active: int = Field(description="Profiles in the stage now, on a step or finished.")
    finished: int = Field(description="Profiles in the stage whose steps ran out.")
    ends: Outcomes = Field(
        description="Profiles that left the journey from this stage, by outcome."
    )
    steps: list[StageStepOut]


class PathOut(BaseModel):
    path: str = Field(
        description="yes / no (a branch; no after the timeout), `case N` / default (a split "
        "by attribute), `path N` (a random split), the path's name (an experiment)."
    )
    count: int = Field(description="Profiles that took the path.")
    percent: float = Field(description="Their share of the profiles that passed the step.")


class VersionOut(BaseModel):
    version: int
    entered: int = Field(description="Profiles that entered the journey on this version.")
    active: int = Field(description="Profiles on this version now (migrated in included).")
    exits: Outcomes
    migrated_in: int = Field(description="Profiles a migrate publish moved onto this version.")
    migrated_out: int = Field(description="Profiles a migrate publish moved off this version.")


class FunnelOut(BaseModel):
    sent: int = Field(description="Messages sent (the activator's message_sent).")
    opened: int = Field(description="Emails opened (one per message).")
    clicked: int = Field(description="Links clicked (one per link of a message).")
    goal: int = Field(description="Profiles that reached the goal after a message of it.")
    open_rate: float | None = Field(description="opened / sent, in percent; null before any.")
    click_rate: float | None = Field(description="clicked / sent, in percent.")
    goal_rate: float | None = Field(description="goal / sent, in percent.")


class StepFunnelOut(FunnelOut):
    step_id: str
    channel: str | None


class EngagementOut(BaseModel):
    steps: list[StepFunnelOut] = Field(description="Each message step's funnel.")
    channels: dict[str, FunnelOut] = Field(description="The funnel of each channel.")


class ActivationsOut(BaseModel):
    requested: int
    sent: int
    skipped: int
    failed: int
    pending: int


class AnalyticsOut(BaseModel):
    """A journey's counts; with ``version``, that version's, else the journey's across all
    its versions."""

    entered: int
    active: int = Field(description="Profiles in the journey now: waiting + finished.")
    waiting: int = Field(description="Profiles on a step now (a wait, a branch).")
    finished: int = Field(description="Profiles whose steps ran out, still in their stage.")
    goal: GoalOut
    exits: Outcomes = Field(description="Profiles that left, by outcome.")
    ends: Outcomes = Field(description="Where profiles ended: `exits` plus `finished`.")
    stages: list[StageOut] = Field(
        description="The loaded version's stages and steps; empty for a stopped journey."
    )
    steps: dict[str, StepOut] = Field(
        description="Counts by step id, from the counters alone (a stopped journey keeps them)."
    )
    paths: dict[str, list[PathOut]] = Field(
        description="Branch and split step id -> each path taken."
    )
    versions: list[VersionOut] = Field(description="Each version's share of the totals.")
    engagement: EngagementOut = Field(
        description="sent -> opened -> clicked -> goal per step and channel, across versions "
        "(delivery and tracking feedback names the step, not the version)."
    )
    activations: ActivationsOut
