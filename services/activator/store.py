"""The activator's hot path in plain asyncpg, one statement per step whatever the batch
size: the intake (which requests are new, erasures, cap counts, storing the decisions) and
a delivery group (lock its rows, then record every outcome and what goes into the outbox
with it). The rest of the activator's SQL, off the hot path, is in ``repository``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.activator.feedback import Feedback
from services.activator.models import Delivery
from services.activator.ratelimit import Grant
from shared.db import dumps
from shared.outbox import fit_msg_id
from shared.timers import TimerSchedule

_COLUMNS = [c.name for c in Delivery.__table__.columns]

_LOCK_DUE = f"""
SELECT {", ".join(_COLUMNS)} FROM activator.deliveries
WHERE activation_id = ANY($1::text[]) AND status = 'pending' AND next_attempt_at <= $2
ORDER BY next_attempt_at, activation_id
FOR UPDATE SKIP LOCKED
"""

_SAVE = """
UPDATE activator.deliveries AS d
SET status = v.status, reason = v.reason, attempts = v.attempts, last_error = v.last_error,
    next_attempt_at = v.next_attempt_at, sent_at = v.sent_at, updated_at = v.updated_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::timestamptz[],
            $7::timestamptz[], $8::timestamptz[])
     AS v (activation_id, status, reason, attempts, last_error, next_attempt_at, sent_at,
           updated_at)
WHERE d.activation_id = v.activation_id
"""

_OUTBOX = """
INSERT INTO activator.outbox (subject, msg_id, payload)
SELECT s, m, p::jsonb FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
     AS u (s, m, p, ord)
ORDER BY ord
"""


async def lock_due(
    conn: asyncpg.Connection, activation_ids: Sequence[str], now: datetime
) -> list[Delivery]:
    """Those of the deliveries still pending and due that no one else holds, locked until
    commit: whoever gets the lock is the only one sending them."""
    rows = await conn.fetch(_LOCK_DUE, list(activation_ids), now)
    return [Delivery(**dict(row)) for row in rows]


async def save(conn: asyncpg.Connection, rows: Sequence[Delivery]) -> None:
    """The outcome fields of ``rows`` as they now are."""
    if not rows:
        return
    await conn.execute(
        _SAVE,
        [r.activation_id for r in rows],
        [r.status for r in rows],
        [r.reason for r in rows],
        [r.attempts for r in rows],
        [r.last_error for r in rows],
        [r.next_attempt_at for r in rows],
        [r.sent_at for r in rows],
        [r.updated_at for r in rows],
    )


async def put_outbox(conn: asyncpg.Connection, items: Sequence[Feedback | TimerSchedule]) -> None:
    """Feedback events and quiet-hours timers, published after commit by the relay."""
    if not items:
        return
    payloads = [i.payload if isinstance(i, Feedback) else i.model_dump(mode="json") for i in items]
    await conn.execute(
        _OUTBOX,
        [i.subject for i in items],
        [fit_msg_id(i.msg_id) for i in items],
        [dumps(p) for p in payloads],
    )


# Intake ------------------------------------------------------------------------------------

_KNOWN = "SELECT activation_id FROM activator.deliveries WHERE activation_id = ANY($1::text[])"

_ERASED = """
SELECT profile_id, erased_at FROM activator.erasures
WHERE workspace_id = $1 AND profile_id = ANY($2::text[])
"""

_STOPPED = """
SELECT journey_id FROM activator.stopped_journeys
WHERE workspace_id = $1 AND journey_id = ANY($2::text[])
"""

_LOCK_BUDGETS = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k"

_CAP_USAGE = """
SELECT profile_id, count(*) FROM activator.deliveries
WHERE workspace_id = $1 AND channel = $2 AND profile_id = ANY($3::text[])
  AND (status IN ('pending', 'held') OR (status = 'sent' AND sent_at > $4))
GROUP BY profile_id
"""

_ADD_COLUMNS = ("activation_id", "workspace_id", "profile_id", "journey_id", "version",
                "step_id", "channel", "connector_id", "template_id", "recipient", "request",
                "status", "reason", "attempts", "next_attempt_at", "created_at",
                "updated_at")  # fmt: skip
_ADD_TYPES = ("text", "text", "text", "text", "int", "text", "text", "text", "text", "text",
              "text", "text", "text", "int", "timestamptz", "timestamptz",
              "timestamptz")  # fmt: skip
_ADD = f"""
INSERT INTO activator.deliveries ({", ".join(_ADD_COLUMNS)})
SELECT {", ".join("u.request::jsonb" if c == "request" else f"u.{c}" for c in _ADD_COLUMNS)}
FROM unnest({", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_ADD_TYPES))})
     AS u ({", ".join(_ADD_COLUMNS)})
ON CONFLICT (activation_id) DO NOTHING
RETURNING activation_id
"""


class IntakeStore:
    """The intake's statements on one connection (the caller owns the transaction)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def known(self, activation_ids: Sequence[str]) -> set[str]:
        """The ids that already have a row: requests seen before."""
        if not activation_ids:
            return set()
        return {r[0] for r in await self.conn.fetch(_KNOWN, list(activation_ids))}

    async def erased(self, workspace_id: str, profile_ids: Iterable[str]) -> dict[str, datetime]:
        """When each of these profiles was last erased, for those that were."""
        rows = await self.conn.fetch(_ERASED, workspace_id, sorted(set(profile_ids)))
        return {r["profile_id"]: r["erased_at"] for r in rows}

    async def stopped(self, workspace_id: str, journey_ids: Iterable[str]) -> set[str]:
        """Those of these journeys that were stopped."""
        rows = await self.conn.fetch(_STOPPED, workspace_id, sorted(set(journey_ids)))
        return {r["journey_id"] for r in rows}

    async def lock_budgets(self, names: Iterable[str]) -> None:
        """Serialise cap decisions per profile and channel across replicas until commit.
        Locks are taken in one order, so two batches wait for each other, never deadlock."""
        keys = sorted({budget_lock_key(name) for name in names})
        if keys:
            await self.conn.execute(_LOCK_BUDGETS, keys)

    async def cap_usage(
        self, workspace_id: str, channel: str, profile_ids: Sequence[str], since: datetime
    ) -> dict[str, int]:
        """Per profile: messages on ``channel`` sent after ``since``, plus those still
        pending or held (admitted and on their way, so they hold a place in the cap already)."""
        rows = await self.conn.fetch(_CAP_USAGE, workspace_id, channel, list(profile_ids), since)
        return {r[0]: int(r[1]) for r in rows}

    async def add(self, rows: Sequence[Mapping[str, Any]]) -> set[str]:
        """Store new deliveries; an id stored meanwhile by another replica is left alone.
        The ids this call stored."""
        if not rows:
            return set()
        columns = [[dumps(r[c]) if c == "request" else r[c] for r in rows] for c in _ADD_COLUMNS]
        return {r[0] for r in await self.conn.fetch(_ADD, *columns)}

    async def put_timers(self, timers: Sequence[TimerSchedule]) -> None:
        """Ask the scheduler for ``timers`` once this transaction commits."""
        await put_outbox(self.conn, timers)


def budget_name(workspace_id: str, profile_id: str, channel: str) -> str:
    """The cap budget of one profile on one channel."""
    return f"{workspace_id}\x00{profile_id}\x00{channel}"


def budget_lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for a cap budget's ``name``."""
    digest = hashlib.sha256(f"waypost-activator-cap\x00{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# Send turns --------------------------------------------------------------------------------


def _turns_sql() -> str:
    """``ratelimit.grant`` on the connector's row, in one statement: a new row starts from
    an idle schedule. Times are seconds on the database's clock, the one clock every replica
    shares; the answer is relative to it, so no replica's own clock matters."""
    now = "extract(epoch FROM statement_timestamp())"

    def start(after: str) -> str:
        return f"greatest({after}, {now})"

    def granted(after: str) -> str:
        room = f"floor(({now} + $5::float8 - {start(after)}) * $4::float8 + 1e-9)::int + 1"
        return f"least($3::int, greatest(0, {room}))"

    idle, old = "0::float8", "t.next_at"
    return f"""
INSERT INTO activator.send_turns AS t (workspace_id, connector_id, first_at, granted, next_at)
VALUES ($1, $2, {start(idle)}, {granted(idle)}, {start(idle)} + {granted(idle)} / $4::float8)
ON CONFLICT (workspace_id, connector_id) DO UPDATE
SET first_at = {start(old)}, granted = {granted(old)},
    next_at = {start(old)} + {granted(old)} / $4::float8
RETURNING t.first_at - extract(epoch FROM clock_timestamp()) AS first_in, t.granted,
          t.next_at - extract(epoch FROM clock_timestamp()) AS next_in
"""


_TURNS = _turns_sql()


async def reserve_turns(
    pool: asyncpg.Pool, key: tuple[str, str], rate: float, wanted: int, max_wait: float
) -> Grant:
    """Up to ``wanted`` consecutive send turns of a connector, on its own short statement
    (not in a delivery group's transaction, which would hold the row while it sends)."""
    row = await pool.fetchrow(_TURNS, key[0], key[1], wanted, rate, max_wait)
    assert row is not None
    return Grant(row["first_in"], row["granted"], row["next_in"])
