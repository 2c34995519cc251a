"""Transactional outbox: messages written in the same transaction as the state they
announce, published after commit by a relay, so nothing is published that rolled back
and nothing committed is lost.

Each service that publishes has an ``outbox`` table in its own schema. ``enqueue`` adds a
row inside the caller's transaction; the relay publishes unpublished rows in key order
with a ``Nats-Msg-Id`` per row (a crash between publish and marking only causes a
duplicate that JetStream drops) and marks them. It wakes on ``notify`` after a commit and
also polls, which covers rows left by a crashed process.

The relay works on any table with a single-column integer primary key (the order) and a
nullable ``published_at``: ``to_message`` turns a row into what is published. The
gateway's event inbox is such a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from nats.js.api import PubAck
from sqlalchemy import (
    BigInteger,
    Column,
    CursorResult,
    DateTime,
    Identity,
    Index,
    MetaData,
    Row,
    Select,
    String,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import bus
from shared.logging import correlation_headers, get_logger

log = get_logger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("msg_id", String(200), nullable=False),
        Column("subject", String(300), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
        Column("published_at", DateTime(timezone=True)),
        Index("ix_outbox_unpublished", "id", postgresql_where=Column("published_at").is_(None)),
    )


MSG_ID_MAX = 200  # the length of the msg_id column


def fit_msg_id(msg_id: str) -> str:
    """``msg_id`` if it fits the column; else a prefix of it and a digest of the whole: the
    same for the same id, so JetStream still drops a repeat, and still readable."""
    if len(msg_id) <= MSG_ID_MAX:
        return msg_id
    digest = hashlib.sha256(msg_id.encode()).hexdigest()
    return f"{msg_id[: MSG_ID_MAX - len(digest) - 1]}~{digest}"


async def enqueue(
    session: AsyncSession, table: Table, subject: str, payload: dict[str, Any], msg_id: str
) -> None:
    await session.execute(
        insert(table).values(subject=subject, payload=payload, msg_id=fit_msg_id(msg_id))
    )


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: where, its dedup id, its bytes."""

    subject: str
    msg_id: str
    data: bytes


ToMessage = Callable[[Row[Any]], Outgoing]


def outbox_message(row: Row[Any]) -> Outgoing:
    """A row of an :func:`outbox_table`, its payload read as JSON text (the relay casts it):
    published as it is stored, not decoded and encoded again."""
    return Outgoing(row.subject, row.msg_id, row.payload.encode())


async def publish_in_order(
    js: JetStreamContext, messages: Sequence[Outgoing], ack_timeout_s: float
) -> int:
    """Publish ``messages`` pipelined, in order; how many from the first on were acked.

    One connection sends them in order, so the stream stores them in order. Only the
    acknowledged prefix counts as published: the rest is sent again later (and dropped by
    JetStream as duplicates if it did arrive).
    """
    context = correlation_headers()
    acks: list[asyncio.Future[PubAck]] = []
    try:
        for m in messages:
            headers = {**context, bus.MSG_ID: m.msg_id}
            acks.append(await js.publish_async(m.subject, m.data, headers=headers))
    except Exception as exc:
        log.warning("outbox.publish_failed", error=f"{type(exc).__name__}: {exc}")
    if not acks:
        return 0
    _done, late = await asyncio.wait(acks, timeout=ack_timeout_s)
    for future in late:
        future.cancel()  # frees its slot in the client's in-flight window
    acked = 0
    for future in acks:
        if future.cancelled() or future.exception() is not None:
            break
        acked += 1
    return acked


def relay_lock_key(table: Table) -> int:
    """The advisory lock an exclusive relay of ``table`` holds while it works."""
    return zlib.crc32(f"waypost-relay-{table.fullname}".encode())


class OutboxRelay:
    """Publishes a table's unpublished rows in key order, then marks them published.

    With ``exclusive``, one relay at a time (in any process) works on the table, taking a
    transaction-scoped advisory lock, so rows reach the stream in key order. Otherwise
    relays share the rows with ``SKIP LOCKED`` and order holds within each batch.
    With ``keep_published_s``, published rows older than that are deleted now and then.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        table: Table,
        js: JetStreamContext,
        poll_s: float = 1.0,
        batch: int = 500,
        *,
        to_message: ToMessage = outbox_message,
        exclusive: bool = False,
        ack_timeout_s: float = 10.0,
        keep_published_s: float | None = None,
        on_published: Callable[[int], None] | None = None,
        pool: asyncpg.Pool | None = None,
    ) -> None:
        """With ``pool`` (an :func:`outbox_table` only), rows are read, published and marked
        in plain asyncpg: no ORM rows, the payload published as the text it is stored as."""
        if pool is not None and to_message is not outbox_message:
            raise ValueError("a pool relays outbox tables only (the default to_message)")
        self._sessions = sessions
        self._pool = pool
        self._table = table
        (self._key,) = table.primary_key.columns
        self._js = js
        self._poll_s = poll_s
        self._batch = batch
        self._to_message = to_message
        self._exclusive = exclusive
        self._ack_timeout_s = ack_timeout_s
        self._keep_published_s = keep_published_s
        self._on_published = on_published
        self._lock_key = relay_lock_key(table)
        # The default message is an outbox row's payload: read it as text, as it is stored.
        self._payload_as_text = to_message is outbox_message
        self._wake = asyncio.Event()
        self._pruned_at = 0.0

    def notify(self) -> None:
        """Call after committing rows: publish now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                while await self.relay_once() == self._batch:
                    pass
                await self._prune_now_and_then()
            except Exception as exc:
                log.warning("outbox.relay_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)
            self._wake.clear()

    async def relay_once(self) -> int:
        """Publish one batch; returns how many rows it published."""
        if self._pool is not None:
            published, found = await self._relay_raw(self._pool)
        else:
            published, found = await self._relay_orm()
        if published < found:
            log.warning("outbox.partly_published", table=self._table.fullname, rows=found,
                        published=published)  # fmt: skip
        if published and self._on_published is not None:
            self._on_published(published)
        return published

    async def _relay_orm(self) -> tuple[int, int]:
        async with self._sessions() as session, session.begin():
            if self._exclusive and not await self._take_turn(session):
                return 0, 0
            rows = (await session.execute(self._unpublished())).all()
            messages = [self._to_message(row) for row in rows]
            published = await publish_in_order(self._js, messages, self._ack_timeout_s)
            if published:
                await self._mark(session, [row._mapping[self._key] for row in rows[:published]])
        return published, len(rows)

    async def _relay_raw(self, pool: asyncpg.Pool) -> tuple[int, int]:
        """The same in plain asyncpg, for an :func:`outbox_table` on a hot path."""
        table, lock = self._table.fullname, "" if self._exclusive else " FOR UPDATE SKIP LOCKED"
        async with pool.acquire() as conn, conn.transaction():
            if self._exclusive and not await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1)", self._lock_key
            ):
                return 0, 0
            rows = await conn.fetch(
                f"SELECT id, subject, msg_id, payload::text AS payload FROM {table} "
                f"WHERE published_at IS NULL ORDER BY id LIMIT $1{lock}",
                self._batch,
            )
            messages = [Outgoing(r["subject"], r["msg_id"], r["payload"].encode()) for r in rows]
            published = await publish_in_order(self._js, messages, self._ack_timeout_s)
            if published:
                await conn.execute(
                    f"UPDATE {table} SET published_at = now() WHERE id = ANY($1::bigint[])",
                    [r["id"] for r in rows[:published]],
                )
        return published, len(rows)

    async def _mark(self, session: AsyncSession, keys: list[Any]) -> None:
        # One array parameter rather than IN (...): the same statement whatever the count.
        marked = bindparam("keys", keys, type_=ARRAY(self._key.type))
        await session.execute(
            update(self._table).where(self._key == any_(marked)).values(published_at=func.now())
        )

    def _unpublished(self) -> Select[Any]:
        columns = [
            cast(c, Text).label(c.name) if c.name == "payload" and self._payload_as_text else c
            for c in self._table.c
        ]
        query = (
            select(*columns)
            .where(self._table.c.published_at.is_(None))
            .order_by(self._key)
            .limit(self._batch)
        )
        return query if self._exclusive else query.with_for_update(skip_locked=True)

    async def _take_turn(self, session: AsyncSession) -> bool:
        """Whether this relay holds the table until its transaction ends."""
        taken = await session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": self._lock_key}
        )
        return bool(taken)

    async def _prune_now_and_then(self) -> None:
        if self._keep_published_s is None:
            return
        if time.monotonic() - self._pruned_at < min(60.0, self._keep_published_s):
            return
        self._pruned_at = time.monotonic()
        while await self.prune_once() > 0:
            pass

    async def prune_once(self) -> int:
        """Delete the rows published more than ``keep_published_s`` ago among the oldest
        few thousand; looking at the oldest only keeps this cheap however long the table."""
        keep = timedelta(seconds=self._keep_published_s or 0.0)
        t = self._table
        oldest = select(self._key, t.c.published_at).order_by(self._key).limit(self._batch * 10)
        window = oldest.subquery()
        expired = select(window.c[self._key.name]).where(window.c.published_at < func.now() - keep)
        async with self._sessions() as session, session.begin():
            result = await session.execute(delete(t).where(self._key.in_(expired)))
        assert isinstance(result, CursorResult)
        return int(result.rowcount)


@asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    task = asyncio.create_task(relay.run(), name="outbox-relay")
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
