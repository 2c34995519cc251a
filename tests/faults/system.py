"""The whole system as separate OS processes on servers of its own, so that any part can be
killed with SIGKILL and started again: PostgreSQL, NATS (one node or a cluster) and every
service (one or more replicas each), configured as ``waypost up`` configures its children."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncpg
import httpx
from nats.aio.client import Client as NATS

from shared import bus, db
from shared.settings import ClockMode
from tests.conftest import Servers
from tests.helpers import eventually
from tests.stack import BOOTSTRAP_KEY, Stack
from waypost.cli import SERVICES, child_specs
from waypost.embedded import EmbeddedNats, EmbeddedNatsCluster, EmbeddedPostgres, free_port
from waypost.supervisor import FIRST_RESTART_S, ChildSpec, spawn

STOP_GRACE_S = 15.0


@dataclass
class Service:
    """One service process that can be killed and started again with the same settings.
    Like ``waypost up``'s supervisor, it starts again a process that exits on its own (e.g.
    NATS too slow to answer at its start); ``exits`` keeps those exit codes."""

    spec: ChildSpec
    proc: asyncio.subprocess.Process | None = None
    exits: list[int] = field(default_factory=list)
    _wanted: bool = False
    _watch: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.spec.env['WAYPOST_PORT']}"

    async def start(self) -> None:
        self._wanted = True
        self.proc = await spawn(self.spec)
        self._watch = asyncio.create_task(self._restart_on_exit(self.proc))

    async def _restart_on_exit(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._wanted and self.proc is proc:
            self.exits.append(code)
            await asyncio.sleep(FIRST_RESTART_S)  # the supervisor's pause, not a wait
            await self.start()

    async def kill(self) -> None:
        """``kill -9``: no shutdown code runs, nothing in hand is acked or committed."""
        self._wanted = False
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        self._wanted = False
        if self._watch is not None:
            self._watch.cancel()
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=STOP_GRACE_S)
        except TimeoutError:
            await self.kill()

    async def ready(self, http: httpx.AsyncClient) -> bool:
        try:
            return (await http.get(f"{self.url}/readyz", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass
class System:
    root: Path
    pg: EmbeddedPostgres
    nats: EmbeddedNats | EmbeddedNatsCluster
    services: list[Service] = field(default_factory=list)
    http: httpx.AsyncClient = field(default_factory=httpx.AsyncClient)

    @property
    def stack(self) -> Stack:
        """What :func:`tests.stack.new_workspace` and the workspace clients need."""
        urls = {s.name: s.url for s in self.services}
        return Stack(self.gateways[0], BOOTSTRAP_KEY, Servers(self.pg.url, self.nats.url), urls)

    @property
    def gateways(self) -> list[str]:
        return [s.url for s in self.services if s.spec.argv[-1] == "gateway"]

    def replicas(self, service: str) -> list[Service]:
        return [s for s in self.services if s.spec.argv[-1] == service]

    async def wait_ready(self, services: list[Service] | None = None) -> None:
        for service in services or self.services:
            await eventually(
                lambda s=service: s.ready(self.http), f"{service.name} to be ready", 120
            )

    async def restart(self, service: Service) -> None:
        """``kill -9`` then start again; returns once it answers ready."""
        await service.kill()
        await service.start()
        await self.wait_ready([service])

    async def rows(self, sql: str, *args: object) -> list[asyncpg.Record]:
        dsn = db.asyncpg_dsn(self.pg.url)
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    @asynccontextmanager
    async def bus(self) -> AsyncIterator[NATS]:
        nc = await bus.connect(self.nats.url, "fault-tests")
        try:
            yield nc
        finally:
            await nc.close()


async def _migrate(database_url: str, log_file: Path) -> None:
    env = {**os.environ, "WAYPOST_DATABASE_URL": database_url, "WAYPOST_ADMIN_KEY": BOOTSTRAP_KEY}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "waypost", "migrate", "--bootstrap",
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
        assert await proc.wait() == 0, f"migrations failed; see {log_file}"


@asynccontextmanager
async def running_system(
    root: Path, replicas: int = 1, nats_nodes: int = 1
) -> AsyncIterator[System]:
    """PostgreSQL, NATS and ``replicas`` of every service, each its own process; on the way
    out everything is stopped, whatever happened."""
    pg = EmbeddedPostgres(root / "postgres")
    nats: EmbeddedNats | EmbeddedNatsCluster = (
        EmbeddedNats(root / "nats") if nats_nodes == 1 else EmbeddedNatsCluster(root, nats_nodes)
    )
    system = System(root, pg, nats)
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(nats.start)
        await _migrate(pg.url, root / "logs" / "migrate.log")
        specs = child_specs(root, free_port(), ClockMode.REAL, pg.url, nats.url, replicas)
        extra = {"WAYPOST_STREAM_REPLICAS": str(nats_nodes), "WAYPOST_LOG_LEVEL": "INFO"}
        system.services = [Service(replace(s, env={**s.env, **extra})) for s in specs]
        for service in system.services:
            await service.start()
        await system.wait_ready()
        yield system
    finally:
        await asyncio.gather(*(s.stop() for s in system.services))
        await system.http.aclose()
        await asyncio.to_thread(nats.stop)
        await asyncio.to_thread(pg.stop)


__all__ = ["SERVICES", "Service", "System", "running_system"]
