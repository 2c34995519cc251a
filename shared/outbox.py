"""Transactional outbox: messages written in the same transaction as the state they
announce, published after commit by a relay, so nothing is published that rolled back
and nothing committed is lost.

Each service that publishes has an ``outbox`` table in its own schema. ``enqueue`` adds a
row inside the caller's transaction; the relay publishes unpublished rows in id order with
``Nats-Msg-Id`` = the row's ``msg_id`` (a crash between publish and marking only causes a
duplicate that JetStream drops) and marks them. It wakes on ``notify`` after a commit and
also polls, which covers rows left by a crashed process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from nats.js import JetStreamContext
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import bus
from shared.logging import get_logger

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


async def enqueue(
    session: AsyncSession, table: Table, subject: str, payload: dict[str, Any], msg_id: str
) -> None:
    await session.execute(insert(table).values(subject=subject, payload=payload, msg_id=msg_id))


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        table: Table,
        js: JetStreamContext,
        poll_s: float = 1.0,
        batch: int = 500,
    ) -> None:
        self._sessions = sessions
        self._table = table
        self._js = js
        self._poll_s = poll_s
        self._batch = batch
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Call after committing rows: publish now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                while await self.relay_once() == self._batch:
                    pass
            except Exception as exc:
                log.warning("outbox.relay_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)
            self._wake.clear()

    async def relay_once(self) -> int:
        """Publish one batch; returns how many rows it published."""
        t = self._table
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(t.c.id, t.c.msg_id, t.c.subject, t.c.payload)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.id)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                await bus.publish(self._js, row.subject, row.payload, msg_id=row.msg_id)
            if rows:
                await session.execute(
                    update(t)
                    .where(t.c.id.in_([r.id for r in rows]))
                    .values(published_at=func.now())
                )
        return len(rows)


@asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    task = asyncio.create_task(relay.run(), name="outbox-relay")
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
