"""Several runtime replicas at once: every event applied exactly once, each profile's
events in the order they were accepted, one entry however many arrive together."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from contextlib import AsyncExitStack

import asyncpg
from nats.aio.client import Client as NATS

from services.runtime.app import create_app
from services.runtime.settings import RuntimeSettings
from shared import db
from tests.helpers import eventually, serving
from tests.integration.test_runtime import live_journey, send
from tests.stack import SERVICE_TOKEN, Stack, Workspace

# An explanation row is one event; it concerns the journeys it lists.
ABOUT_JOURNEY = "journeys @> jsonb_build_array(jsonb_build_object('journey_id', $2::text))"


async def _rows(stack: Stack, sql: str, *args: object) -> list[asyncpg.Record]:
    dsn = db.asyncpg_dsn(stack.servers.database_url)
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _replicas(stack: Stack, n: int, exits: AsyncExitStack) -> None:
    for _ in range(n):
        settings = RuntimeSettings(
            database_url=stack.servers.database_url,
            nats_url=stack.servers.nats_url,
            designer_url=stack.service_urls["designer"],
            service_token=SERVICE_TOKEN,
        )
        await exits.enter_async_context(serving(create_app(settings)))


async def test_interleaved_events_apply_once_and_in_order_across_replicas(
    workspace: Workspace, stack: Stack, nc: NATS
) -> None:
    jid = await live_journey(workspace)
    profiles = [f"r{i}" for i in range(100)]
    sent: dict[str, list[str]] = defaultdict(list)
    async with AsyncExitStack() as exits:
        await _replicas(stack, 2, exits)
        for round_ in range(10):  # interleaved: every profile's nth event before any n+1th
            for profile in profiles:
                name = "signup" if round_ == 0 else f"tick{round_}"
                sent[profile].append(await send(nc, workspace.id, profile, name))

        async def all_applied() -> bool:
            rows = await _rows(
                stack, "SELECT count(*) AS n FROM runtime.explanations WHERE workspace_id = $1 "
                f"AND {ABOUT_JOURNEY}", workspace.id, jid,
            )  # fmt: skip
            return bool(rows[0]["n"] >= 1000)

        await eventually(all_applied, "all 1,000 events to be applied", within_s=120)
    rows = await _rows(
        stack, "SELECT profile_id, event_id FROM runtime.explanations WHERE workspace_id = $1 "
        f"AND {ABOUT_JOURNEY} ORDER BY id", workspace.id, jid,
    )  # fmt: skip
    applied: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        applied[row["profile_id"]].append(row["event_id"])
    assert applied == sent  # each exactly once, in acceptance order
    entered = await _rows(
        stack, "SELECT count(*) AS n FROM runtime.timeline WHERE workspace_id = $1 AND "
        "kind = 'entered'", workspace.id,
    )  # fmt: skip
    assert entered[0]["n"] == 100


async def test_fifty_simultaneous_entries_make_one(
    workspace: Workspace, stack: Stack, nc: NATS
) -> None:
    await live_journey(workspace)
    profile = f"rush-{uuid.uuid4().hex[:6]}"
    async with AsyncExitStack() as exits:
        await _replicas(stack, 1, exits)
        await asyncio.gather(*(send(nc, workspace.id, profile, "signup") for _ in range(50)))

        async def fifty_seen() -> bool:
            rows = await _rows(
                stack, "SELECT count(DISTINCT event_id) AS n FROM runtime.explanations "
                "WHERE workspace_id = $1 AND profile_id = $2", workspace.id, profile,
            )  # fmt: skip
            return bool(rows[0]["n"] == 50)

        await eventually(fifty_seen, "all fifty entry events", within_s=120)
    entries = await _rows(
        stack, "SELECT count(*) AS n FROM runtime.timeline WHERE workspace_id = $1 AND "
        "profile_id = $2 AND kind = 'entered'", workspace.id, profile,
    )  # fmt: skip
    assert entries[0]["n"] == 1
