"""The outbox publishes exactly what committed, once, even across a crash mid-relay."""

from __future__ import annotations

from contextlib import suppress

import pytest
from nats.aio.client import Client as NATS
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import bus, db, outbox
from shared.topology import StreamSpec
from tests.conftest import Servers
from tests.helpers import eventually


@pytest.mark.parametrize("plain", [False, True], ids=["orm", "asyncpg"])
async def test_committed_rows_are_published_once_and_rolled_back_ones_never(
    engine: AsyncEngine, table: Table, stream: StreamSpec, nc: NATS, servers: Servers,
    plain: bool,
) -> None:  # fmt: skip
    sessions = db.make_sessionmaker(engine)
    subject = stream.subjects[0].replace(">", "changed")
    async with db.transaction(sessions) as session:
        await outbox.enqueue(session, table, subject, {"n": 1}, "m-1")
        await outbox.enqueue(session, table, subject, {"n": 2}, "m-2")
    with suppress(RuntimeError):
        async with db.transaction(sessions) as session:
            await outbox.enqueue(session, table, subject, {"n": 3}, "m-3")
            raise RuntimeError("the business transaction fails")

    js = nc.jetstream()
    # A relay that died after publishing but before marking: its rows are published again.
    for msg_id, n in (("m-1", 1),):
        await bus.publish(js, subject, {"n": n}, msg_id=msg_id)
    pool = await db.create_raw_pool(servers.database_url, 2) if plain else None
    relay = outbox.OutboxRelay(sessions, table, js, poll_s=0.05, pool=pool)
    async with outbox.running(relay):

        async def drained() -> bool:
            async with sessions() as s:
                left = await s.scalar(select(table.c.id).where(table.c.published_at.is_(None)))
            return left is None

        await eventually(drained, "the relay to publish every row")

    info = await js.stream_info(stream.name)
    assert info.state.messages == 2
    sub = await js.pull_subscribe(subject, stream=stream.name)
    payloads = [bus.decode(m) for m in await sub.fetch(10, timeout=2)]
    assert payloads == [{"n": 1}, {"n": 2}]
    if pool is not None:
        await pool.close()
