"""Plans that hold as tables grow: a prepared statement run on a fresh, nearly empty table
must still use its index once the table holds many rows, before anything analyzes it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text

from shared import db
from tests.conftest import Servers

ROWS = 20_000
# The runtime's profile lock, on a table shaped like runtime.profiles.
LOCK = (
    "SELECT profile_id, attributes FROM {t} WHERE workspace_id = $1"
    " AND profile_id = ANY($2::text[]) ORDER BY profile_id FOR UPDATE"
)


@pytest.fixture
async def table(servers: Servers) -> AsyncIterator[str]:
    name = f"public.plans_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(db.asyncpg_dsn(servers.database_url))
    try:
        await conn.execute(
            f"CREATE TABLE {name} (workspace_id varchar(64), profile_id varchar(200),"
            " attributes jsonb NOT NULL DEFAULT '{}', PRIMARY KEY (workspace_id, profile_id))"
            " WITH (autovacuum_enabled = false)"
        )
        yield name
        await conn.execute(f"DROP TABLE {name}")
    finally:
        await conn.close()


async def _plan_after_growth(conn: asyncpg.Connection, table: str) -> str:
    """Prepare and run the lock while ``table`` is empty (long enough for a generic plan to
    be chosen), fill it without analyzing, then explain the same prepared statement."""
    await conn.execute(f"PREPARE lock_q(text, text[]) AS {LOCK.format(t=table)}")
    try:
        for _ in range(10):
            async with conn.transaction():
                await conn.execute("EXECUTE lock_q('w', ARRAY['p1', 'p2'])")
        await conn.execute(
            f"INSERT INTO {table} (workspace_id, profile_id)"
            f" SELECT 'w', 'p' || g FROM generate_series(1, {ROWS}) AS g"
        )
        rows = await conn.fetchval("EXPLAIN (FORMAT JSON) EXECUTE lock_q('w', ARRAY['p1', 'p2'])")
        plan = json.loads(rows) if isinstance(rows, str) else rows
        return _scan(plan[0]["Plan"])
    finally:
        await conn.execute("DEALLOCATE lock_q")


def _scan(node: dict[str, object]) -> str:
    """How the table is reached: the scan node and the condition its index is searched by."""
    if "Relation Name" in node:
        return f"{node['Node Type']}: {node.get('Index Cond', '')}"
    children = node.get("Plans", [])
    assert isinstance(children, list)
    return " / ".join(_scan(child) for child in children)


async def test_a_plain_connection_keeps_a_stale_plan(servers: Servers, table: str) -> None:
    """Why the setting exists: PostgreSQL's default caches the plan made on the empty table."""
    conn = await asyncpg.connect(db.asyncpg_dsn(servers.database_url))
    try:
        plan = await _plan_after_growth(conn, table)
    finally:
        await conn.close()
    assert "profile_id" not in plan, plan  # every row of the workspace is read and filtered


async def test_the_raw_pool_plans_for_the_table_as_it_is(servers: Servers, table: str) -> None:
    pool = await db.create_raw_pool(servers.database_url, 1)
    try:
        async with pool.acquire() as conn:
            plan = await _plan_after_growth(conn, table)
    finally:
        await pool.close()
    assert plan.startswith("Index Scan"), plan
    assert "profile_id" in plan, plan


async def test_the_engine_plans_for_the_table_as_it_is(servers: Servers, table: str) -> None:
    engine = db.create_engine(servers.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            mode = (await conn.execute(text("SHOW plan_cache_mode"))).scalar_one()
    finally:
        await engine.dispose()
    assert mode == "force_custom_plan"


async def test_migrations_leave_no_table_without_statistics(servers: Servers) -> None:
    conn = await asyncpg.connect(db.asyncpg_dsn(servers.database_url))
    try:
        blind = await conn.fetch(
            "SELECT schemaname, relname FROM pg_stat_user_tables"
            " WHERE schemaname IN ('gateway', 'designer', 'runtime', 'scheduler', 'activator')"
            " AND last_analyze IS NULL AND last_autoanalyze IS NULL"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in blind] == []
