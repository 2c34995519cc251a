"""The machine's raw limits: JetStream publish and consume, PostgreSQL inserts and the
``FOR UPDATE SKIP LOCKED`` claim loop, each on a throwaway server of its own."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from bench.common import Counts, Figure, Report, chunks, per_second, progress
from shared import db
from shared.bus import MSG_ID, connect, ensure_streams
from shared.topology import StreamSpec
from waypost.embedded import EmbeddedNats, EmbeddedPostgres

STREAM = StreamSpec("BENCH", ("bench.>",), "Throwaway stream for the benchmark")
SUBJECT = "bench.events.w1.0"
PIPELINE_SUBJECT = "bench.pipeline.w1.0"
DURABLE = "bench"
PAYLOAD_BYTES = 300
EVENT_COLUMNS = ("event_id", "profile_id", "name", "payload", "accepted_at")
PUBLISH_PLUS_CONSUME = "JetStream publish + consume (default sync)"

Row = tuple[str, str, str, str, datetime]


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


async def publish_all(js: JetStreamContext, subject: str, count: int) -> tuple[float, int]:
    """Publish ``count`` messages, each with its own msg id: (seconds until all are acked,
    stream sequence of the last)."""
    body = event_body()
    start = time.perf_counter()
    futures = [
        await js.publish_async(subject, body, headers={MSG_ID: f"{subject}-{i}"})
        for i in range(count)
    ]
    acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=600)
    elapsed = time.perf_counter() - start
    duplicates = sum(1 for ack in acks if ack.duplicate)
    if duplicates:
        raise RuntimeError(f"{duplicates} publishes were treated as duplicates")
    return elapsed, max(ack.seq for ack in acks)


async def wait_ack_floor(js: JetStreamContext, durable: str, last_seq: int) -> None:
    """Acks are fire-and-forget: wait until the server has recorded all of them."""
    while True:
        info = await js.consumer_info(STREAM.name, durable)
        if info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= last_seq:
            return
        await asyncio.sleep(0.01)


async def subscribe(js: JetStreamContext, subject: str, durable: str) -> Any:
    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=10_000)
    return await js.pull_subscribe(subject, durable=durable, stream=STREAM.name, config=config)


async def fetch_and_ack(sub: Any, count: int, batch: int) -> None:
    received = 0
    while received < count:
        msgs = await sub.fetch(batch, timeout=10)
        for msg in msgs:
            await msg.ack()
        received += len(msgs)


async def consume_all(js: JetStreamContext, count: int, batch: int, last_seq: int) -> float:
    """Fetch and ack ``count`` messages; seconds until the ack floor reaches the last one."""
    sub = await subscribe(js, SUBJECT, DURABLE)
    start = time.perf_counter()
    await fetch_and_ack(sub, count, batch)
    await asyncio.wait_for(wait_ack_floor(js, DURABLE, last_seq), timeout=60)
    elapsed = time.perf_counter() - start
    await sub.unsubscribe()
    return elapsed


async def publish_and_consume(js: JetStreamContext, count: int, batch: int) -> float:
    """Publish ``count`` messages while a pull consumer fetches and acks them; seconds from
    the first publish until the ack floor reaches the last."""
    durable = f"{DURABLE}-pipeline"
    sub = await subscribe(js, PIPELINE_SUBJECT, durable)
    start = time.perf_counter()
    consumed = asyncio.create_task(fetch_and_ack(sub, count, batch))
    _, last_seq = await publish_all(js, PIPELINE_SUBJECT, count)
    await asyncio.wait_for(consumed, timeout=600)
    await asyncio.wait_for(wait_ack_floor(js, durable, last_seq), timeout=60)
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
            seconds, last_seq = await publish_all(js, SUBJECT, count)
            report.add(publish_figure(count, seconds, counts.in_flight, sync))
            progress(f"consuming {count:,} messages ({sync})")
            seconds = await consume_all(js, count, counts.fetch_batch, last_seq)
            report.add(consume_figure(count, seconds, counts.fetch_batch, sync))
            if not sync_always:
                progress(f"publishing and consuming {count:,} messages at once ({sync})")
                seconds = await publish_and_consume(js, count, counts.fetch_batch)
                report.add(pipeline_figure(count, seconds, counts))
        finally:
            await nc.close()
    finally:
        server.stop()


def pipeline_figure(count: int, seconds: float, counts: Counts) -> Figure:
    return Figure(
        PUBLISH_PLUS_CONSUME,
        per_second(count, seconds),
        "msgs/s",
        f"{count:,} msgs published ({counts.in_flight} in flight) while one durable pull "
        f"consumer fetches {counts.fetch_batch} and acks each, in the same process; first "
        "publish until the ack floor reaches the last msg: the ceiling of one hop through "
        "JetStream",
    )


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
        conn = await asyncpg.connect(db.asyncpg_dsn(url))
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
