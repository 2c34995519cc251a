"""Segment-compatible ingestion and partner webhooks: both end in the event inbox."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from segment.analytics import Client
from segment.analytics.request import APIError
from standardwebhooks import Webhook

from gateway.models import EventInbox
from shared import db
from tests.conftest import Servers
from tests.stack import Workspace

SECRET = "whsec_" + base64.b64encode(b"partner-shared-secret-0123456789").decode()
MAPPING = {"profile_id": "$.user.id", "name": "$.type", "timestamp": "$.ts"}


@pytest.fixture(scope="module")
async def pg(servers: Servers) -> AsyncIterator[asyncpg.Pool]:
    dsn = db.asyncpg_dsn(servers.database_url)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def inbox(pg: asyncpg.Pool, workspace_id: str) -> list[asyncpg.Record]:
    return await pg.fetch(
        f"SELECT * FROM {EventInbox.fullname} WHERE workspace_id = $1 ORDER BY seq", workspace_id
    )


def segment_client(workspace: Workspace, write_key: str) -> Client:
    return Client(
        write_key=write_key,
        host=f"{workspace.stack.url}/segment",
        sync_mode=True,
        gzip=True,
        max_retries=0,
    )


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


# Segment


async def test_segment_client_track_and_identify_land_in_the_inbox(
    workspace: Workspace, pg: asyncpg.Pool
) -> None:
    client = segment_client(workspace, await workspace.key("ingest"))
    await asyncio.to_thread(
        client.track, user_id="alice", event="Order Completed",
        properties={"total": 42.5}, context={"traits": {"plan": "pro"}}, message_id="m-1",
    )  # fmt: skip
    await asyncio.to_thread(
        client.identify, anonymous_id="anon-7", traits={"email": "a@example.com"},
        message_id="m-2",
    )  # fmt: skip
    rows = await inbox(pg, workspace.id)
    assert [(r["kind"], r["profile_id"]) for r in rows] == [
        ("event", "alice"),
        ("profile", "anon-7"),
    ]
    track, identify = rows
    assert (track["event_id"], track["name"]) == ("m-1", "Order Completed")
    assert json.loads(track["properties"]) == {"total": 42.5}
    assert json.loads(track["traits"]) == {"plan": "pro"}
    assert json.loads(identify["traits"]) == {"email": "a@example.com"}


async def test_segment_wrong_write_key_is_401(workspace: Workspace, pg: asyncpg.Pool) -> None:
    client = segment_client(workspace, "wp_not-a-key")
    with pytest.raises(APIError) as raised:
        await asyncio.to_thread(client.track, user_id="alice", event="Signed Up")
    assert raised.value.status == 401
    async with httpx.AsyncClient(base_url=workspace.stack.url) as http:
        r = await http.post("/segment/v1/track", json={"userId": "a", "event": "x"})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await inbox(pg, workspace.id) == []


async def test_segment_single_calls_batch_order_and_bad_items(
    workspace: Workspace, pg: asyncpg.Pool
) -> None:
    key = await workspace.key("ingest")
    async with httpx.AsyncClient(base_url=workspace.stack.url, headers=basic(key)) as http:
        r = await http.post("/segment/v1/track", json={"userId": "bob", "event": "Viewed"})
        assert r.status_code == 200, r.text
        assert r.json() == {"success": True}
        r = await http.post("/segment/v1/identify", json={"userId": "bob", "traits": {"a": 1}})
        assert r.status_code == 200, r.text
        batch = {
            "batch": [
                {"type": "track", "userId": "bob", "event": "First", "messageId": "b-1"},
                {"type": "page", "userId": "bob", "name": "Home"},
                {"type": "track", "anonymousId": "anon", "event": "Second", "messageId": "b-2"},
            ]
        }
        body = gzip.compress(json.dumps(batch).encode())
        r = await http.post("/segment/v1/batch", content=body, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 200, r.text
        bad = {
            "batch": [
                {"type": "track", "userId": "bob", "event": "Fine"},
                {"type": "track", "event": "No profile", "timestamp": "yesterday"},
            ]
        }
        r = await http.post("/segment/v1/batch", json=bad)
        assert r.status_code == 400
        paths = {e["path"] for e in r.json()["errors"]}
        assert paths == {"batch[1].anonymousId", "batch[1].timestamp"}
        huge = gzip.compress(b'{"batch": [' + b" " * (2 << 20) + b"]}")
        r = await http.post("/segment/v1/batch", content=huge, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 413
    rows = await inbox(pg, workspace.id)
    assert [r["name"] for r in rows if r["kind"] == "event"] == ["Viewed", "First", "Second"]
    assert [r["event_id"] for r in rows][-2:] == ["b-1", "b-2"]
    assert rows[-1]["profile_id"] == "anon"


# Partner webhooks


async def create_source(workspace: Workspace, **overrides: Any) -> dict[str, Any]:
    body = {"name": f"partner-{uuid.uuid4().hex[:6]}", "secret": SECRET, "mapping": MAPPING}
    async with workspace.client() as c:
        r = await c.post("/v1/webhooks/sources", json=body | overrides)
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


def signed(
    payload: dict[str, Any], msg_id: str | None = None, at: datetime | None = None
) -> tuple[str, dict[str, str]]:
    data = json.dumps(payload)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, at, data),
        "content-type": "application/json",
    }
    return data, headers


async def test_webhook_source_api_validates_and_never_returns_the_secret(
    workspace: Workspace,
) -> None:
    source = await create_source(workspace)
    assert set(source) >= {"id", "name", "mapping"}
    assert source["mapping"] == MAPPING | {"event_id": None}
    async with workspace.client() as c:
        listed = await c.get("/v1/webhooks/sources")
        bad = await c.post(
            "/v1/webhooks/sources",
            json={"name": "x", "secret": SECRET, "mapping": {"profile_id": "user.id",
                                                            "name": "$.items[a]"}},
        )  # fmt: skip
        editor = await c.post("/v1/api-keys", json={"name": "ed", "role": "editor"})
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["items"]] == [source["id"]]
    for answer in (source, listed.json()):
        text = json.dumps(answer)
        assert SECRET not in text
        assert "secret" not in text
    assert bad.status_code == 422
    assert {e["path"] for e in bad.json()["errors"]} == {"mapping.profile_id", "mapping.name"}
    async with workspace.client(editor.json()["key"]) as c:
        r = await c.post("/v1/webhooks/sources", json={"name": "y", "secret": SECRET,
                                                       "mapping": MAPPING})  # fmt: skip
    assert r.status_code == 403


async def test_signed_webhook_is_mapped_and_stored(workspace: Workspace, pg: asyncpg.Pool) -> None:
    source = await create_source(workspace, mapping=MAPPING | {"event_id": "$.items[0].id"})
    payload = {"type": "invoice.paid", "user": {"id": 1234}, "ts": "2026-03-01T10:00:00Z",
               "items": [{"id": "inv-9"}]}  # fmt: skip
    data, headers = signed(payload)
    async with httpx.AsyncClient(base_url=workspace.stack.url) as http:
        r = await http.post(f"/hooks/{source['id']}", content=data, headers=headers)
        assert r.status_code == 202, r.text
        assert r.json() == {"accepted": 1}
        # Without an event_id in the mapping, the webhook-id is the event id.
        plain = await create_source(workspace)
        data, headers = signed({"type": "refund", "user": {"id": "u-2"}}, msg_id="msg_abc")
        r = await http.post(f"/hooks/{plain['id']}", content=data, headers=headers)
        assert r.status_code == 202, r.text
        data, headers = signed({"user": {"id": "u-2"}})
        r = await http.post(f"/hooks/{plain['id']}", content=data, headers=headers)
        assert r.status_code == 422
        assert [e["path"] for e in r.json()["errors"]] == ["name"]
        r = await http.post(f"/hooks/{uuid.uuid4().hex}", content=data, headers=headers)
        assert r.status_code == 404
    rows = await inbox(pg, workspace.id)
    assert [(r["event_id"], r["profile_id"], r["name"]) for r in rows] == [
        ("inv-9", "1234", "invoice.paid"),
        ("msg_abc", "u-2", "refund"),
    ]
    assert rows[0]["timestamp"] == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert json.loads(rows[0]["properties"]) == payload


async def test_bad_signatures_and_stale_timestamps_are_401(
    workspace: Workspace, pg: asyncpg.Pool
) -> None:
    source = await create_source(workspace)
    url = f"/hooks/{source['id']}"
    payload = {"type": "x", "user": {"id": "u"}}
    async with httpx.AsyncClient(base_url=workspace.stack.url) as http:
        data, headers = signed(payload)
        tampered = data.replace('"u"', '"v"')
        r = await http.post(url, content=tampered, headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        other = Webhook(base64.b64encode(b"another-secret-entirely-000000").decode())
        forged = headers | {"webhook-signature": other.sign(headers["webhook-id"],
                                                            datetime.now(UTC), data)}  # fmt: skip
        assert (await http.post(url, content=data, headers=forged)).status_code == 401
        stale_data, stale = signed(payload, at=datetime.now(UTC) - timedelta(minutes=6))
        assert (await http.post(url, content=stale_data, headers=stale)).status_code == 401
        ahead_data, ahead = signed(payload, at=datetime.now(UTC) + timedelta(minutes=6))
        assert (await http.post(url, content=ahead_data, headers=ahead)).status_code == 401
        missing = {k: v for k, v in headers.items() if k != "webhook-signature"}
        assert (await http.post(url, content=data, headers=missing)).status_code == 401
    assert await inbox(pg, workspace.id) == []
