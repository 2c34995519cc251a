"""Erased profiles stay erased: the tombstone the runtime keeps for each.

``DELETE /v1/profiles/{id}`` deletes the profile and, in the same transaction, writes a
tombstone: the workspace, a SHA-256 digest of the profile id (not the id itself) and when
it was erased. Events can still be on their way then: accepted by the gateway but not yet
applied, or feedback on a message sent just before (``message_sent`` from the activator,
an open or a click from the gateway's tracking). Without the tombstone the first of them
would create the profile again.

What brings an erased profile back is what creates any profile: an event or a profile
update a partner sent, accepted after the erasure. Feedback on messages (the names in
:data:`FEEDBACK`) never does, whenever it arrives: it is about a message to the profile
that was erased. An event that brings the profile back removes its tombstone, and from
then on the profile is a new one like any other. Whatever is dropped still counts as
applied (its id was claimed), so a redelivery is dropped too.

The tombstones are read after the batch has locked (or created) its profiles' rows, so an
erasure that committed while the batch waited for a row is seen: a row the batch created
for an erased profile is deleted again before it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from services.runtime.store import ProfileRecord
from shared.erasure import FEEDBACK, profile_key
from shared.events import AcceptedEvent
from shared.logging import get_logger

log = get_logger(__name__)

_RECORD = """
INSERT INTO runtime.erasures AS e (workspace_id, profile_key, erased_at) VALUES ($1, $2, $3)
ON CONFLICT (workspace_id, profile_key)
DO UPDATE SET erased_at = greatest(e.erased_at, EXCLUDED.erased_at)
"""

_REQUESTS = """
DELETE FROM runtime.outbox
WHERE subject LIKE 'activations.requested.%' AND payload->>'workspace_id' = $1
  AND payload->>'profile_id' = $2
"""

_FIND = """
SELECT profile_key, erased_at FROM runtime.erasures
WHERE workspace_id = $1 AND profile_key = ANY($2::bytea[])
"""

_FORGET = "DELETE FROM runtime.erasures WHERE workspace_id = $1 AND profile_key = ANY($2::bytea[])"

_UNCREATE = "DELETE FROM runtime.profiles WHERE workspace_id = $1 AND profile_id = ANY($2::text[])"


async def record(
    conn: asyncpg.Connection, workspace_id: str, profile_id: str, erased_at: datetime
) -> None:
    """The profile's tombstone, in the transaction that erases it; and its activation
    requests leave the outbox, published or not: they carry its address and attributes,
    and the activator skips a request made before the erasure anyway. The outbox keeps
    published rows for ``outbox_retention_s`` only, so this reads few rows."""
    await conn.execute(_RECORD, workspace_id, profile_key(profile_id), erased_at)
    await conn.execute(_REQUESTS, workspace_id, profile_id)


class Tombstones:
    """Screens each batch against the tombstones; counts what it dropped."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._dropped = Counter(
            "waypost_runtime_erased_events_dropped_total",
            "Events dropped because their profile was erased (late feedback, or accepted "
            "before the erasure)",
            registry=registry,
        )

    async def screen(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        events: Sequence[AcceptedEvent],
        rows: dict[str, ProfileRecord],
    ) -> list[AcceptedEvent]:
        """The events to apply. Events of erased profiles that may not bring them back are
        left out, and their rows (created by this batch) deleted and taken out of ``rows``."""
        keys = {profile_id: profile_key(profile_id) for profile_id in rows}
        found = await conn.fetch(_FIND, workspace_id, list(keys.values()))
        if not found:
            return list(events)
        erased_at = {bytes(r["profile_key"]): r["erased_at"] for r in found}
        erased = {p: erased_at[k] for p, k in keys.items() if k in erased_at}
        kept: list[AcceptedEvent] = []
        back: set[str] = set()
        for event in events:
            at = erased.get(event.profile_id)
            if at is None or event.profile_id in back:
                kept.append(event)
            elif event.name not in FEEDBACK and event.accepted_at > at:
                back.add(event.profile_id)  # a partner's event after the erasure
                kept.append(event)
        if back:
            await conn.execute(_FORGET, workspace_id, [keys[p] for p in sorted(back)])
        gone = sorted(set(erased) - back)
        if gone:
            await conn.execute(_UNCREATE, workspace_id, gone)
            for profile_id in gone:
                del rows[profile_id]
        dropped = len(events) - len(kept)
        if dropped:
            self._dropped.inc(dropped)
            log.info("erasure.events_dropped", workspace_id=workspace_id, events=dropped)
        return kept
