"""The system under test: throwaway PostgreSQL and NATS, ``waypost <service>`` children on
them, a lean HTTP client for load, and what the bench sets up through the API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import Report, progress
from shared import db
from waypost.embedded import EmbeddedNats, EmbeddedPostgres, die_with_parent, free_port

ADMIN_KEY = "wp_bench-admin-key"
PROFILE_ENV = "WAYPOST_BENCH_PROFILE"
UNLIMITED = {"WAYPOST_RATE_LIMIT_PER_S": "1e9", "WAYPOST_RATE_LIMIT_BURST": "1000000000"}


def proc_status_kib(pid: int, field: str) -> int:
    """A ``kB`` line of ``/proc/<pid>/status`` (VmRSS now, VmHWM the peak), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


class Processes:
    """``waypost <service>`` children on the bench's servers; stopped together, and killed
    by the kernel if the bench itself dies."""

    def __init__(self, data_dir: Path, database_url: str, nats_url: str) -> None:
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        self.env |= {
            "WAYPOST_DATABASE_URL": database_url,
            "WAYPOST_NATS_URL": nats_url,
            "WAYPOST_LOG_LEVEL": "WARNING",
            "WAYPOST_ADMIN_KEY": ADMIN_KEY,
            "WAYPOST_ALLOW_PRIVATE_CONNECTORS": "true",  # the sinks are on loopback
            "WAYPOST_SERVICE_TOKEN": secrets.token_urlsafe(32),  # the children show each other
        }
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.profilers: list[subprocess.Popen[bytes]] = []
        # ``python -m bench --profile DIR``: py-spy samples every child while it runs.
        profile = os.environ.get(PROFILE_ENV)
        self.profile_dir = Path(profile) if profile else None

    def run(self, *args: str) -> None:
        command = [sys.executable, "-m", "waypost", *args]
        subprocess.run(command, env=self.env, check=True, capture_output=True)

    def start(
        self, service: str, env: Mapping[str, str] | None = None, port: int = 0,
        name: str | None = None,
    ) -> str:  # fmt: skip
        """Start ``waypost <service>`` with ``env`` added, on ``port`` (a free one by
        default), known as ``name`` (the service's by default); its base URL."""
        port = port or free_port()
        name = name or service
        with (self.data_dir / f"{name}.log").open("ab") as log:
            self.children[name] = subprocess.Popen(
                [sys.executable, "-m", "waypost", service],
                env=self.env | dict(env or {}) | {"WAYPOST_PORT": str(port)},
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent,
            )
        if self.profile_dir is not None:
            self._profile(name)
        return f"http://127.0.0.1:{port}"

    def _profile(self, service: str) -> None:
        """py-spy on the child until it exits: collapsed stacks (one line a stack and its
        sample count) in ``<profile dir>/<part>-<service>.txt``."""
        assert self.profile_dir is not None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{self.data_dir.name}-{service}.txt"
        command = ["py-spy", "record", "--pid", str(self.pid(service)), "--format", "raw",
                   "--rate", "200", "--nonblocking", "--output", str(out)]  # fmt: skip
        self.profilers.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )

    def pid(self, service: str) -> int:
        return self.children[service].pid

    def rss(self, service: str) -> int:
        """Resident memory of a running child now, in bytes."""
        return proc_status_kib(self.pid(service), "VmRSS") * 1024

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each running child has used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        found = {}
        for name, child in self.children.items():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()
                found[name] = (int(fields[11]) + int(fields[12])) / ticks
        return found

    def peaks(self) -> dict[str, int]:
        """Each running child's resident-memory high-water mark (VmHWM), in bytes."""
        found = {}
        for name, child in self.children.items():
            with contextlib.suppress(OSError, LookupError):
                found[name] = proc_status_kib(child.pid, "VmHWM") * 1024
        return found

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                log = self.data_dir / f"{name}.log"
                raise RuntimeError(f"{name} exited with {child.returncode}; see {log}")

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for profiler in self.profilers:  # each writes its file once its child is gone
            try:
                profiler.wait(30)
            except subprocess.TimeoutExpired:
                profiler.kill()


@dataclass
class Servers:
    database_url: str
    nats_url: str
    children: Processes


@contextlib.asynccontextmanager
async def servers(data_dir: Path, report: Report, part: str) -> AsyncIterator[Servers]:
    """PostgreSQL and NATS for one part of the run, the services it starts, all stopped on
    the way out (error and Ctrl-C included); each child's peak memory goes to the report."""
    pg, nats = EmbeddedPostgres(data_dir / "postgres"), EmbeddedNats(data_dir / "nats")
    progress(f"starting PostgreSQL and NATS for {part}")
    try:
        database_url = await asyncio.to_thread(pg.start)
        nats_url = await asyncio.to_thread(nats.start)
        children = Processes(data_dir, database_url, nats_url)
        try:
            yield Servers(database_url, nats_url, children)
            for service, peak in children.peaks().items():
                report.record_peak(service, peak, part)
        finally:
            await asyncio.to_thread(children.stop)
    finally:
        await asyncio.to_thread(nats.stop)
        await asyncio.to_thread(pg.stop)


async def wait_until(
    done: Callable[[], Awaitable[tuple[int, int]]],
    what: str,
    timeout_s: float,
    children: Processes,
) -> None:
    """Poll ``done`` (reached, wanted) until reached >= wanted; progress every 5 s; fail on a
    dead child or the deadline."""
    start = last_said = time.monotonic()
    while True:
        reached, wanted = await done()
        if reached >= wanted:
            return
        children.check_alive()
        now = time.monotonic()
        if now - start > timeout_s:
            raise RuntimeError(f"{what}: {reached:,} of {wanted:,} after {timeout_s:.0f} s")
        if now - last_said >= 5:
            progress(f"{what}: {reached:,} of {wanted:,}")
            last_said = now
        await asyncio.sleep(0.1)


async def wait_healthy(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            try:
                if (await client.get(f"{url}/healthz", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def secrets_key() -> str:
    from services.designer.secrets import SecretBox

    return SecretBox.new_key()


async def start_designer_and_gateway(children: Processes) -> tuple[str, str]:
    """Migrated database, bootstrap workspace with the bench's admin key; (designer, gateway)."""
    await asyncio.to_thread(children.run, "migrate", "--bootstrap")
    designer = children.start("designer", {"WAYPOST_SECRETS_KEY": secrets_key()})
    gateway = children.start("gateway", {"WAYPOST_DESIGNER_URL": designer} | UNLIMITED)
    await wait_healthy(designer)
    await wait_healthy(gateway)
    return designer, gateway


SERVICES = ("designer", "runtime", "scheduler", "activator", "gateway")


async def start_all(children: Processes) -> dict[str, str]:
    """Migrated database, bootstrap workspace, every service; each one's base URL."""
    await asyncio.to_thread(children.run, "migrate", "--bootstrap")
    ports = {service: free_port() for service in SERVICES}
    urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
    peers = {f"WAYPOST_{s.upper()}_URL": urls[s] for s in SERVICES if s != "gateway"}
    own: dict[str, dict[str, str]] = {
        "designer": {"WAYPOST_SECRETS_KEY": secrets_key()},
        "gateway": UNLIMITED,
    }
    for service in SERVICES:
        children.start(service, peers | own.get(service, {}), ports[service])
    for url in urls.values():
        await wait_healthy(url)
    return urls


async def connect_db(database_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(db.asyncpg_dsn(database_url))


class Connection:
    """A minimal HTTP/1.1 keep-alive connection for the load generator: a general client
    costs more CPU per request than the gateway does, and would be what is measured."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parsed = httpx.URL(url)
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        status = int((await self._reader.readline()).split()[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    async def post_accepted(self, path: str, body: bytes) -> None:
        status, answer = await self.post(path, body)
        if status != 202:
            raise RuntimeError(f"{path} answered {status}: {answer[:200]!r}")

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


async def post_all(url: str, bodies: Sequence[tuple[str, Any]], clients: int) -> float:
    """Post every (path, body) over ``clients`` concurrent connections; seconds until the
    last 202."""
    queue = [(path, json.dumps(body).encode()) for path, body in reversed(bodies)]
    connections = [await Connection.open(url) for _ in range(clients)]

    async def client_loop(connection: Connection) -> None:
        while queue:
            path, body = queue.pop()
            await connection.post_accepted(path, body)

    try:
        start = asyncio.get_running_loop().time()
        await asyncio.gather(*(client_loop(c) for c in connections))
        return asyncio.get_running_loop().time() - start
    finally:
        for connection in connections:
            await connection.close()


class Api:
    """What the bench creates through the gateway as the bootstrap admin."""

    def __init__(self, gateway: str) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.client = httpx.AsyncClient(base_url=gateway, headers=headers, timeout=30)

    async def __aenter__(self) -> Api:
        # The bench's journeys use events it declares no triggers for.
        settings = {"require_event_triggers": False}
        answer = await self.client.put("/v1/workspace/settings", json=settings)
        if answer.status_code != 200:
            raise RuntimeError(f"PUT settings answered {answer.status_code}: {answer.text}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def create(self, path: str, body: dict[str, Any]) -> str:
        answer = await self.client.post(path, json=body)
        if answer.status_code != 201:
            raise RuntimeError(f"POST {path} answered {answer.status_code}: {answer.text}")
        ident: str = answer.json()["id"]
        return ident

    async def live_journey(self, body: dict[str, Any]) -> str:
        journey = await self.create("/v1/journeys", body)
        published = await self.client.post(f"/v1/journeys/{journey}/publish")
        if published.status_code != 200:
            raise RuntimeError(f"publish answered {published.status_code}: {published.text}")
        return journey

    async def connector(self, name: str, kind: str, config: dict[str, Any]) -> str:
        return await self.create("/v1/connectors", {"name": name, "type": kind, "config": config})

    async def template(self, name: str, channel: str) -> str:
        body = {"name": name, "channel": channel, "status": "ready", "body": "Hi {{ profile.id }}"}
        if channel == "email":
            body["subject"] = "Hello"
        return await self.create("/v1/templates", body)


async def bootstrap_workspace(conn: asyncpg.Connection) -> str:
    workspace: str = await conn.fetchval("SELECT id FROM designer.workspaces WHERE is_bootstrap")
    return workspace
