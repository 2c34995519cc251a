"""kill -9 of a runtime in the middle of its work, then a restart: every accepted event has
had its effect exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter

from nats.aio.client import Client as NATS

from tests.helpers import eventually
from tests.integration.test_runtime import live_journey, send
from tests.integration.test_runtime_replicas import _rows
from tests.stack import SERVICE_TOKEN, Stack, Workspace
from waypost.embedded import free_port

EVENTS = 1500


async def start_runtime(stack: Stack) -> asyncio.subprocess.Process:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")},
        "WAYPOST_DATABASE_URL": stack.servers.database_url,
        "WAYPOST_NATS_URL": stack.servers.nats_url,
        "WAYPOST_DESIGNER_URL": stack.service_urls["designer"],
        "WAYPOST_SERVICE_TOKEN": SERVICE_TOKEN,
        "WAYPOST_PORT": str(free_port()),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "waypost", "runtime", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def applied(stack: Stack, workspace_id: str) -> Counter[str]:
    rows = await _rows(
        stack, "SELECT event_id FROM runtime.explanations WHERE workspace_id = $1",
        workspace_id,
    )  # fmt: skip
    return Counter(r["event_id"] for r in rows)


async def test_a_runtime_killed_mid_batch_loses_and_doubles_nothing(
    workspace: Workspace, stack: Stack, nc: NATS
) -> None:
    await live_journey(workspace)
    first = await start_runtime(stack)
    try:
        sent = [await send(nc, workspace.id, f"k{i % 150}", "signup") for i in range(EVENTS)]

        async def under_way() -> bool:
            return sum((await applied(stack, workspace.id)).values()) > EVENTS // 10

        await eventually(under_way, "the runtime to be under way", within_s=120)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        second = await start_runtime(stack)
        try:

            async def all_applied() -> Counter[str] | None:
                counts = await applied(stack, workspace.id)
                return counts if len(counts) == EVENTS else None

            counts = await eventually(all_applied, "every event applied", within_s=180)
        finally:
            second.send_signal(signal.SIGTERM)
            await second.wait()
    finally:
        if first.returncode is None:
            first.kill()
    assert set(counts) == set(sent)
    assert set(counts.values()) == {1}
    entered = await _rows(
        stack, "SELECT count(*) AS n FROM runtime.timeline WHERE workspace_id = $1 AND "
        "kind = 'entered'", workspace.id,
    )  # fmt: skip
    assert entered[0]["n"] == 150
