"""What the runtime receives of each event trigger's event: how many, when the last came,
how many broke the declared properties (with the first few places where they did).

Counting never refuses an event and stays off the engine's path: a batch adds its events
to a :class:`Tally` in memory (a dictionary look-up for events no trigger declares), and the
tally writes one statement for the whole batch, in the batch's transaction, so a batch
handled again counts once. Declarations come from the designer and are reloaded only when
its revision (which the catalog already follows before every batch) changes. This module
owns ``runtime.trigger_stats``; the designer shows the counts through
``GET /internal/workspaces/{ws}/event-triggers/{trigger_id}/stats``.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import db, event_schema
from shared.erasure import profile_key
from shared.events import AcceptedEvent
from shared.http import Unavailable, get_json
from shared.logging import get_logger

log = get_logger(__name__)

SHARDS = 16
MAX_SAMPLES = 5  # violations kept per trigger (per shard; the reader keeps the first few)
MAX_PATHS = 5  # places kept per violating event


@dataclass(frozen=True)
class Declared:
    trigger_id: str
    schema: event_schema.Schema


class TriggerSchemas:
    """Every workspace's triggers by event name, as of the designer revision last seen."""

    def __init__(self, http: aiohttp.ClientSession, designer_url: str) -> None:
        self._http = http
        self._url = designer_url
        self._revision: str | None = None
        self._by_name: dict[tuple[str, str], Declared] = {}
        self._lock = asyncio.Lock()

    def get(self, workspace_id: str, name: str) -> Declared | None:
        return self._by_name.get((workspace_id, name))

    async def tally(self, revision: str | None) -> Tally:
        """A tally for one batch, on the declarations as of ``revision``."""
        await self._fresh(revision)
        return Tally(self)

    async def _fresh(self, revision: str | None) -> None:
        """Reload when the designer's revision moved since the last load. Counting is no
        reason to hold events back: if the designer cannot answer, the batch counts on the
        declarations it has and the next batch tries again."""
        if revision is None or revision == self._revision:
            return
        async with self._lock:
            if revision == self._revision:
                return
            try:
                self._by_name = await self._load()
            except (Unavailable, KeyError, TypeError, ValueError) as exc:
                log.warning("triggers.load_failed", error=f"{type(exc).__name__}: {exc}")
                return
            self._revision = revision

    async def _load(self) -> dict[tuple[str, str], Declared]:
        status, body = await get_json(self._http, f"{self._url}/internal/event-triggers")
        if status != 200 or not isinstance(body, dict):
            raise ValueError(f"the designer answered {status} for its event triggers")
        loaded = {}
        for item in body["items"]:
            declared = event_schema.declaration(item["properties"], item["required"])
            schema, errors = event_schema.parse(declared)
            if schema is None:  # the designer stores valid ones only; count without checks
                log.warning("triggers.bad_declaration", trigger_id=item["id"], errors=len(errors))
                schema = event_schema.Schema("object")
            loaded[(item["workspace_id"], item["name"])] = Declared(item["id"], schema)
        return loaded


@dataclass
class _Count:
    received: int = 0
    last_at: datetime | None = None
    violations: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)


class Tally:
    """One batch's counts per (workspace, trigger); without schemas it counts nothing."""

    def __init__(self, schemas: TriggerSchemas | None = None) -> None:
        self._schemas = schemas
        self._counts: dict[tuple[str, str], _Count] = {}
        self._shard: int | None = None

    def add(self, workspace_id: str, events: Iterable[AcceptedEvent]) -> None:
        if self._schemas is None:
            return
        for event in events:
            declared = self._schemas.get(workspace_id, event.name)
            if declared is None or event.kind != "event":
                continue
            if self._shard is None:  # one partition's batch: its profiles pick the shard
                self._shard = zlib.crc32(event.profile_id.encode()) % SHARDS
            count = self._counts.setdefault((workspace_id, declared.trigger_id), _Count())
            count.received += 1
            if count.last_at is None or event.accepted_at > count.last_at:
                count.last_at = event.accepted_at
            self._check(declared, event, count)

    @staticmethod
    def _check(declared: Declared, event: AcceptedEvent, count: _Count) -> None:
        paths = event_schema.violations(declared.schema, event.properties, "properties", MAX_PATHS)
        if paths:
            count.violations += 1
            if len(count.samples) < MAX_SAMPLES:
                at = event.accepted_at.isoformat()
                count.samples.append({"event_id": event.event_id, "at": at, "paths": paths,
                                      _OWNER: _owner(event.profile_id)})  # fmt: skip

    async def save(self, conn: asyncpg.Connection) -> None:
        if not self._counts:
            return
        rows = sorted(self._counts.items())
        await conn.execute(
            _UPSERT, self._shard or 0,
            [ws for (ws, _), _ in rows], [t for (_, t), _ in rows],
            [c.received for _, c in rows], [c.last_at for _, c in rows],
            [c.violations for _, c in rows], [db.dumps(c.samples) for _, c in rows],
        )  # fmt: skip


_UPSERT = f"""
INSERT INTO runtime.trigger_stats AS s
    (workspace_id, trigger_id, shard, received_total, last_received_at, schema_violations, samples)
SELECT w, t, $1, n, at, v, smp::jsonb
FROM unnest($2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::bigint[], $7::text[])
     AS u (w, t, n, at, v, smp)
ORDER BY w, t
ON CONFLICT (workspace_id, trigger_id, shard) DO UPDATE SET
    received_total = s.received_total + EXCLUDED.received_total,
    last_received_at = greatest(s.last_received_at, EXCLUDED.last_received_at),
    schema_violations = s.schema_violations + EXCLUDED.schema_violations,
    samples = CASE WHEN jsonb_array_length(s.samples) >= {MAX_SAMPLES} THEN s.samples ELSE (
        SELECT coalesce(jsonb_agg(x ORDER BY n), '[]'::jsonb) FROM (
            SELECT x, n FROM jsonb_array_elements(s.samples || EXCLUDED.samples)
                 WITH ORDINALITY AS e (x, n)
            ORDER BY n LIMIT {MAX_SAMPLES}) AS kept) END
"""

# Each sample names its profile by digest, so an erasure can take the profile's samples out;
# readers never see it.
_OWNER = "profile_key"


def _owner(profile_id: str) -> str:
    return profile_key(profile_id).hex()


_FORGET = f"""
UPDATE runtime.trigger_stats SET samples = (
    SELECT coalesce(jsonb_agg(x ORDER BY n), '[]'::jsonb)
    FROM jsonb_array_elements(samples) WITH ORDINALITY AS e (x, n)
    WHERE x->>'{_OWNER}' IS DISTINCT FROM $2)
WHERE workspace_id = $1 AND samples @> jsonb_build_array(jsonb_build_object('{_OWNER}', $2::text))
"""


async def forget_samples(conn: asyncpg.Connection, workspace_id: str, profile_id: str) -> None:
    """Take an erased profile's events out of the violation samples (the counts stay)."""
    await conn.execute(_FORGET, workspace_id, _owner(profile_id))


_READ = text(
    """
SELECT coalesce(sum(received_total), 0) AS received, max(last_received_at) AS last_at,
       coalesce(sum(schema_violations), 0) AS violations,
       coalesce(jsonb_agg(samples), '[]'::jsonb) AS samples
FROM runtime.trigger_stats WHERE workspace_id = :ws AND trigger_id = :trigger
"""
)


async def stats(session: AsyncSession, workspace_id: str, trigger_id: str) -> dict[str, Any]:
    """The counts over every shard; the first few violations by when they were accepted."""
    row = (await session.execute(_READ, {"ws": workspace_id, "trigger": trigger_id})).one()
    samples = sorted(
        (s for shard in row.samples for s in shard), key=lambda s: datetime.fromisoformat(s["at"])
    )
    return {
        "received_total": int(row.received),
        "last_received_at": row.last_at,
        "schema_violations": int(row.violations),
        "violation_samples": [_shown(s) for s in samples[:MAX_SAMPLES]],
    }


def _shown(sample: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in sample.items() if key != _OWNER}
