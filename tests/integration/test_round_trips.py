"""What a transaction costs on the wire, counted by a proxy in front of PostgreSQL: its
statements and nothing more (no ping on checkout, no reset on release); and a pooled
connection whose backend went away is replaced without the caller seeing an error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import db
from tests.conftest import Servers
from tests.helpers import eventually
from tests.pgwire import CountingProxy, counting_proxy
from tests.stack import Stack, Workspace, service_headers


@pytest.fixture
async def proxy(servers: Servers) -> AsyncIterator[CountingProxy]:
    async with counting_proxy(servers.database_url) as counting:
        yield counting


@pytest.fixture
async def engine(proxy: CountingProxy, servers: Servers) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(proxy.url(servers.database_url), pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _one_statement(engine: AsyncEngine) -> None:
    async with db.transaction(db.make_sessionmaker(engine)) as session:
        assert await session.scalar(text("SELECT 1")) == 1


async def test_an_orm_transaction_costs_begin_its_statement_and_commit(
    engine: AsyncEngine, proxy: CountingProxy
) -> None:
    await _one_statement(engine)  # connects, and prepares the statement once
    proxy.reset()
    for _ in range(3):
        await _one_statement(engine)
    # BEGIN, the statement, COMMIT: a pre-ping on checkout added three more (BEGIN, a
    # ping, ROLLBACK), and nothing is sent when the connection goes back to the pool.
    assert proxy.round_trips == 3 * 3, proxy.statements


async def test_a_raw_transaction_costs_begin_its_statement_and_commit(
    proxy: CountingProxy, servers: Servers
) -> None:
    async with db.closing(await db.create_raw_pool(proxy.url(servers.database_url), 1)) as pool:
        async with db.raw_transaction(pool) as conn:
            await conn.fetchval("SELECT 1")
        proxy.reset()
        for _ in range(3):
            async with db.raw_transaction(pool) as conn:
                assert await conn.fetchval("SELECT 1") == 1
        # asyncpg's default reset on release (advisory unlock, CLOSE ALL, UNLISTEN,
        # RESET ALL) was one more round trip per transaction.
        assert proxy.round_trips == 3 * 3, proxy.statements
        # A transaction that failed is still rolled back before the next one.
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with db.raw_transaction(pool) as conn:
                await conn.fetchval("SELECT 1 / 0")
        async with db.raw_transaction(pool) as conn:
            assert await conn.fetchval("SELECT 2") == 2


async def _terminate(servers: Servers, proxy: CountingProxy) -> None:
    """End every backend serving the proxy's connections, as a restart or a kill would."""
    admin = await asyncpg.connect(db.asyncpg_dsn(servers.database_url))
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE client_port = ANY($1::int[])",
            sorted(proxy.upstream_ports),
        )
    finally:
        await admin.close()
    assert ended >= 1


class Ends:
    """Which connections have ended, as asyncpg sees them (its termination listener)."""

    def __init__(self) -> None:
        self.watched = 0
        self.ended = 0

    def watch(self, conn: asyncpg.Connection) -> None:
        self.watched += 1
        conn.add_termination_listener(self._ended)

    def _ended(self, _conn: object) -> None:
        self.ended += 1

    async def all_ended(self) -> bool:
        return self.watched > 0 and self.ended == self.watched


async def test_a_pooled_connection_whose_backend_was_killed_is_replaced_unseen(
    engine: AsyncEngine, proxy: CountingProxy, servers: Servers
) -> None:
    ends = Ends()
    event.listen(engine.sync_engine, "connect", lambda c, _r: ends.watch(c.driver_connection))
    await _one_statement(engine)
    assert engine.sync_engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    await _terminate(servers, proxy)
    # The server closed the socket; the idle connection learns it without a statement.
    await eventually(ends.all_ended, "the pooled connection to see its backend gone")
    await _one_statement(engine)  # no error: replaced at checkout, no ping sent
    await _one_statement(engine)


async def test_a_raw_pool_replaces_a_connection_whose_backend_was_killed(
    proxy: CountingProxy, servers: Servers
) -> None:
    ends = Ends()
    async with db.closing(await db.create_raw_pool(proxy.url(servers.database_url), 1)) as pool:
        async with db.raw_transaction(pool) as conn:
            ends.watch(conn)
        await _terminate(servers, proxy)
        await eventually(ends.all_ended, "the pooled connection to see its backend gone")
        async with db.raw_transaction(pool) as conn:
            assert await conn.fetchval("SELECT 1") == 1


async def test_the_services_carry_on_after_every_backend_is_killed(
    workspace: Workspace, servers: Servers
) -> None:
    """Every service's connections end at once (what a PostgreSQL restart does to them):
    the next events are accepted, applied and readable, with no ping on any checkout."""
    async with workspace.client() as c:
        r = await c.post("/v1/events", json={"profile_id": "before", "name": "signup"})
        assert r.status_code == 202, r.text
        await eventually(lambda: _found(c, "before"), "the first profile")
        admin = await asyncpg.connect(db.asyncpg_dsn(servers.database_url))
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
        finally:
            await admin.close()
        assert ended > 0

        async def accepted() -> bool:
            r = await c.post("/v1/events", json={"profile_id": "after", "name": "signup"})
            assert r.status_code in (202, 503), r.text
            return r.status_code == 202

        await eventually(accepted, "an event to be accepted again")
        await eventually(lambda: _found(c, "after"), "the event to be applied")


async def _found(c: httpx.AsyncClient, profile: str) -> bool:
    return (await c.get(f"/v1/profiles/{profile}")).status_code == 200


async def _relay_rounds(url: str, table: str, woken_by: str, found: str) -> float:
    async with httpx.AsyncClient(base_url=url, headers=service_headers()) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    line = (
        f'waypost_outbox_relay_rounds_total{{found="{found}",table="{table}",'
        f'woken_by="{woken_by}"}} '
    )
    return sum(float(x[len(line) :]) for x in r.text.splitlines() if x.startswith(line))


async def test_events_that_command_nothing_wake_no_relay(
    workspace: Workspace, stack: Stack
) -> None:
    """Events no journey acts on write nothing to the runtime's outbox, so its relay is
    not woken after their batches (it was, for a round that found nothing)."""
    runtime = stack.service_urls["runtime"]
    before = await _relay_rounds(runtime, "runtime.outbox", "notify", "none")
    profiles = [f"quiet-{i}" for i in range(20)]
    async with workspace.client() as c:
        for profile in profiles:
            r = await c.post("/v1/events", json={"profile_id": profile, "name": "page_viewed"})
            assert r.status_code == 202, r.text
        for profile in profiles:
            await eventually(lambda p=profile: _found(c, p), f"{profile} to be applied")
    assert await _relay_rounds(runtime, "runtime.outbox", "notify", "none") == before
