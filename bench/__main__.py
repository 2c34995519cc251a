"""``python -m bench [--quick] [--dir PATH]``: measure the raw limits, print a Markdown table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from shared.bus import MSG_ID, connect, ensure_streams
from shared.logging import configure_logging
from shared.migrations import upgrade
from shared.timers import TimerKind, TimerSchedule
from shared.topology import StreamSpec
from waypost.embedded import EmbeddedNats, EmbeddedPostgres, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "raw.json"
STREAM = StreamSpec("BENCH", ("bench.>",), "Throwaway stream for the benchmark")
SUBJECT = "bench.events.w1.0"
DURABLE = "bench"
PAYLOAD_BYTES = 300
EVENT_COLUMNS = ("event_id", "profile_id", "name", "payload", "accepted_at")
STARTED = time.perf_counter()

Row = tuple[str, str, str, str, datetime]
T = TypeVar("T")


@dataclass(frozen=True)
class Counts:
    publish: int = 50_000
    publish_sync_always: int = 20_000
    insert_batched: int = 100_000
    insert_per_row: int = 3_000
    timers: int = 200_000
    in_flight: int = 256
    fetch_batch: int = 500
    insert_batch: int = 5_000
    claim_batch: int = 1_000
    ingest_batched: int = 100_000
    ingest_single: int = 10_000
    ingest_batch: int = 500
    ingest_batch_clients: int = 4
    ingest_single_clients: int = 64
    timers_pending: int = 1_000_000
    timer_backlog: int = 200_000
    timer_load: int = 100_000
    timer_load_per_s: int = 5_000
    timer_probes_per_s: int = 100
    timer_commands: int = 50_000

    def divided(self, by: int) -> Counts:
        """Fewer messages and rows; batch sizes and concurrency keep their shape."""
        return replace(
            self,
            publish=self.publish // by,
            publish_sync_always=self.publish_sync_always // by,
            insert_batched=self.insert_batched // by,
            insert_per_row=self.insert_per_row // by,
            timers=self.timers // by,
            ingest_batched=self.ingest_batched // by,
            ingest_single=self.ingest_single // by,
            timers_pending=self.timers_pending // by,
            timer_backlog=self.timer_backlog // by,
            timer_load=self.timer_load // by,
            timer_commands=self.timer_commands // by,
        )


@dataclass(frozen=True)
class Figure:
    figure: str
    value: float
    unit: str
    method: str


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    servers: dict[str, str] = field(default_factory=dict)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        progress(f"{figure.figure}: {figure.value:,.0f} {figure.unit}")


def progress(message: str) -> None:
    print(f"[bench {time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# JetStream


def event_body(size: int = PAYLOAD_BYTES) -> bytes:
    """A JSON event like the gateway accepts, padded to exactly ``size`` bytes."""
    body: dict[str, Any] = {
        "workspace": "w1",
        "profile_id": "prof-000042",
        "name": "page_viewed",
        "properties": {"url": "/pricing", "pad": ""},
    }
    unpadded = len(json.dumps(body, separators=(",", ":")))
    body["properties"]["pad"] = "x" * max(0, size - unpadded)
    return json.dumps(body, separators=(",", ":")).encode()


async def publish_all(js: JetStreamContext, count: int) -> float:
    """Publish ``count`` messages, each with its own msg id; seconds until all are acked."""
    body = event_body()
    start = time.perf_counter()
    futures = [
        await js.publish_async(SUBJECT, body, headers={MSG_ID: f"bench-{i}"}) for i in range(count)
    ]
    acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=600)
    elapsed = time.perf_counter() - start
    duplicates = sum(1 for ack in acks if ack.duplicate)
    if duplicates:
        raise RuntimeError(f"{duplicates} publishes were treated as duplicates")
    return elapsed


async def wait_ack_floor(js: JetStreamContext, last_seq: int) -> None:
    """Acks are fire-and-forget: wait until the server has recorded all of them."""
    while True:
        info = await js.consumer_info(STREAM.name, DURABLE)
        if info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= last_seq:
            return
        await asyncio.sleep(0.01)


async def consume_all(js: JetStreamContext, count: int, batch: int) -> float:
    """Fetch and ack ``count`` messages; seconds until the ack floor reaches the last one."""
    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=10_000)
    sub = await js.pull_subscribe(SUBJECT, durable=DURABLE, stream=STREAM.name, config=config)
    start = time.perf_counter()
    received = 0
    while received < count:
        msgs = await sub.fetch(batch, timeout=10)
        for msg in msgs:
            await msg.ack()
        received += len(msgs)
    await asyncio.wait_for(wait_ack_floor(js, count), timeout=60)
    elapsed = time.perf_counter() - start
    await sub.unsubscribe()
    return elapsed


async def open_jetstream(url: str, in_flight: int) -> tuple[NATS, JetStreamContext]:
    nc = await connect(url, "waypost-bench")
    js = nc.jetstream(publish_async_max_pending=in_flight)
    await ensure_streams(js, [STREAM])
    return nc, js


async def jetstream_figures(
    report: Report, data_dir: Path, counts: Counts, sync_always: bool
) -> None:
    count = counts.publish_sync_always if sync_always else counts.publish
    sync = "sync_interval always" if sync_always else "default sync"
    server = EmbeddedNats(data_dir, sync_always=sync_always)
    progress(f"starting NATS ({sync})")
    url = await asyncio.to_thread(server.start)
    try:
        nc, js = await open_jetstream(url, counts.in_flight)
        version = nc.connected_server_version
        report.servers["nats"] = f"nats-server {version.major}.{version.minor}.{version.patch}"
        try:
            progress(f"publishing {count:,} messages ({sync})")
            seconds = await publish_all(js, count)
            report.add(publish_figure(count, seconds, counts.in_flight, sync))
            progress(f"consuming {count:,} messages ({sync})")
            seconds = await consume_all(js, count, counts.fetch_batch)
            report.add(consume_figure(count, seconds, counts.fetch_batch, sync))
        finally:
            await nc.close()
    finally:
        server.stop()


def publish_figure(count: int, seconds: float, in_flight: int, sync: str) -> Figure:
    return Figure(
        f"JetStream publish ({sync})",
        per_second(count, seconds),
        "msgs/s",
        f"{count:,} msgs, {in_flight} in flight (publish_async), {PAYLOAD_BYTES} B, "
        f"unique Nats-Msg-Id, file storage, {sync}, 1 replica; until every ack",
    )


def consume_figure(count: int, seconds: float, batch: int, sync: str) -> Figure:
    return Figure(
        f"JetStream consume ({sync})",
        per_second(count, seconds),
        "msgs/s",
        f"{count:,} msgs, durable pull consumer, fetch {batch}, explicit ack per msg, "
        f"file storage, {sync}; until the ack floor reaches the last msg",
    )


# PostgreSQL


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def event_rows(count: int, prefix: str) -> list[Row]:
    now = datetime.now(UTC)
    payload = json.dumps({"url": "/pricing", "plan": "pro", "referrer": "newsletter"})
    return [
        (f"{prefix}-{i:09d}", f"prof-{i % 10_000:06d}", "page_viewed", payload, now)
        for i in range(count)
    ]


async def create_events_table(conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(
        f"CREATE TABLE {table} (event_id text PRIMARY KEY, profile_id text NOT NULL, "
        "name text NOT NULL, payload jsonb NOT NULL, accepted_at timestamptz NOT NULL)"
    )


def insert_sql(table: str) -> str:
    return f"INSERT INTO {table} ({', '.join(EVENT_COLUMNS)}) VALUES ($1, $2, $3, $4, $5)"


async def insert_batched(conn: asyncpg.Connection, counts: Counts) -> Figure:
    table, rows = "bench_events_batched", event_rows(counts.insert_batched, "b")
    await create_events_table(conn, table)
    start = time.perf_counter()
    for batch in chunks(rows, counts.insert_batch):
        async with conn.transaction():
            await conn.executemany(insert_sql(table), batch)
    seconds = time.perf_counter() - start
    return Figure(
        "PostgreSQL insert, executemany",
        per_second(len(rows), seconds),
        "rows/s",
        f"{len(rows):,} event rows (text pk, jsonb), executemany of {counts.insert_batch:,} "
        "rows, 1 commit per batch, fsync on, synchronous_commit on",
    )


async def insert_copy(conn: asyncpg.Connection, counts: Counts) -> Figure:
    table, rows = "bench_events_copy", event_rows(counts.insert_batched, "c")
    await create_events_table(conn, table)
    start = time.perf_counter()
    for batch in chunks(rows, counts.insert_batch):
        async with conn.transaction():
            await conn.copy_records_to_table(table, records=batch, columns=EVENT_COLUMNS)
    seconds = time.perf_counter() - start
    return Figure(
        "PostgreSQL insert, COPY",
        per_second(len(rows), seconds),
        "rows/s",
        f"{len(rows):,} event rows (text pk, jsonb), copy_records_to_table of "
        f"{counts.insert_batch:,} rows, 1 commit per batch, fsync on, synchronous_commit on",
    )


async def insert_per_row(conn: asyncpg.Connection, counts: Counts) -> Figure:
    table, rows = "bench_events_per_row", event_rows(counts.insert_per_row, "r")
    await create_events_table(conn, table)
    sql = insert_sql(table)
    start = time.perf_counter()
    for row in rows:
        await conn.execute(sql, *row)  # autocommit: one commit (one WAL flush) per row
    seconds = time.perf_counter() - start
    return Figure(
        "PostgreSQL insert, commit per row",
        per_second(len(rows), seconds),
        "rows/s",
        f"{len(rows):,} event rows (text pk, jsonb), 1 INSERT + 1 commit per row, "
        "fsync on, synchronous_commit on",
    )


CLAIM_SQL = (
    "SELECT timer_id FROM bench_timers WHERE state = 'pending' AND due_at <= now() "
    "ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED"
)
FIRE_SQL = "UPDATE bench_timers SET state = 'fired', fired_at = now() WHERE timer_id = ANY($1)"


async def create_due_timers(conn: asyncpg.Connection, count: int) -> None:
    await conn.execute(
        "CREATE TABLE bench_timers (timer_id bigint PRIMARY KEY, due_at timestamptz NOT NULL, "
        "state text NOT NULL, fired_at timestamptz)"
    )
    await conn.execute(
        "CREATE INDEX ix_bench_timers_due ON bench_timers (due_at) WHERE state = 'pending'"
    )
    first_due = datetime.now(UTC) - timedelta(hours=1)
    await conn.execute(
        "INSERT INTO bench_timers (timer_id, due_at, state) "
        "SELECT g, $2::timestamptz + g * interval '1 ms', 'pending' FROM generate_series(1, $1) g",
        count,
        first_due,
    )
    await conn.execute("ANALYZE bench_timers")


async def claim_once(conn: asyncpg.Connection, limit: int) -> int:
    async with conn.transaction():
        ids = [row["timer_id"] for row in await conn.fetch(CLAIM_SQL, limit)]
        if ids:
            await conn.execute(FIRE_SQL, ids)
    return len(ids)


async def claim_loop(conn: asyncpg.Connection, counts: Counts) -> Figure:
    await create_due_timers(conn, counts.timers)
    start = time.perf_counter()
    claimed = 0
    while batch := await claim_once(conn, counts.claim_batch):
        claimed += batch
    seconds = time.perf_counter() - start
    if claimed != counts.timers:
        raise RuntimeError(f"claimed {claimed} of {counts.timers} due timers")
    return Figure(
        "Timer claim loop (SKIP LOCKED)",
        per_second(claimed, seconds),
        "rows/s",
        f"{claimed:,} due rows, 1 worker: SELECT ... ORDER BY due_at FOR UPDATE SKIP LOCKED "
        f"LIMIT {counts.claim_batch:,} (partial index on pending), UPDATE state, commit",
    )


async def postgres_figures(report: Report, data_dir: Path, counts: Counts) -> None:
    server = EmbeddedPostgres(data_dir)
    progress("starting PostgreSQL")
    url = await asyncio.to_thread(server.start)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            version = await conn.fetchval("SHOW server_version")
            report.servers["postgres"] = f"PostgreSQL {version}"
            for measure in (insert_batched, insert_copy, insert_per_row, claim_loop):
                progress(f"running {measure.__name__}")
                report.add(await measure(conn, counts))
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(server.stop)


# Ingestion through the gateway

ADMIN_KEY = "wp_bench-admin-key"


class Processes:
    """``waypost <service>`` children on the bench's servers; stopped together."""

    def __init__(self, data_dir: Path, database_url: str, nats_url: str) -> None:
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        self.env |= {
            "WAYPOST_DATABASE_URL": database_url,
            "WAYPOST_NATS_URL": nats_url,
            "WAYPOST_LOG_LEVEL": "WARNING",
            "WAYPOST_ADMIN_KEY": ADMIN_KEY,
        }
        self.children: list[subprocess.Popen[bytes]] = []

    def run(self, *args: str) -> None:
        command = [sys.executable, "-m", "waypost", *args]
        subprocess.run(command, env=self.env, check=True, capture_output=True)

    def start(self, service: str, **env: str) -> str:
        port = free_port()
        with (self.data_dir / f"{service}.log").open("ab") as log:
            self.children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "waypost", service],
                    env=self.env | env | {"WAYPOST_PORT": str(port)},
                    stdout=log,
                    stderr=log,
                )
            )
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for child in self.children:
            child.terminate()
        for child in self.children:
            child.wait(30)


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


def bench_events(count: int) -> list[dict[str, Any]]:
    return [
        {"event_id": uuid.uuid4().hex, "profile_id": f"prof-{i * 7919 % 100_000:06d}",
         "name": "page_viewed", "properties": {"url": "/pricing", "plan": f"p{i % 10}"}}
        for i in range(count)
    ]  # fmt: skip


def event_bytes(events: Sequence[dict[str, Any]]) -> int:
    """Mean size of the events as JSON."""
    return sum(len(json.dumps(e)) for e in events) // max(1, len(events))


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

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def post_all(url: str, bodies: list[tuple[str, Any]], clients: int) -> float:
    """Post every (path, body) over ``clients`` concurrent connections; seconds until the
    last 202."""
    queue = [(path, json.dumps(body).encode()) for path, body in reversed(bodies)]
    connections = [await Connection.open(url) for _ in range(clients)]

    async def client_loop(connection: Connection) -> None:
        while queue:
            path, body = queue.pop()
            status, answer = await connection.post(path, body)
            if status != 202:
                raise RuntimeError(f"{path} answered {status}: {answer[:200]!r}")

    try:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for c in connections))
        return time.perf_counter() - start
    finally:
        for connection in connections:
            await connection.close()


async def commit_stats(url: str) -> tuple[float, float]:
    """(commits, events committed) so far, from the gateway's metrics."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    found = [
        re.search(rf"^waypost_ingest_commit_rows_{name} (\S+)$", text, re.MULTILINE)
        for name in ("count", "sum")
    ]
    commits, rows = (float(m.group(1)) if m else 0.0 for m in found)
    return commits, rows


async def wait_relayed(conn: asyncpg.Connection) -> None:
    """Poll until the relay has marked every inbox row published."""
    query = "SELECT count(*) FROM gateway.event_inbox WHERE published_at IS NULL"
    while True:
        if not await conn.fetchval(query):
            return
        await asyncio.sleep(0.01)


async def ingest_batched(url: str, conn: asyncpg.Connection, counts: Counts) -> list[Figure]:
    events = bench_events(counts.ingest_batched)
    bodies = [
        ("/v1/events/batch", {"events": batch}) for batch in chunks(events, counts.ingest_batch)
    ]
    before = await commit_stats(url)
    start = time.perf_counter()
    seconds = await post_all(url, bodies, counts.ingest_batch_clients)
    await wait_relayed(conn)
    relayed = time.perf_counter() - start
    commits, rows = (a - b for a, b in zip(await commit_stats(url), before, strict=True))
    method = (
        f"{len(events):,} events of {event_bytes(events)} B, POST /v1/events/batch of "
        f"{counts.ingest_batch}, {counts.ingest_batch_clients} concurrent clients, gateway in "
        f"its own process; until the last 202, each sent after its commit (fsync on; "
        f"{rows / max(commits, 1):,.0f} events per commit)"
    )
    relay_method = (
        "as above, until the relay has published every event to JetStream (default sync, "
        "in acceptance order) and marked it published"
    )
    return [
        Figure("Gateway ingest, batches", per_second(len(events), seconds), "events/s", method),
        Figure(
            "Gateway ingest, batches, relayed to EVENTS",
            per_second(len(events), relayed),
            "events/s",
            relay_method,
        ),
    ]


async def ingest_single(url: str, counts: Counts) -> Figure:
    bodies = [("/v1/events", e) for e in bench_events(counts.ingest_single)]
    before = await commit_stats(url)
    seconds = await post_all(url, bodies, counts.ingest_single_clients)
    commits, rows = (a - b for a, b in zip(await commit_stats(url), before, strict=True))
    return Figure(
        "Gateway ingest, single events",
        per_second(len(bodies), seconds),
        "events/s",
        f"{len(bodies):,} POST /v1/events of {event_bytes([b for _, b in bodies])} B, "
        f"{counts.ingest_single_clients} concurrent clients "
        f"(one client process); until the last 202 ({rows / max(commits, 1):,.1f} events per "
        "commit)",
    )


BENCH_JOURNEYS = 10


async def create_journeys(gateway: str) -> None:
    """Ten live journeys; each event matches the entry of exactly one (by its plan)."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=30) as client:
        for i in range(BENCH_JOURNEYS):
            entry = {
                "event": "page_viewed",
                "where": [{"property": "plan", "op": "eq", "value": f"p{i}"}],
            }
            body = {
                "name": f"Bench {i}",
                "stages": [
                    {
                        "name": "Viewed",
                        "entry": entry,
                        "steps": [{"id": f"wait-{i}", "type": "wait", "duration": "P1D"}],
                    }
                ],
            }
            created = await client.post("/v1/journeys", json=body)
            created.raise_for_status()
            published = await client.post(f"/v1/journeys/{created.json()['id']}/publish")
            published.raise_for_status()  # fmt: skip


async def runtime_figure(children: Processes, designer: str, conn: asyncpg.Connection) -> Figure:
    """The runtime applying the relayed backlog: entries, timers, timeline, commit."""
    backlog = await conn.fetchval("SELECT count(*) FROM gateway.event_inbox")
    profiles = await conn.fetchval("SELECT count(DISTINCT profile_id) FROM gateway.event_inbox")
    start = time.perf_counter()
    children.start("runtime", WAYPOST_DESIGNER_URL=designer)
    query = "SELECT count(*) FROM runtime.processed"
    while True:
        if await conn.fetchval(query) >= backlog:
            break
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - start
    entered = await conn.fetchval("SELECT count(*) FROM runtime.memberships WHERE active")
    return Figure(
        "Runtime, events applied",
        per_second(backlog, seconds),
        "events/s",
        f"{backlog:,} relayed events of {profiles:,} profiles, {BENCH_JOURNEYS} live journeys "
        f"(each event matches one entry; {entered:,} entries, each setting a 1-day timer), one "
        "runtime process from its start until every event is committed (state, timeline, "
        "explanations, counters, outbox) in batches of up to 256",
    )


async def ingest_figures(report: Report, data_dir: Path, counts: Counts) -> None:
    pg, nats = EmbeddedPostgres(data_dir / "postgres"), EmbeddedNats(data_dir / "nats")
    progress("starting PostgreSQL and NATS for the gateway")
    database_url = await asyncio.to_thread(pg.start)
    nats_url = await asyncio.to_thread(nats.start)
    children = Processes(data_dir, database_url, nats_url)
    try:
        progress("migrating and starting designer + gateway")
        await asyncio.to_thread(children.run, "migrate", "--bootstrap")
        designer = children.start("designer", WAYPOST_SECRETS_KEY=_fernet_key())
        unlimited = {"WAYPOST_RATE_LIMIT_PER_S": "1e9", "WAYPOST_RATE_LIMIT_BURST": "1000000000"}
        gateway = children.start("gateway", WAYPOST_DESIGNER_URL=designer, **unlimited)
        await wait_healthy(designer)
        await wait_healthy(gateway)
        await create_journeys(gateway)
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            progress(f"posting {counts.ingest_batched:,} events in batches")
            for figure in await ingest_batched(gateway, conn, counts):
                report.add(figure)
            progress(f"posting {counts.ingest_single:,} single events")
            report.add(await ingest_single(gateway, counts))
            await wait_relayed(conn)
            progress("starting a runtime on the backlog")
            report.add(await runtime_figure(children, designer, conn))
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(children.stop)
        await asyncio.to_thread(nats.stop)
        await asyncio.to_thread(pg.stop)


def _fernet_key() -> str:
    from services.designer.secrets import SecretBox

    return SecretBox.new_key()


# Timers: the scheduler releasing a backlog, and its lateness under a steady load

TIMER_COLUMNS = (
    "timer_id", "workspace_id", "profile_id", "journey_id", "kind", "due_at", "payload", "state"
)  # fmt: skip
TimerRecord = tuple[str, str, str, str, str, datetime, str, str]
TIMER_COPY_ROWS = 50_000
BACKLOG_WS, FAR_WS, LOAD_WS = "bench-backlog", "bench-far", "bench-load"
PROBE_WS, COMMAND_WS = "bench-probe", "bench-commands"


def timer_records(
    workspace: str, count: int, first_due: datetime, step_s: float
) -> Iterator[TimerRecord]:
    for i in range(count):
        due = first_due + timedelta(seconds=i * step_s)
        yield (f"p{i % 10_000}/{workspace}/1/wait/{i}", workspace, f"p{i % 10_000}",
               workspace, "wait", due, "{}", "pending")  # fmt: skip


async def copy_timers(conn: asyncpg.Connection, records: Iterator[TimerRecord]) -> int:
    """COPY pending timers straight into the scheduler's table, a commit per chunk."""
    copied = 0
    while chunk := [r for _, r in zip(range(TIMER_COPY_ROWS), records, strict=False)]:
        await conn.copy_records_to_table(
            "timers", schema_name="scheduler", records=chunk, columns=TIMER_COLUMNS
        )
        copied += len(chunk)
    return copied


class FiredLog:
    """Every ``timers.fired`` message of some workspaces as it reaches a subscriber and
    when (wall clock, same machine); bodies are parsed afterwards, not on receipt."""

    def __init__(self) -> None:
        self.received: dict[str, list[tuple[float, bytes]]] = {}

    async def follow(self, nc: NATS, workspace: str) -> None:
        arrivals = self.received[workspace] = []

        async def received(msg: Any) -> None:
            arrivals.append((time.time(), msg.data))

        await nc.subscribe(f"timers.fired.{workspace}", cb=received)

    def count(self, workspace: str) -> int:
        return len(self.received[workspace])

    def span_s(self, workspace: str) -> float:
        arrivals = self.received[workspace]
        return arrivals[-1][0] - arrivals[0][0]

    def lateness_ms(self, workspace: str) -> list[float]:
        return [
            (at - datetime.fromisoformat(json.loads(body)["due_at"]).timestamp()) * 1000
            for at, body in self.received[workspace]
        ]

    async def wait_for(self, workspace: str, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count(workspace) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.count(workspace)} of {count} {workspace} timers fired")
            await asyncio.sleep(0.05)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class SchedulerProcess:
    """``waypost scheduler`` as a child process, its memory sampled while it works."""

    def __init__(self, data_dir: Path, database_url: str, nats_url: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        env |= {"WAYPOST_DATABASE_URL": database_url, "WAYPOST_NATS_URL": nats_url,
                "WAYPOST_PORT": str(free_port()), "WAYPOST_LOG_LEVEL": "WARNING"}  # fmt: skip
        with (data_dir / "scheduler.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "waypost", "scheduler"], env=env, stdout=log, stderr=log
            )
        self.peak_rss = 0
        self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        import psutil

        process = psutil.Process(self.proc.pid)
        while self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, process.memory_info().rss)
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        self._sampler.cancel()
        self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 30)


async def insert_pending_timers(conn: asyncpg.Connection, counts: Counts) -> Figure:
    now = datetime.now(UTC)
    far = counts.timers_pending - counts.timer_backlog
    start = time.perf_counter()
    copied = await copy_timers(conn, timer_records(FAR_WS, far, now + timedelta(days=1), 0.01))
    copied += await copy_timers(
        conn, timer_records(BACKLOG_WS, counts.timer_backlog, now - timedelta(hours=1), 0.001)
    )
    seconds = time.perf_counter() - start
    await conn.execute("ANALYZE scheduler.timers")
    return Figure(
        "Timer insert, COPY",
        per_second(copied, seconds),
        "timers/s",
        f"{copied:,} pending timers into scheduler.timers (text pk, partial index on pending "
        f"due_at), copy_records_to_table of {TIMER_COPY_ROWS:,} rows, a commit each; "
        f"{counts.timer_backlog:,} of them already due",
    )


async def release_backlog(fired: FiredLog, counts: Counts) -> Figure:
    await fired.wait_for(BACKLOG_WS, counts.timer_backlog, timeout_s=300)
    seconds = fired.span_s(BACKLOG_WS)
    return Figure(
        "Timer release, due backlog",
        per_second(counts.timer_backlog - 1, seconds),
        "timers/s",
        f"{counts.timer_backlog:,} due of {counts.timers_pending:,} pending, one `waypost "
        "scheduler` process: claim 1,000 (SKIP LOCKED), publish timers.fired (1,000 in "
        "flight), mark fired, commit; first to last fired message at a subscriber",
    )


async def send_probes(js: JetStreamContext, seconds: float, per_s: int) -> int:
    """Schedule timers through the contract, each due 1 s after it is sent."""
    sent = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        if sent < elapsed * per_s:
            command = TimerSchedule(
                timer_id=f"probe/{sent}", workspace_id=PROBE_WS, profile_id=f"probe-{sent}",
                journey_id="bench", kind=TimerKind.WAIT, due_at=soon(1.0),
            )  # fmt: skip
            await js.publish(
                command.subject, command.json_bytes(), headers={MSG_ID: command.msg_id}
            )
            sent += 1
        else:
            await asyncio.sleep(0.005)
    return sent


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def lateness_under_load(
    conn: asyncpg.Connection, js: JetStreamContext, fired: FiredLog, counts: Counts
) -> list[Figure]:
    rate = counts.timer_load_per_s
    window_s = counts.timer_load / rate
    first_due = soon(2.0 + counts.timer_load / 50_000)  # after the COPY below is done
    await copy_timers(conn, timer_records(LOAD_WS, counts.timer_load, first_due, 1 / rate))
    await asyncio.sleep(max(0.0, (first_due - datetime.now(UTC)).total_seconds()))
    probes = await send_probes(js, window_s, counts.timer_probes_per_s)
    await fired.wait_for(LOAD_WS, counts.timer_load, timeout_s=120)
    await fired.wait_for(PROBE_WS, probes, timeout_s=60)
    probe_ms, load_ms = fired.lateness_ms(PROBE_WS), fired.lateness_ms(LOAD_WS)
    pending = counts.timers_pending - counts.timer_backlog + counts.timer_load
    load = f"{counts.timer_load:,} timers falling due at {rate:,}/s, {pending:,} pending"
    probe = (
        f"{probes:,} timers scheduled through timers.schedule at {counts.timer_probes_per_s}/s, "
        f"each due 1 s later, while {load}; due time to the fired message at a subscriber"
    )
    return [
        Figure("Timer lateness p50, scheduled", percentile(probe_ms, 50), "ms", probe),
        Figure("Timer lateness p99, scheduled", percentile(probe_ms, 99), "ms", probe),
        Figure("Timer lateness p99, load", percentile(load_ms, 99), "ms",
               f"{load}; due time to the fired message at a subscriber"),
    ]  # fmt: skip


async def timer_figures(report: Report, data_dir: Path, counts: Counts) -> None:
    pg, nats = EmbeddedPostgres(data_dir / "postgres"), EmbeddedNats(data_dir / "nats")
    progress("starting PostgreSQL and NATS for the scheduler")
    database_url = await asyncio.to_thread(pg.start)
    nats_url = await asyncio.to_thread(nats.start)
    scheduler: SchedulerProcess | None = None
    try:
        await asyncio.to_thread(upgrade, "services.scheduler", database_url)
        nc, js = await open_jetstream(nats_url, counts.in_flight)
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await ensure_streams(js)
            progress(f"copying {counts.timers_pending:,} pending timers")
            report.add(await insert_pending_timers(conn, counts))
            fired = FiredLog()
            for workspace in (BACKLOG_WS, LOAD_WS, PROBE_WS):
                await fired.follow(nc, workspace)
            progress(f"releasing a backlog of {counts.timer_backlog:,} due timers")
            scheduler = SchedulerProcess(data_dir, database_url, nats_url)
            report.add(await release_backlog(fired, counts))
            progress(f"timers falling due at {counts.timer_load_per_s:,}/s")
            for figure in await lateness_under_load(conn, js, fired, counts):
                report.add(figure)
            progress(f"scheduling {counts.timer_commands:,} timers through timers.schedule")
            report.add(await store_schedules(conn, js, counts))
            report.add(scheduler_memory(scheduler, counts))
        finally:
            await conn.close()
            await nc.close()
    finally:
        if scheduler is not None:
            await scheduler.stop()
        await asyncio.to_thread(nats.stop)
        await asyncio.to_thread(pg.stop)


async def store_schedules(conn: asyncpg.Connection, js: JetStreamContext, counts: Counts) -> Figure:
    due = soon(86_400)
    commands = [
        TimerSchedule(
            timer_id=f"cmd/{i}", workspace_id=COMMAND_WS, profile_id=f"p{i % 10_000}",
            journey_id="bench", kind=TimerKind.WAIT, due_at=due,
        )
        for i in range(counts.timer_commands)
    ]  # fmt: skip
    query = "SELECT count(*) FROM scheduler.timers WHERE workspace_id = $1"
    start = time.perf_counter()
    acks = [
        await js.publish_async(c.subject, c.json_bytes(), headers={MSG_ID: c.msg_id})
        for c in commands
    ]
    await asyncio.gather(*acks)
    while True:
        if await conn.fetchval(query, COMMAND_WS) >= len(commands):
            break
        await asyncio.sleep(0.02)
    seconds = time.perf_counter() - start
    return Figure(
        "Timer schedule commands stored",
        per_second(len(commands), seconds),
        "timers/s",
        f"{len(commands):,} timers.schedule commands published ({counts.in_flight} in flight) "
        "while the scheduler consumes them: fetch 1,000, one INSERT ... SELECT unnest(...) "
        "ON CONFLICT DO NOTHING and commit per fetch; first publish to last row committed",
    )


def scheduler_memory(scheduler: SchedulerProcess, counts: Counts) -> Figure:
    return Figure(
        "Scheduler memory, peak RSS",
        scheduler.peak_rss / 2**20,
        "MiB",
        f"the `waypost scheduler` process through the runs above "
        f"({counts.timers_pending:,} pending), sampled every 250 ms",
    )


# Running and reporting


async def run(report: Report, root: Path, counts: Counts) -> None:
    await jetstream_figures(report, root / "nats-default", counts, sync_always=False)
    await jetstream_figures(report, root / "nats-sync-always", counts, sync_always=True)
    await postgres_figures(report, root / "postgres", counts)
    await ingest_figures(report, root / "ingest", counts)
    await timer_figures(report, root / "timers", counts)


def markdown_table(figures: Sequence[Figure]) -> str:
    lines = ["| Figure | Value | Unit | Method |", "| --- | ---: | --- | --- |"]
    lines += [f"| {f.figure} | {f.value:,.0f} | {f.unit} | {f.method} |" for f in figures]
    return "\n".join(lines)


def write_json(report: Report, counts: Counts, quick: bool, seconds: float) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "duration_s": round(seconds, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "servers": report.servers,
        "counts": asdict(counts),
        "figures": [asdict(f) for f in report.figures],
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    progress(f"wrote {RESULTS}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="divide every count by 10")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the servers' throwaway data goes"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("bench", level="ERROR", fmt="console")
    counts = Counts().divided(10) if args.quick else Counts()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="waypost-bench-", dir=args.dir) as tmp:
        asyncio.run(run(report, Path(tmp), counts))
    write_json(report, counts, args.quick, time.perf_counter() - STARTED)
    print(markdown_table(report.figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
