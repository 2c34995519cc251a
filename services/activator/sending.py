"""The SQL of one delivery group, in plain asyncpg: lock the group's rows, then record
every outcome and everything that goes into the outbox with it, one statement each,
whatever the group's size. (The rest of the activator's SQL is in ``repository``.)"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.activator.feedback import Feedback
from services.activator.models import Delivery
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
