"""``python -m bench [--quick] [--dir PATH]``: measure the raw limits, print a Markdown table."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from shared.bus import MSG_ID, connect, ensure_streams
from shared.logging import configure_logging
from shared.topology import StreamSpec
from waypost.embedded import EmbeddedNats, EmbeddedPostgres

RESULTS = Path(__file__).resolve().parent / "results" / "raw.json"
STREAM = StreamSpec("BENCH", ("bench.>",), "Throwaway stream for the benchmark")
SUBJECT = "bench.events.w1.0"
DURABLE = "bench"
PAYLOAD_BYTES = 300
EVENT_COLUMNS = ("event_id", "profile_id", "name", "payload", "accepted_at")
STARTED = time.perf_counter()

Row = tuple[str, str, str, str, datetime]


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

    def divided(self, by: int) -> Counts:
        """Fewer messages and rows; batch sizes and concurrency keep their shape."""
        return replace(
            self,
            publish=self.publish // by,
            publish_sync_always=self.publish_sync_always // by,
            insert_batched=self.insert_batched // by,
            insert_per_row=self.insert_per_row // by,
            timers=self.timers // by,
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


def chunks(rows: Sequence[Row], size: int) -> Iterator[Sequence[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


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


# Running and reporting


async def run(report: Report, root: Path, counts: Counts) -> None:
    await jetstream_figures(report, root / "nats-default", counts, sync_always=False)
    await jetstream_figures(report, root / "nats-sync-always", counts, sync_always=True)
    await postgres_figures(report, root / "postgres", counts)


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
