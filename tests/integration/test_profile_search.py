"""What an operator looks a profile up by: its attributes, through the gateway; and an
explanation that leads with what failed and leaves out journeys waiting for other events."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from nats.aio.client import Client as NATS

from shared import db
from tests.helpers import eventually
from tests.integration.test_runtime import live_journey, send
from tests.stack import Stack, Workspace, new_workspace


async def _put(workspace: Workspace, profile: str, attributes: dict[str, Any]) -> None:
    async with workspace.client() as c:
        r = await c.put(f"/v1/profiles/{profile}", json={"attributes": attributes})
        assert r.status_code == 200, r.text


async def test_profiles_are_found_by_attribute_page_by_page(workspace: Workspace) -> None:
    tag = uuid.uuid4().hex[:8]
    for i in range(5):
        await _put(workspace, f"p{i}-{tag}", {"email": f"p{i}@{tag}.test", "team": tag,
                                               "age": 30 + i % 2, "vip": i == 3})  # fmt: skip
    reader = await workspace.key("viewer")
    async with workspace.client(reader) as c:

        async def all_there() -> list[dict[str, Any]] | None:
            r = await c.get("/v1/profiles", params={"team": tag, "limit": 500})
            assert r.status_code == 200, r.text
            items: list[dict[str, Any]] = r.json()["items"]
            return items if len(items) == 5 else None

        await eventually(all_there, "the five profiles")
        r = await c.get("/v1/profiles", params={"email": f"p2@{tag}.test"})
        assert [p["profile_id"] for p in r.json()["items"]] == [f"p2-{tag}"]
        assert r.json()["items"][0]["attributes"]["team"] == tag
        # Two filters must both hold; a number and a boolean match their JSON value.
        r = await c.get("/v1/profiles", params={"team": tag, "age": "31"})
        assert [p["profile_id"] for p in r.json()["items"]] == [f"p1-{tag}", f"p3-{tag}"]
        r = await c.get("/v1/profiles", params={"team": tag, "vip": "true"})
        assert [p["profile_id"] for p in r.json()["items"]] == [f"p3-{tag}"]
        r = await c.get("/v1/profiles", params={"email": "nobody@nowhere.test"})
        assert r.json() == {"items": [], "next_cursor": None}

        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"team": tag, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await c.get("/v1/profiles", params=params)).json()
            seen += [p["profile_id"] for p in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"p{i}-{tag}" for i in range(5)]


async def test_search_stays_in_the_workspace_and_refuses_what_it_cannot_query(
    workspace: Workspace, stack: Stack
) -> None:
    other_workspace = await new_workspace(stack)
    tag = uuid.uuid4().hex[:8]
    await _put(other_workspace, f"theirs-{tag}", {"team": tag})
    async with other_workspace.client() as c:

        async def theirs() -> bool:
            r = await c.get("/v1/profiles", params={"team": tag})
            return len(r.json()["items"]) == 1

        await eventually(theirs, "the other workspace's profile")
    async with workspace.client() as c:
        r = await c.get("/v1/profiles", params={"team": tag})
        assert r.json()["items"] == []
        for params in ({"email": "a\x00b"}, {"cursor": "not-a-cursor"},
                       {f"a{i}": "x" for i in range(11)}, {"email": "x" * 1001}):  # fmt: skip
            r = await c.get("/v1/profiles", params=params)
            assert r.status_code == 422, (params, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        assert (await c.get("/v1/profiles", params={"n": "1e999"})).status_code == 200
    async with workspace.client(await workspace.key("ingest")) as c:
        assert (await c.get("/v1/profiles", params={"team": tag})).status_code == 403


async def test_explain_leads_with_the_failing_criterion_and_hides_other_events_journeys(
    workspace: Workspace, nc: NATS
) -> None:
    jid = await live_journey(workspace)  # enters on 'signup'
    profile = f"x-{uuid.uuid4().hex[:8]}"
    await send(nc, workspace.id, profile, "browse")
    async with workspace.client() as c:

        async def explained() -> dict[str, Any] | None:
            r = await c.get(f"/v1/profiles/{profile}/explain", params={"all": "true"})
            body: dict[str, Any] = r.json()
            return body if r.status_code == 200 and body["items"] else None

        everything = await eventually(explained, "the event's explanation")
        (item,) = [i for i in everything["items"] if i["journey_id"] == jid]
        assert item["outcome"] == "no_match"
        assert next(iter(item)) == "failed"
        assert item["failed"] == "event name is 'browse', not 'signup'"

        default = (await c.get(f"/v1/profiles/{profile}/explain")).json()
        assert jid not in [i["journey_id"] for i in default["items"]]
        assert default["hidden"] >= 1
        named = await c.get(f"/v1/profiles/{profile}/explain", params={"journey_id": jid})
        assert [i["journey_id"] for i in named.json()["items"]] == [jid]

        await send(nc, workspace.id, profile, "signup")

        async def entered() -> dict[str, Any] | None:
            r = await c.get(f"/v1/profiles/{profile}/explain")
            items = [i for i in r.json()["items"] if i["outcome"] == "entered"]
            return items[0] if items else None

        taken = await eventually(entered, "the entry")
        assert taken["failed"] is None
        assert taken["journey_id"] == jid


async def test_the_search_can_use_the_attribute_index(stack: Stack) -> None:
    """The containment the search asks (one document or another, per filter) is one the GIN
    index on attributes answers (jsonb_path_ops supports @>, and an OR of them is a bitmap
    OR): with the other ways to read the table priced out, the plan reads that index. (On
    a small table the planner rightly prefers the primary key's workspace prefix.)"""
    conn = await asyncpg.connect(db.asyncpg_dsn(stack.servers.database_url))
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            await conn.execute("SET LOCAL enable_indexscan = off")
            rows = await conn.fetch(
                "EXPLAIN SELECT profile_id FROM runtime.profiles"
                """ WHERE attributes @> '{"age": "31"}' OR attributes @> '{"age": 31}'"""
            )
    finally:
        await conn.close()
    plan = "\n".join(r[0] for r in rows)
    assert "ix_profiles_attributes" in plan, plan
