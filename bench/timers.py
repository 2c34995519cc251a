"""The scheduler alone with 1,000,000 pending timers: releasing a due backlog, lateness
while timers fall due at 5,000/s, and storing ``timers.schedule`` commands."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bench.common import Counts, Figure, Report, per_second, percentile, progress
from bench.raw import open_jetstream
from bench.stack import connect_db, servers
from shared.bus import MSG_ID, ensure_streams
from shared.migrations import upgrade
from shared.timers import TimerKind, TimerSchedule

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
        ">= 5,000 timers/s",
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
        Figure("Timer lateness p99, scheduled", percentile(probe_ms, 99), "ms", probe,
               "< 1,000 ms"),
        Figure("Timer lateness p99, load", percentile(load_ms, 99), "ms",
               f"{load}; due time to the fired message at a subscriber",
               "< 1,000 ms at 5,000/s, 1,000,000 pending"),
    ]  # fmt: skip


async def timer_figures(report: Report, data_dir: Path, counts: Counts) -> None:
    async with servers(data_dir, report, f"timers ({counts.timers_pending:,} pending)") as stack:
        await asyncio.to_thread(upgrade, "services.scheduler", stack.database_url)
        nc, js = await open_jetstream(stack.nats_url, counts.in_flight)
        conn = await connect_db(stack.database_url)
        try:
            await ensure_streams(js)
            progress(f"copying {counts.timers_pending:,} pending timers")
            report.add(await insert_pending_timers(conn, counts))
            fired = FiredLog()
            for workspace in (BACKLOG_WS, LOAD_WS, PROBE_WS):
                await fired.follow(nc, workspace)
            progress(f"releasing a backlog of {counts.timer_backlog:,} due timers")
            stack.children.start("scheduler")
            report.add(await release_backlog(fired, counts))
            progress(f"timers falling due at {counts.timer_load_per_s:,}/s")
            for figure in await lateness_under_load(conn, js, fired, counts):
                report.add(figure)
            progress(f"scheduling {counts.timer_commands:,} timers through timers.schedule")
            report.add(await store_schedules(conn, js, counts))
        finally:
            await conn.close()
            await nc.close()


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
