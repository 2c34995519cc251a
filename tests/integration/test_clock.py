"""The virtual clock is one clock for every process on the same NATS."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client as NATS

from shared.clock import RealClock, VirtualClock
from tests.conftest import Servers
from tests.helpers import eventually

ADVANCE_IN_CHILD = """
import asyncio, sys
from datetime import timedelta
from shared import bus
from shared.clock import VirtualClock

async def main():
    nc = await bus.connect(sys.argv[1], "clock-child")
    clock = await VirtualClock.open(nc.jetstream())
    print(await clock.advance(timedelta(hours=1)), flush=True)
    await clock.close()
    await nc.close()

asyncio.run(main())
"""


@pytest.fixture
async def clock(nc: NATS) -> AsyncIterator[VirtualClock]:
    c = await VirtualClock.open(nc.jetstream())
    yield c
    await c.close()


async def test_virtual_clock_stands_still_between_changes(clock: VirtualClock) -> None:
    first = clock.now()
    await asyncio.sleep(0.05)
    assert clock.now() == first
    assert first.tzinfo is not None


async def test_advance_in_another_process_is_seen_here(
    servers: Servers, clock: VirtualClock
) -> None:
    before = clock.now()
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", ADVANCE_IN_CHILD, servers.nats_url],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    advanced_to = datetime.fromisoformat(out.stdout.splitlines()[0])
    assert advanced_to == before + timedelta(hours=1)

    async def seen() -> bool:
        return clock.now() == advanced_to

    await eventually(seen, "the other process's advance", within_s=5)


async def test_concurrent_advances_add_up(nc: NATS, clock: VirtualClock) -> None:
    other = await VirtualClock.open(nc.jetstream())
    try:
        start = clock.now()
        await asyncio.gather(
            clock.advance(timedelta(minutes=10)), other.advance(timedelta(minutes=5))
        )

        async def both_see_total() -> bool:
            total = start + timedelta(minutes=15)
            return clock.now() == total and other.now() == total

        await eventually(both_see_total, "both advances applied")
    finally:
        await other.close()


async def test_advance_wakes_a_waiter(nc: NATS, clock: VirtualClock) -> None:
    other = await VirtualClock.open(nc.jetstream())
    try:
        waiter = asyncio.create_task(clock.wait(3600))
        await asyncio.sleep(0)
        await other.advance(timedelta(seconds=1))
        await asyncio.wait_for(waiter, timeout=10)
    finally:
        await other.close()


async def test_set_and_invalid_changes(clock: VirtualClock) -> None:
    target = clock.now() + timedelta(days=3)
    assert await clock.set(target) == target
    assert clock.now() == target
    with pytest.raises(ValueError, match="forward"):
        await clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="offset"):
        await clock.set(datetime(2030, 1, 1))


def test_real_clock_is_utc() -> None:
    now = RealClock().now()
    assert now.tzinfo is UTC
    assert abs((datetime.now(UTC) - now).total_seconds()) < 60
