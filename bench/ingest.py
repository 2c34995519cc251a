"""Ingestion through the gateway alone: batches, single events, and the relay to EVENTS."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import Counts, Figure, Report, chunks, per_second, progress
from bench.stack import ADMIN_KEY, connect_db, post_all, servers, start_designer_and_gateway


def bench_events(count: int, profiles: int = 100_000, first: int = 0) -> list[dict[str, Any]]:
    """``page_viewed`` events spread over ``profiles`` profiles (from number ``first``), each
    with one of ten plans, so each enters one of the ten bench journeys."""
    return [
        {"event_id": uuid.uuid4().hex,
         "profile_id": f"prof-{first + i * 7919 % profiles:06d}",
         "name": "page_viewed", "properties": {"url": "/pricing", "plan": f"p{i % 10}"}}
        for i in range(count)
    ]  # fmt: skip


def event_bytes(events: Sequence[dict[str, Any]]) -> int:
    """Mean size of the events as JSON."""
    return sum(len(json.dumps(e)) for e in events) // max(1, len(events))


async def commit_stats(url: str) -> tuple[float, float]:
    """(commits, events committed) so far, from the gateway's metrics (an admin key may read
    them; anyone else learns nothing there)."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{url}/metrics", headers=headers)
    answer.raise_for_status()
    text = answer.text
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


async def ingest_figures(report: Report, data_dir: Path, counts: Counts) -> None:
    async with servers(data_dir, report, "gateway ingest") as stack:
        progress("migrating and starting designer + gateway")
        _, gateway = await start_designer_and_gateway(stack.children)
        conn = await connect_db(stack.database_url)
        try:
            progress(f"posting {counts.ingest_batched:,} events in batches")
            for figure in await ingest_batched(gateway, conn, counts):
                report.add(figure)
            progress(f"posting {counts.ingest_single:,} single events")
            report.add(await ingest_single(gateway, counts))
        finally:
            await conn.close()
