"""The runtime's write path: the SQL a batch runs, in plain asyncpg.

A batch of a few hundred inputs runs a fixed handful of statements, each fed whole arrays
(``unnest``), whatever the batch size: one to claim the event ids, two to lock the
profiles, one to read their states, and one per table written. The API's reads stay in
:mod:`services.runtime.repository`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.runtime.codec import dump_state, load_state
from services.runtime.engine.engine import Catalog
from services.runtime.engine.state import JourneyState, TimelineEntry
from shared import db, outbox

Command = tuple[str, dict[str, Any], str]  # (subject, payload, Nats-Msg-Id)


@dataclass
class ProfileRecord:
    """A locked profile row as the batch sees it; ``changed`` when it must be written."""

    profile_id: str
    attributes: dict[str, Any]
    consent: dict[str, Any]
    changed: bool = False


@dataclass(frozen=True)
class EventExplained:
    """Why one event did or did not move the profile, journey by journey."""

    profile_id: str
    event_id: str
    name: str
    at: datetime
    journeys: list[dict[str, Any]]


_CLAIM = """
INSERT INTO runtime.processed (workspace_id, event_id)
SELECT $1, e FROM unnest($2::text[]) AS e ORDER BY e
ON CONFLICT DO NOTHING
RETURNING event_id
"""

_CREATE_PROFILES = """
INSERT INTO runtime.profiles (workspace_id, profile_id, attributes, consent)
SELECT $1, p, '{}'::jsonb, '{}'::jsonb FROM unnest($2::text[]) AS p ORDER BY p
ON CONFLICT DO NOTHING
"""

_LOCK_PROFILES = """
SELECT profile_id, attributes, consent FROM runtime.profiles
WHERE workspace_id = $1 AND profile_id = ANY($2::text[])
ORDER BY profile_id
FOR UPDATE
"""

_UPDATE_PROFILES = """
UPDATE runtime.profiles AS p
SET attributes = v.attributes::jsonb, consent = v.consent::jsonb, updated_at = now()
FROM unnest($2::text[], $3::text[], $4::text[]) AS v (profile_id, attributes, consent)
WHERE p.workspace_id = $1 AND p.profile_id = v.profile_id
"""

_STATES = """
SELECT profile_id, journey_id, state FROM runtime.memberships
WHERE workspace_id = $1 AND profile_id = ANY($2::text[])
"""

# Where a profile was when it left stays readable: these keep their last values.
KEEP_WHEN_LEFT = ("version", "stage", "step_id", "entered_at")
# JSON goes in as text[] and is cast per element: a jsonb[] parameter would read a list
# value as one more array dimension.
_MEMBERSHIP_COLUMNS = (
    ("state", "text", "::jsonb"), ("active", "boolean", ""), ("version", "integer", ""),
    ("stage", "text", ""), ("step_id", "text", ""), ("flow", "text", ""),
    ("outcome", "text", ""), ("entered_at", "timestamptz", ""), ("left_at", "timestamptz", ""),
)  # fmt: skip


def _upsert_memberships() -> str:
    names = [name for name, _, _ in _MEMBERSHIP_COLUMNS]
    arrays = ", ".join(f"${i}::{kind}[]" for i, (_, kind, _) in enumerate(_MEMBERSHIP_COLUMNS, 4))
    values = ", ".join(f"{name}{cast}" for name, _, cast in _MEMBERSHIP_COLUMNS)
    updates = ", ".join(
        f"{n} = coalesce(EXCLUDED.{n}, m.{n})" if n in KEEP_WHEN_LEFT else f"{n} = EXCLUDED.{n}"
        for n in names
    )
    return f"""
INSERT INTO runtime.memberships AS m (workspace_id, profile_id, journey_id, {", ".join(names)})
SELECT $1, profile_id, journey_id, {values}
FROM unnest($2::text[], $3::text[], {arrays}) AS t (profile_id, journey_id, {", ".join(names)})
ON CONFLICT (workspace_id, profile_id, journey_id) DO UPDATE SET {updates}
"""


_UPSERT_MEMBERSHIPS = _upsert_memberships()

_TIMELINE = """
INSERT INTO runtime.timeline
    (workspace_id, profile_id, at, journey_id, version, kind, stage, step_id, detail, cause)
SELECT $1, p, at, j, v, k, s, st, d::jsonb, c::jsonb
FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::integer[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[])
     WITH ORDINALITY AS t (p, at, j, v, k, s, st, d, c, n)
ORDER BY n
"""

_EXPLANATIONS = """
INSERT INTO runtime.explanations (workspace_id, profile_id, event_id, name, at, journeys)
SELECT $1, p, e, n, at, j::jsonb
FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])
     WITH ORDINALITY AS t (p, e, n, at, j, o)
ORDER BY o
"""

_BUMP = """
INSERT INTO runtime.counters AS c (workspace_id, journey_id, version, key, shard, value)
SELECT $1, j, v, k, $2, n FROM unnest($3::text[], $4::integer[], $5::text[], $6::bigint[])
     AS t (j, v, k, n)
ORDER BY j, v, k
ON CONFLICT (workspace_id, journey_id, version, key, shard)
DO UPDATE SET value = c.value + EXCLUDED.value
"""

_COMMANDS = """
INSERT INTO runtime.outbox (subject, payload, msg_id)
SELECT s, p::jsonb, m FROM unnest($1::text[], $2::text[], $3::text[])
     WITH ORDINALITY AS t (s, p, m, n)
ORDER BY n
"""


class Store:
    """The statements of one transaction on ``conn``."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.commands = 0  # outbox rows written, so the relay is woken only for some

    async def claim_events(self, workspace_id: str, event_ids: Iterable[str]) -> set[str]:
        """The ids not applied before; from now on they count as applied."""
        ids = sorted(set(event_ids))
        if not ids:
            return set()
        return {r[0] for r in await self.conn.fetch(_CLAIM, workspace_id, ids)}

    async def lock_profiles(
        self, workspace_id: str, profile_ids: Iterable[str], *, create: bool
    ) -> dict[str, ProfileRecord]:
        """Lock the profiles' rows (creating missing ones if ``create``) in one order, so
        two batches touching the same profiles wait for each other, never deadlock."""
        ids = sorted(set(profile_ids))
        if not ids:
            return {}
        if create:
            await self.conn.execute(_CREATE_PROFILES, workspace_id, ids)
        rows = await self.conn.fetch(_LOCK_PROFILES, workspace_id, ids)
        return {r[0]: ProfileRecord(r[0], r[1], r[2]) for r in rows}

    async def save_profiles(self, workspace_id: str, profiles: Iterable[ProfileRecord]) -> None:
        changed = [p for p in profiles if p.changed]
        if changed:
            await self.conn.execute(
                _UPDATE_PROFILES, workspace_id, [p.profile_id for p in changed],
                [_json(p.attributes) for p in changed], [_json(p.consent) for p in changed],
            )  # fmt: skip

    async def states(
        self, workspace_id: str, profile_ids: Sequence[str]
    ) -> dict[str, dict[str, JourneyState]]:
        out: dict[str, dict[str, JourneyState]] = {p: {} for p in profile_ids}
        if profile_ids:
            for profile_id, journey_id, raw in await self.conn.fetch(
                _STATES, workspace_id, list(profile_ids)
            ):
                out[profile_id][journey_id] = load_state(raw)
        return out

    async def save_states(
        self, workspace_id: str, states: dict[str, dict[str, JourneyState]], catalog: Catalog
    ) -> None:
        rows = [
            (profile_id, journey_id, *_membership_columns(journey_id, state, catalog))
            for profile_id in sorted(states)
            for journey_id, state in sorted(states[profile_id].items())
        ]
        if rows:
            await self.conn.execute(_UPSERT_MEMBERSHIPS, workspace_id, *_columns(rows, 11))

    async def active_profiles(
        self, workspace_id: str, journey_id: str, flow: str | None = None
    ) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT profile_id FROM runtime.memberships WHERE workspace_id = $1 "
            "AND journey_id = $2 AND active AND ($3::text IS NULL OR flow = $3)",
            workspace_id, journey_id, flow,
        )  # fmt: skip
        return [r[0] for r in rows]

    async def add_timeline(
        self, workspace_id: str, entries: Sequence[tuple[str, TimelineEntry]]
    ) -> None:
        if entries:
            rows = [
                (profile_id, e.at, e.journey_id, e.version, e.kind, e.stage, e.step_id,
                 _json(e.detail), _json(e.cause))
                for profile_id, e in entries
            ]  # fmt: skip
            await self.conn.execute(_TIMELINE, workspace_id, *_columns(rows, 9))

    async def add_explanations(
        self, workspace_id: str, explained: Sequence[EventExplained]
    ) -> None:
        if explained:
            rows = [(x.profile_id, x.event_id, x.name, x.at, _json(x.journeys)) for x in explained]
            await self.conn.execute(_EXPLANATIONS, workspace_id, *_columns(rows, 5))

    async def bump(
        self, workspace_id: str, increments: dict[tuple[str, int, str], int], shard: int
    ) -> None:
        if increments:
            rows = [(j, v, k, n) for (j, v, k), n in sorted(increments.items())]
            await self.conn.execute(_BUMP, workspace_id, shard, *_columns(rows, 4))

    async def add_commands(self, commands: Sequence[Command]) -> None:
        """Outbox rows, published after the commit."""
        if commands:
            rows = [(s, _json(payload), outbox.fit_msg_id(m)) for s, payload, m in commands]
            await self.conn.execute(_COMMANDS, *_columns(rows, 3))
            self.commands += len(commands)

    async def delete_profile(self, workspace_id: str, profile_id: str) -> None:
        tables = ("memberships", "timeline", "explanations", "experiment_members", "profiles")
        for table in tables:
            await self.conn.execute(
                f"DELETE FROM runtime.{table} WHERE workspace_id = $1 AND profile_id = $2",
                workspace_id, profile_id,
            )  # fmt: skip


def _json(value: Any) -> str:
    return db.dumps(value)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows to the column arrays ``unnest`` takes."""
    return [[row[i] for row in rows] for i in range(width)]


def _membership_columns(journey_id: str, state: JourneyState, catalog: Catalog) -> tuple[Any, ...]:
    """state, active, version, stage, step_id, flow, outcome, entered_at, left_at."""
    m = state.membership
    if m is None:
        h = state.history
        outcome = h.last_outcome.value if h.last_outcome else None
        state_json = _json(dump_state(state))
        return (state_json, False, None, None, None, None, outcome, None, h.last_left_at)
    live = catalog.journeys.get(journey_id)
    compiled = live.versions.get(m.version) if live else None
    stage = compiled.stages[m.stage].name if compiled else None
    return (
        _json(dump_state(state)), True, m.version, stage, m.step_id, m.flow.value, None,
        m.entered_at, None,
    )  # fmt: skip
