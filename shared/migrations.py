"""Alembic, one history per service schema, driven from code.

Each service keeps ``migrations/`` beside its models; its ``env.py`` calls
:func:`run_env` with its schema and metadata. :func:`upgrade` applies one service's
history; a Postgres advisory lock makes concurrent upgrades (replicas starting together)
wait for each other instead of racing. Tables never analyzed get their first statistics.
"""

from __future__ import annotations

import asyncio
import zlib

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(package: str, database_url: str) -> Config:
    """Config for the history in ``<package>/migrations``."""
    cfg = Config()
    cfg.set_main_option("script_location", f"{package}:migrations")
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(package: str, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(package, database_url), revision)


def run_env(schema: str, metadata: MetaData) -> None:
    """Body of a service's ``env.py``: online migrations on the async engine."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    asyncio.run(_run_async(url, schema, metadata))


async def _run_async(url: str, schema: str, metadata: MetaData) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run_sync, schema, metadata)
            await conn.commit()
    finally:
        await engine.dispose()


def _run_sync(conn: Connection, schema: str, metadata: MetaData) -> None:
    lock_key = zlib.crc32(f"waypost-migrate-{schema}".encode())
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key})
    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=conn,
        target_metadata=metadata,
        version_table_schema=schema,
        include_schemas=True,
        include_name=lambda name, type_, _parent: type_ != "schema" or name == schema,
    )
    with context.begin_transaction():
        context.run_migrations()
    _analyze_new_tables(conn, schema)


def _analyze_new_tables(conn: Connection, schema: str) -> None:
    """Give tables that have never been analyzed their first statistics, so the first
    plans of a fresh deployment are not made blind; autovacuum keeps them current after."""
    never = conn.execute(
        text(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = :s"
            " AND last_analyze IS NULL AND last_autoanalyze IS NULL"
        ),
        {"s": schema},
    ).scalars()
    for table in list(never):
        conn.execute(text(f'ANALYZE "{schema}"."{table}"'))
