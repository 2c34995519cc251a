"""The HTTP client of the hot paths, chosen by this measurement: the same JSON POSTs to the
bench's HTTP sink through httpx and through aiohttp, the client's CPU per request (the
sink runs on its own thread; its share is measured with the client's, the same for both)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

from bench.common import Counts, Figure, Report, per_second, progress
from bench.sinks import HttpSink
from shared import http

CONNECTIONS = 16
BODY = json.dumps({"to": "+15550100", "body": "Hi Ada", "activation_id": "a" * 32}).encode()
HEADERS = {"Content-Type": "application/json", "Idempotency-Key": "a" * 32}


async def timed(count: int, post: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(seconds, process CPU seconds) for ``count`` posts, ``CONNECTIONS`` at a time."""
    places = asyncio.Semaphore(CONNECTIONS)

    async def one() -> None:
        async with places:
            await post()

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - start, time.process_time() - cpu


async def client_figures(report: Report, data_dir: Path, counts: Counts) -> None:
    with HttpSink().running() as sink:

        async def with_httpx(client: httpx.AsyncClient) -> None:
            (await client.post(sink.url, content=BODY, headers=HEADERS)).raise_for_status()

        async def with_aiohttp(client: aiohttp.ClientSession) -> None:
            async with client.post(sink.url, data=BODY, headers=HEADERS) as answer:
                answer.raise_for_status()
                await answer.read()

        limits = httpx.Limits(max_connections=CONNECTIONS * 2)
        async with httpx.AsyncClient(limits=limits) as a, http.session(CONNECTIONS * 2) as b:
            for name, post in (
                ("httpx", lambda: with_httpx(a)),
                ("aiohttp", lambda: with_aiohttp(b)),
            ):
                await timed(CONNECTIONS, post)  # connections open, code paths warm
                progress(f"{counts.http_posts:,} POSTs through {name}")
                seconds, cpu = await timed(counts.http_posts, post)
                method = (
                    f"{counts.http_posts:,} JSON POSTs of {len(BODY)} B, {CONNECTIONS} at a "
                    "time over kept-alive connections, to the HTTP sink in the bench process"
                )
                per_request = cpu / counts.http_posts * 1e6
                rate = per_second(counts.http_posts, seconds)
                report.add(Figure(f"HTTP client {name}, CPU per request", per_request, "µs",
                                  method))  # fmt: skip
                report.add(Figure(f"HTTP client {name}, requests", rate, "requests/s", method))
