"""Real PostgreSQL and NATS for the whole run, started by the same code as ``waypost up``.

Set WAYPOST_TEST_DATABASE_URL and WAYPOST_TEST_NATS_URL to run against servers of your own.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from nats.aio.client import Client as NATS

from shared import bus
from waypost.cli import migrate_all
from waypost.embedded import EmbeddedNats, EmbeddedPostgres

if TYPE_CHECKING:
    from tests.stack import Stack, Workspace


@dataclass(frozen=True)
class Servers:
    database_url: str
    nats_url: str


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with started_servers(
        tmp_path_factory.mktemp("servers"),
        os.environ.get("WAYPOST_TEST_DATABASE_URL"),
        os.environ.get("WAYPOST_TEST_NATS_URL"),
    ) as running:
        yield running


@contextmanager
def started_servers(
    root: Path, db_url: str | None = None, nats_url: str | None = None
) -> Iterator[Servers]:
    """PostgreSQL and NATS of their own under ``root`` (or the given ones), migrated.

    A test whose services must be the only consumers of the bus (a virtual-clock runtime
    that must own every partition) runs on servers of its own: services of the session's
    stack would otherwise share its durable consumers."""
    pg = None if db_url else EmbeddedPostgres(root / "postgres")
    nats = None if nats_url else EmbeddedNats(root / "nats")
    try:
        db_url = db_url or pg.start()  # type: ignore[union-attr]
        nats_url = nats_url or nats.start()  # type: ignore[union-attr]
        migrate_all(db_url)
        yield Servers(db_url, nats_url)
    finally:
        if nats is not None:
            nats.stop()
        if pg is not None:
            pg.stop()


@pytest.fixture
async def nc(servers: Servers) -> AsyncIterator[NATS]:
    client = await bus.connect(servers.nats_url, "tests")
    yield client
    await client.close()


@pytest.fixture(scope="session")
async def stack(servers: Servers) -> AsyncIterator[Stack]:
    from tests.stack import running_stack

    async with running_stack(servers) as running:
        yield running


@pytest.fixture
async def workspace(stack: Stack) -> Workspace:
    from tests.stack import new_workspace

    return await new_workspace(stack)
