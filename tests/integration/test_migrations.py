"""One alembic history per service schema; concurrent upgrades wait for each other."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from services.designer.bootstrap import ensure_bootstrap
from services.designer.keys import hash_key
from services.designer.schemas import WorkspaceSettingsBody
from shared import db
from tests.conftest import Servers
from waypost.cli import MIGRATED, migrate_all

SCHEMAS = [package.rsplit(".", 1)[-1] for package in MIGRATED]


def _dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
async def empty_database(servers: Servers) -> AsyncIterator[str]:
    """A brand-new database on the test server; yields its SQLAlchemy URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_dsn(servers.database_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(servers.database_url).set(database=name).render_as_string(False)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _versions(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(_dsn(url))
    try:
        return {
            schema: await conn.fetchval(f'SELECT version_num FROM "{schema}".alembic_version')
            for schema in SCHEMAS
        }
    finally:
        await conn.close()


async def test_each_service_has_its_own_history(empty_database: str) -> None:
    await asyncio.to_thread(migrate_all, empty_database)
    versions = await _versions(empty_database)
    assert set(versions) == {"designer", "runtime", "scheduler", "activator", "gateway"}
    assert all(versions.values())
    await asyncio.to_thread(migrate_all, empty_database)  # a second run changes nothing
    assert await _versions(empty_database) == versions


async def test_concurrent_migrate_commands_both_succeed(empty_database: str) -> None:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "waypost", "migrate", "--database-url", empty_database],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    results = await asyncio.gather(asyncio.to_thread(run), asyncio.to_thread(run))
    for result in results:
        assert result.returncode == 0, result.stderr
    assert all((await _versions(empty_database)).values())


async def test_bootstrap_creates_workspace_and_one_key_once(empty_database: str) -> None:
    await asyncio.to_thread(migrate_all, empty_database)
    engine = db.create_engine(empty_database, pool_size=1)
    sessions = db.make_sessionmaker(engine)
    try:
        async with db.transaction(sessions) as session:
            first = await ensure_bootstrap(session, None)
        async with db.transaction(sessions) as session:
            again = await ensure_bootstrap(session, None)
        async with db.transaction(sessions) as session:
            given = await ensure_bootstrap(session, "wp_given-by-operator")
    finally:
        await engine.dispose()

    assert first.new_key is not None
    assert first.new_key.startswith("wp_")
    assert again.new_key is None
    assert again.workspace_id == first.workspace_id == given.workspace_id
    conn = await asyncpg.connect(_dsn(empty_database))
    try:
        rows = await conn.fetch("SELECT key_hash, role FROM designer.api_keys")
        workspaces = await conn.fetchval("SELECT count(*) FROM designer.workspaces")
    finally:
        await conn.close()
    assert workspaces == 1
    assert {r["key_hash"] for r in rows} == {
        hash_key(first.new_key),
        hash_key("wp_given-by-operator"),
    }
    assert {r["role"] for r in rows} == {"admin"}
    assert first.new_key not in {r["key_hash"] for r in rows}


async def test_workspaces_from_before_event_triggers_do_not_require_them(
    empty_database: str,
) -> None:
    from shared.migrations import upgrade

    await asyncio.to_thread(upgrade, "services.designer", empty_database, "0004")
    conn = await asyncpg.connect(_dsn(empty_database))
    try:
        await conn.execute(
            "INSERT INTO designer.workspaces (id, name, is_bootstrap) VALUES "
            "('old1', 'with settings', false), ('old2', 'without', false)"
        )
        await conn.execute(
            "INSERT INTO designer.workspace_settings (workspace_id, settings) "
            """VALUES ('old1', '{"default_timezone": "Asia/Tokyo"}')"""
        )
        await asyncio.to_thread(upgrade, "services.designer", empty_database)
        await conn.execute(
            "INSERT INTO designer.workspaces (id, name, is_bootstrap) VALUES ('new', 'n', false)"
        )
        rows = await conn.fetch("SELECT workspace_id, settings FROM designer.workspace_settings")
    finally:
        await conn.close()
    settings = {r["workspace_id"]: json.loads(r["settings"]) for r in rows}
    assert settings == {
        "old1": {"default_timezone": "Asia/Tokyo", "require_event_triggers": False},
        "old2": {"require_event_triggers": False},
    }  # a new workspace has no row: the defaults, where the check is on
    assert WorkspaceSettingsBody.model_validate({}).require_event_triggers is True
