"""Async SQLAlchemy engine and the one place transactions are committed; and a plain
asyncpg pool for a service's hot write path, where statements are few, fixed and fed
whole arrays, so an ORM's per-row work would be most of the cost."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import MetaData, event, make_url, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def schema_metadata(schema: str) -> MetaData:
    """Metadata for a service's declarative base: every table in the service's own schema."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


# Every statement is planned for its own parameters. A prepared statement's cached generic
# plan is made from the statistics of the moment: on a freshly deployed database the tables
# are nearly empty, the plan is a sequential scan, and it stays one as the table grows until
# autovacuum happens to analyze it (at 30,000 profiles the runtime's profile lock took 35 ms
# instead of 0.5 ms). A custom plan reads the table's current size each time; planning these
# short statements costs far less than one wrong plan.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """Statement parameters are never put in error messages: one statement may hold the
    rows of many tenants (the gateway's group commit), and errors reach the logs.

    No pre-ping: it cost three round trips (BEGIN, a ping, ROLLBACK) on every checkout. A
    pooled connection whose backend went away (killed, or a PostgreSQL restart: the server
    closes the socket, and asyncpg notices while the connection sits idle) is replaced at
    checkout without a round trip (``_replace_closed``); one that dies silently is found
    on its first statement, which SQLAlchemy reports as a disconnect, invalidating the
    pool's older connections, and the caller's retry (a consumer's, or a client's after a
    503) gets fresh ones; ``pool_recycle`` bounds how old a connection gets. Returning a
    connection costs nothing either: its transaction has ended (committed or rolled back)
    and asyncpg's adapter rolls back only an open one."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        hide_parameters=True,
        connect_args={"server_settings": dict(SERVER_SETTINGS)},
    )
    event.listen(engine.sync_engine, "checkout", _replace_closed)
    return engine


def _replace_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection asyncpg already knows is closed; the pool then checks out
    another (or connects anew), with no statement sent."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if isinstance(driver, asyncpg.Connection) and driver.is_closed():
        raise DisconnectionError("the pooled connection was closed by the server")


def describe_error(exc: BaseException) -> str:
    """What to log of a failed statement: the error's type and SQLSTATE, never its text,
    since a driver names the values it could not take (``invalid input for query argument
    $6: [...]``); errors that are not the database's with their message."""
    if isinstance(exc, DBAPIError):
        cause = exc.orig.__cause__ if exc.orig is not None else None
        inner = cause if cause is not None else exc.orig
        sqlstate = getattr(inner, "sqlstate", None) or getattr(exc.orig, "sqlstate", None)
        return f"{type(exc).__name__} ({type(inner).__name__}, SQLSTATE {sqlstate or 'none'})"
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return f"{type(exc).__name__} (SQLSTATE {getattr(exc, 'sqlstate', None) or 'none'})"
    return f"{type(exc).__name__}: {exc}"


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Commit on success, roll back on error. Service code below this only flushes."""
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def asyncpg_dsn(url: str) -> str:
    """The libpq form of a SQLAlchemy URL (``postgresql+asyncpg://`` -> ``postgresql://``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _json_codecs(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=dumps, decoder=json.loads, format="text"
        )


def dumps(value: object) -> str:
    """JSON text of ``value`` (datetimes as RFC 3339), fast; integers beyond 64 bits, which
    JSON allows and events may carry, go through the standard library instead.

    Decoding uses the standard library: orjson would turn such integers into floats."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, default=_isoformat)


def _isoformat(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


async def create_raw_pool(url: str, size: int = 10) -> asyncpg.Pool:
    """An asyncpg pool whose json/jsonb values are Python objects both ways."""
    pool = await asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=1,
        max_size=size,
        init=_json_codecs,
        reset=_nothing_to_reset,
        server_settings=dict(SERVER_SETTINGS),
    )
    assert pool is not None
    return pool


async def _nothing_to_reset(_conn: asyncpg.Connection) -> None:
    """What a raw pool does to a released connection beyond rolling back an open
    transaction (which asyncpg always does): nothing. asyncpg's default sends a reset query
    (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) on every release, a round trip per
    transaction, for session state these pools never make: their users run transactions
    only, with transaction-scoped locks, and set nothing on the session."""


@asynccontextmanager
async def closing(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def raw_transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """Commit on success, roll back on error, on one pooled connection."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn
