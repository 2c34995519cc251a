"""Fixtures of the outbox tests: an engine, an outbox table in a schema of its own and a
stream of its own, each removed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from sqlalchemy import MetaData, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import bus, db, outbox
from shared.topology import StreamSpec
from tests.conftest import Servers


@pytest.fixture
async def engine(servers: Servers) -> AsyncIterator[AsyncEngine]:
    e = db.create_engine(servers.database_url, pool_size=2)
    yield e
    await e.dispose()


@pytest.fixture
async def table(engine: AsyncEngine) -> AsyncIterator[Table]:
    schema = f"outbox_{uuid.uuid4().hex[:8]}"
    t = outbox.outbox_table(MetaData(schema=schema))
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(t.metadata.create_all)
    yield t
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
async def stream(nc: NATS) -> AsyncIterator[StreamSpec]:
    tag = uuid.uuid4().hex[:8]
    spec = StreamSpec(f"OB_{tag}", (f"ob{tag}.>",), "outbox test")
    await bus.ensure_streams(nc.jetstream(), [spec])
    yield spec
    await nc.jetstream().delete_stream(spec.name)
