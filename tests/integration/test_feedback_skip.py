"""Delivery feedback (``message_sent`` / ``message_failed``) that no live journey of the
workspace can react to is recorded as applied and skipped, without a pass through the
engine; where a journey does name it, it is applied as before, in order."""

from __future__ import annotations

from typing import Any

import asyncpg
from nats.aio.client import Client as NATS

from shared import db
from tests.conftest import Servers
from tests.helpers import eventually
from tests.integration.test_runtime import live_journey, send
from tests.stack import Stack, Workspace, new_workspace


async def _processed(servers: Servers, ws: str, event_id: str) -> bool:
    conn = await asyncpg.connect(db.asyncpg_dsn(servers.database_url))
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM runtime.processed WHERE workspace_id = $1 AND event_id = $2",
            ws, event_id,
        )  # fmt: skip
    finally:
        await conn.close()
    return bool(found)


async def _explained(workspace: Workspace, profile: str) -> list[dict[str, Any]]:
    async with workspace.client() as c:
        r = await c.get(f"/v1/profiles/{profile}/explain")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_feedback_no_journey_names_is_recorded_but_not_applied(
    workspace: Workspace, nc: NATS, servers: Servers
) -> None:
    jid = await live_journey(workspace)  # entry signup, goal purchase: no feedback named
    ws = workspace.id
    await send(nc, ws, "ada", "signup", phone="+15550100")
    sent = await send(nc, ws, "ada", "message_sent")
    failed = await send(nc, ws, "ada", "message_failed")
    bought = await send(nc, ws, "ada", "purchase")  # after the feedback, in order

    async def goal_reached() -> bool:
        names = [x["event_id"] for x in await _explained(workspace, "ada")]
        return bought in names

    await eventually(goal_reached, "the purchase after the feedback to be applied")
    assert await _processed(servers, ws, sent)
    assert await _processed(servers, ws, failed)
    explained = {x["event_id"] for x in await _explained(workspace, "ada")}
    assert {sent, failed}.isdisjoint(explained)  # the engine never ran for them
    async with workspace.client() as c:
        stats = (await c.get(f"/v1/journeys/{jid}/analytics")).json()
    assert stats["goal"]["reached"] == 1

    # A repeat of the skipped event is still a repeat.
    await send(nc, ws, "ada", "message_sent", event_id=sent)
    await send(nc, ws, "ada", "signup", event_id="after-repeat")
    await eventually(lambda: _processed(servers, ws, "after-repeat"), "the event after the repeat")
    assert {sent, failed}.isdisjoint({x["event_id"] for x in await _explained(workspace, "ada")})


async def test_feedback_a_journey_names_is_applied(stack: Stack, nc: NATS) -> None:
    workspace = await new_workspace(stack)
    async with workspace.client() as c:
        body = {
            "name": "Sent",
            "goal": {"criteria": {"all": [{"event": "message_sent"}]}},
            "stages": [{"name": "In", "entry": {"event": "signup"},
                        "steps": [{"id": "w", "type": "wait", "duration": "PT1H"}]}],
        }  # fmt: skip
        created = await c.post("/v1/journeys", json=body)
        assert created.status_code == 201, created.text
        jid = created.json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    ws = workspace.id
    await send(nc, ws, "bo", "signup")
    sent = await send(nc, ws, "bo", "message_sent")

    async def applied() -> list[str] | None:
        items = await _explained(workspace, "bo")
        outcomes = [x["outcome"] for x in items if x["event_id"] == sent]
        return outcomes or None

    assert await eventually(applied, "message_sent to be applied") == ["goal"]
