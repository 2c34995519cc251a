"""Experiments in the runtime: who was assigned which path, who converted, and the one
decision.

- **Assigning.** The engine takes an experiment split's path by the same replay-stable hash
  as a random split and says so on the timeline (``branch_taken`` with ``experiment:
  assigned``); a batch turns those entries into rows of ``runtime.experiment_members`` (one
  per profile and experiment: a profile is one unit, its first assignment counts) and the
  experiment's row in ``runtime.experiments`` (its definition as it was then), in the
  batch's own transaction.
- **Converting.** Before the engine sees an event, the batch checks it against the metric
  of every experiment window of the profile still open (assigned before, window not yet
  closed on the product clock) and marks the first match converted: an event applied
  twice is applied once (``runtime.processed``), so a conversion counts once.
- **Deciding.** :class:`Decider` looks at every experiment still collecting about once a
  second: it closes it ``inconclusive`` when its journey stopped or ``max_duration`` passed,
  else counts the paths in one snapshot and asks :func:`experiment_stats.decide`. A
  decision is written with ``WHERE status = 'collecting'``: the first replica to decide
  wins and nothing changes it afterwards, restarts and redeliveries included.
- **Sending everyone to the winner.** A batch reads the decided winners of its workspace's
  ``send_all`` experiments (only while some are not known yet: a decision never changes)
  and gives them to the engine in its catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from services.runtime import experiment_stats
from services.runtime.catalog import CatalogCache
from services.runtime.engine.compiled import CompiledJourney
from services.runtime.engine.engine import Catalog, activation_id
from services.runtime.engine.state import Result
from shared import db
from shared.clock import Clock
from shared.durations import to_timedelta
from shared.journey import ExperimentSplitStep
from shared.logging import get_logger
from shared.matcher import EventView
from shared.outages import is_outage

log = get_logger(__name__)

Key = tuple[str, str]  # (journey id, step id)


@dataclass
class _Open:
    """An assignment whose window is still open."""

    journey_id: str
    step_id: str
    version: int
    entry: int
    window_ends: datetime


@dataclass
class _Assigned:
    journey_id: str
    step_id: str
    profile_id: str
    version: int
    entry: int
    path: str
    window_ends: datetime
    definition: dict[str, Any]


@dataclass
class Book:
    """One batch's assignments and conversions in one workspace, written together."""

    workspace_id: str
    catalog: Catalog
    now: datetime
    open: dict[str, list[_Open]] = field(default_factory=dict)
    assigned: list[_Assigned] = field(default_factory=list)
    converted: list[tuple[str, str, str]] = field(default_factory=list)  # journey, step, profile

    def convert(self, profile_id: str, name: str, properties: Mapping[str, Any],
                attributes: Mapping[str, Any]) -> None:  # fmt: skip
        """Mark the profile's open windows whose metric this event meets as converted."""
        windows = self.open.get(profile_id)
        if not windows:
            return
        view = EventView(name, dict(properties))
        for window in list(windows):
            if window.window_ends <= self.now:
                continue
            matcher = _metric(self.catalog, window.journey_id, window.step_id, window.version)
            if matcher is None or not matcher.matches(view, attributes):
                continue
            if not _this_pass(window, profile_id, properties):
                continue
            windows.remove(window)
            self.converted.append((window.journey_id, window.step_id, profile_id))

    def assign(self, profile_id: str, result: Result) -> None:
        """Record the experiment paths the engine assigned in ``result``."""
        for entry in result.timeline:
            if entry.kind != "branch_taken" or entry.detail.get("experiment") != "assigned":
                continue
            step = _step(self.catalog, entry.journey_id, entry.step_id or "", entry.version)
            state = result.states.get(entry.journey_id)
            if step is None or state is None:
                continue
            ends = self.now + to_timedelta(step.experiment.window)
            number = state.history.entries
            self.assigned.append(
                _Assigned(
                    entry.journey_id, step.id, profile_id, entry.version, number,
                    str(entry.detail["path"]), ends, definition(step),
                )
            )  # fmt: skip
            self.open.setdefault(profile_id, []).append(
                _Open(entry.journey_id, step.id, entry.version, number, ends)
            )

    async def save(self, conn: asyncpg.Connection) -> None:
        if self.assigned:
            experiments = {(a.journey_id, a.step_id): a.definition for a in self.assigned}
            keys = sorted(experiments)
            await conn.execute(
                _START, self.workspace_id, [k[0] for k in keys], [k[1] for k in keys],
                [db.dumps(experiments[k]) for k in keys], self.now,
            )  # fmt: skip
            rows = sorted(self.assigned, key=lambda a: (a.journey_id, a.step_id, a.profile_id))
            await conn.execute(
                _ASSIGN, self.workspace_id, [a.journey_id for a in rows],
                [a.step_id for a in rows], [a.profile_id for a in rows],
                [a.version for a in rows], [a.entry for a in rows], [a.path for a in rows],
                self.now, [a.window_ends for a in rows],
            )  # fmt: skip
        if self.converted:
            rows3 = sorted(set(self.converted))
            await conn.execute(
                _CONVERT, self.workspace_id, [r[0] for r in rows3], [r[1] for r in rows3],
                [r[2] for r in rows3], self.now,
            )  # fmt: skip


_START = """
INSERT INTO runtime.experiments (workspace_id, journey_id, step_id, definition, started_at)
SELECT $1, j, s, d::jsonb, $5 FROM unnest($2::text[], $3::text[], $4::text[]) AS t (j, s, d)
ORDER BY j, s
ON CONFLICT DO NOTHING
"""

_ASSIGN = """
INSERT INTO runtime.experiment_members
    (workspace_id, journey_id, step_id, profile_id, version, entry, path, assigned_at,
     window_ends)
SELECT $1, j, s, p, v, e, pa, $8, w
FROM unnest($2::text[], $3::text[], $4::text[], $5::integer[], $6::integer[], $7::text[],
            $9::timestamptz[]) AS t (j, s, p, v, e, pa, w)
ORDER BY j, s, p
ON CONFLICT DO NOTHING
"""

_CONVERT = """
UPDATE runtime.experiment_members AS m SET converted_at = $5
FROM unnest($2::text[], $3::text[], $4::text[]) AS t (j, s, p)
WHERE m.workspace_id = $1 AND m.journey_id = t.j AND m.step_id = t.s AND m.profile_id = t.p
  AND m.converted_at IS NULL AND m.window_ends > $5
"""

_OPEN = """
SELECT profile_id, journey_id, step_id, version, entry, window_ends
FROM runtime.experiment_members
WHERE workspace_id = $1 AND profile_id = ANY($2::text[]) AND converted_at IS NULL
  AND window_ends > $3
"""

_CONCLUDED = """
SELECT journey_id, step_id, winner FROM runtime.experiments
WHERE workspace_id = $1 AND status <> 'collecting'
"""


async def winners(conn: asyncpg.Connection, workspace_id: str) -> dict[Key, str]:
    """The workspace's decided experiments and their winners."""
    rows = await conn.fetch(_CONCLUDED, workspace_id)
    return {(r[0], r[1]): r[2] for r in rows if r[2] is not None}


def definition(step: ExperimentSplitStep) -> dict[str, Any]:
    """What the experiment was when its first profile was assigned: read by the decider
    and the report even after the journey stopped (then it is no longer in the catalog)."""
    return {
        "paths": [{"name": p.name, "control": p.control} for p in step.paths],
        **step.experiment.model_dump(mode="json", exclude_none=True),
    }


def experiment_steps(catalog: Catalog) -> dict[Key, ExperimentSplitStep]:
    """Every experiment split of the workspace's live journeys (any published version)."""
    out: dict[Key, ExperimentSplitStep] = {}
    for journey_id, live in catalog.journeys.items():
        for version in sorted(live.versions):
            for step_id, step in live.versions[version].experiments.items():
                out[(journey_id, step_id)] = step
    return out


class Experiments:
    """Prepares each batch's :class:`Book`; remembers concluded experiments (a decision
    never changes) and each catalog's experiment splits."""

    def __init__(self) -> None:
        self._concluded: dict[str, dict[Key, str | None]] = {}  # -> winner, None if none
        self._steps: dict[str, tuple[Catalog, dict[Key, ExperimentSplitStep]]] = {}

    def steps(self, workspace_id: str, catalog: Catalog) -> dict[Key, ExperimentSplitStep]:
        cached = self._steps.get(workspace_id)
        if cached is None or cached[0] is not catalog:
            cached = (catalog, experiment_steps(catalog))
            self._steps[workspace_id] = cached
        return cached[1]

    async def book(
        self, conn: asyncpg.Connection, workspace_id: str, catalog: Catalog,
        profile_ids: Iterable[str], now: datetime,
    ) -> Book:  # fmt: skip
        """The batch's book, its catalog carrying the winners known; no query at all for a
        workspace without experiments."""
        steps = self.steps(workspace_id, catalog)
        if not steps:
            return Book(workspace_id, catalog, now)
        concluded = self._concluded.setdefault(workspace_id, {})
        if any(
            s.experiment.on_winner == "send_all" and k not in concluded for k, s in steps.items()
        ):
            for journey_id, step_id, winner in await conn.fetch(_CONCLUDED, workspace_id):
                concluded[(journey_id, step_id)] = winner
        winners = {k: w for k, w in concluded.items() if w is not None}
        book = Book(workspace_id, replace(catalog, winners=winners), now)
        ids = sorted(set(profile_ids))
        for row in await conn.fetch(_OPEN, workspace_id, ids, now) if ids else ():
            book.open.setdefault(row["profile_id"], []).append(
                _Open(row["journey_id"], row["step_id"], row["version"], row["entry"],
                      row["window_ends"])
            )  # fmt: skip
        return book


def _step(
    catalog: Catalog, journey_id: str, step_id: str, version: int
) -> ExperimentSplitStep | None:
    compiled = _compiled(catalog, journey_id, version)
    return compiled.experiments.get(step_id) if compiled else None


def _metric(catalog: Catalog, journey_id: str, step_id: str, version: int) -> Any:
    compiled = _compiled(catalog, journey_id, version)
    return compiled.metrics.get(step_id) if compiled else None


def _compiled(catalog: Catalog, journey_id: str, version: int) -> CompiledJourney | None:
    live = catalog.journeys.get(journey_id)
    if live is None:
        return None
    return live.versions.get(version) or live.live


def _this_pass(window: _Open, profile_id: str, properties: Mapping[str, Any]) -> bool:
    """An event about a message of this journey counts only for this entry's message: a
    click on last month's email is not a conversion of this pass (as branches pin)."""
    if properties.get("journey_id") != window.journey_id or "activation_id" not in properties:
        return True
    step = str(properties.get("step_id"))
    versions = {window.version}
    if isinstance(properties.get("version"), int):
        versions.add(properties["version"])
    ours = [activation_id(window.journey_id, v, profile_id, window.entry, step) for v in versions]
    # Properties are whatever the sender sent: compared, never hashed.
    return any(properties["activation_id"] == ident for ident in ours)


# Counting and deciding ----------------------------------------------------------------------

_COUNTS = """
SELECT path,
       count(*) AS assigned,
       count(*) FILTER (WHERE converted_at IS NOT NULL) AS converted,
       count(*) FILTER (WHERE window_ends <= $4) AS observed,
       count(*) FILTER (WHERE window_ends <= $4 AND converted_at IS NOT NULL) AS successes
FROM runtime.experiment_members
WHERE workspace_id = $1 AND journey_id = $2 AND step_id = $3
GROUP BY path
"""

_COLLECTING = """
SELECT workspace_id, journey_id, step_id, definition, started_at FROM runtime.experiments
WHERE status = 'collecting'
"""

_CONCLUDE = """
UPDATE runtime.experiments SET status = $4, winner = $5, decided_at = $6, reason = $7,
       result = $8::jsonb
WHERE workspace_id = $1 AND journey_id = $2 AND step_id = $3 AND status = 'collecting'
"""


async def counts(
    conn: asyncpg.Connection, workspace_id: str, journey_id: str, step_id: str,
    paths: list[dict[str, Any]], now: datetime,
) -> list[experiment_stats.PathCounts]:  # fmt: skip
    """Each defined path's counts in one snapshot (a path nobody took yet counts zero)."""
    rows = {r["path"]: r for r in await conn.fetch(_COUNTS, workspace_id, journey_id, step_id, now)}
    out = []
    for path in paths:
        row = rows.get(path["name"])
        values = (
            (row["assigned"], row["converted"], row["observed"], row["successes"])
            if row else (0, 0, 0, 0)
        )  # fmt: skip
        out.append(experiment_stats.PathCounts(path["name"], bool(path.get("control")), *values))
    return out


class DeciderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.concluded = Counter(
            "waypost_experiments_concluded_total",
            "Experiments that reached a result, by status (decided or inconclusive).",
            ["status"],
            registry=registry,
        )
        self.failures = Counter(
            "waypost_experiment_checks_failed_total",
            "Rounds of the experiment decider that failed (retried on the next round).",
            registry=registry,
        )


class Decider:
    """Checks every collecting experiment every ``interval_s``; see the module's doc."""

    def __init__(
        self, pool: asyncpg.Pool, catalogs: CatalogCache, clock: Clock,
        metrics: DeciderMetrics | None = None, interval_s: float = 1.0,
    ) -> None:  # fmt: skip
        self.pool = pool
        self.catalogs = catalogs
        self.clock = clock
        self.metrics = metrics
        self.interval_s = interval_s

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database or the designer is away (at start, or while stopping): try
                # again next round; a failure of the check itself is logged with its cause.
                if is_outage(exc):
                    log.info("experiments.check_waiting", error=type(exc).__name__)
                else:
                    log.warning("experiments.check_failed", exc_info=True)
                if self.metrics is not None:
                    self.metrics.failures.inc()
            await asyncio.sleep(self.interval_s)

    async def check(self) -> int:
        """One round; returns how many experiments concluded in it."""
        await self.catalogs.fresh(time.monotonic())
        concluded = 0
        async with self.pool.acquire() as conn:
            for row in await conn.fetch(_COLLECTING):
                concluded += await self._check_one(conn, row)
        return concluded

    async def _check_one(self, conn: asyncpg.Connection, row: asyncpg.Record) -> int:
        ws, journey_id, step_id = row["workspace_id"], row["journey_id"], row["step_id"]
        spec = row["definition"]
        now = self.clock.now()
        paths = await counts(conn, ws, journey_id, step_id, spec["paths"], now)
        decision = experiment_stats.decide(paths, spec["confidence"], spec["min_per_path"])
        snapshot = _snapshot(decision)
        if journey_id not in self.catalogs.for_workspace(ws).journeys:
            why = "the journey stopped before a decision"
            return await self._conclude(conn, row, "inconclusive", None, now, why, snapshot)
        longest = spec.get("max_duration")
        if longest is not None and row["started_at"] + to_timedelta(longest) <= now:
            why = f"max_duration {longest} passed before a decision"
            return await self._conclude(conn, row, "inconclusive", None, now, why, snapshot)
        if decision.winner is None:
            return 0
        return await self._conclude(conn, row, "decided", decision.winner, now, None, snapshot)

    async def _conclude(
        self, conn: asyncpg.Connection, row: asyncpg.Record, status: str, winner: str | None,
        now: datetime, reason: str | None, snapshot: list[dict[str, Any]],
    ) -> int:  # fmt: skip
        done = await conn.execute(
            _CONCLUDE, row["workspace_id"], row["journey_id"], row["step_id"], status, winner,
            now, reason, snapshot,
        )  # fmt: skip
        if done.endswith(" 0"):
            return 0  # another replica concluded it first
        log.info(
            "experiments.concluded", workspace_id=row["workspace_id"],
            journey_id=row["journey_id"], step_id=row["step_id"], status=status, winner=winner,
        )  # fmt: skip
        if self.metrics is not None:
            self.metrics.concluded.labels(status).inc()
        return 1


def _snapshot(decision: experiment_stats.Decision) -> list[dict[str, Any]]:
    return [_path_out(p) for p in decision.paths]


def _path_out(p: experiment_stats.PathResult) -> dict[str, Any]:
    return {
        "name": p.name, "control": p.control, "assigned": p.assigned, "converted": p.converted,
        "rate": p.rate, "ci_low": p.ci_low, "ci_high": p.ci_high,
        "lift_vs_control": p.lift_vs_control, "p_value": p.p_value,
    }  # fmt: skip


@contextlib.asynccontextmanager
async def deciding(decider: Decider) -> Any:
    task = asyncio.create_task(decider.run(), name="experiment-decider")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# Reading ----------------------------------------------------------------------------------

_ONE = """
SELECT definition, status, winner, decided_at, reason, result FROM runtime.experiments
WHERE workspace_id = $1 AND journey_id = $2 AND step_id = $3
"""


async def report(
    conn: asyncpg.Connection, workspace_id: str, journey_id: str, step_id: str,
    step: ExperimentSplitStep | None, now: datetime,
) -> dict[str, Any] | None:  # fmt: skip
    """The experiment as the API answers it; None when the journey has no such experiment.

    ``paths`` are the counts now (a ``report`` experiment goes on after its decision);
    ``decision`` the paths as they were when it was decided."""
    row = await conn.fetchrow(_ONE, workspace_id, journey_id, step_id)
    if row is None and step is None:
        return None
    spec = row["definition"] if row is not None else definition(step)  # type: ignore[arg-type]
    paths = await counts(conn, workspace_id, journey_id, step_id, spec["paths"], now)
    decision = experiment_stats.decide(paths, spec["confidence"], spec["min_per_path"])
    status = row["status"] if row is not None else "collecting"
    return {
        "journey_id": journey_id,
        "step_id": step_id,
        "status": status,
        "winner": row["winner"] if row is not None else None,
        "decided_at": row["decided_at"] if row is not None and status != "collecting" else None,
        "reason": row["reason"] if row is not None else None,
        "method": experiment_stats.METHOD,
        "confidence": spec["confidence"],
        "min_per_path": spec["min_per_path"],
        "on_winner": spec["on_winner"],
        "paths": _snapshot(decision),
        "decision": row["result"] if row is not None and status != "collecting" else None,
    }
