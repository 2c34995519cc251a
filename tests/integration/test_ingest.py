"""Ingestion: a 202 means the event is in PostgreSQL, and it reaches EVENTS once, in order.

Every test works in its own workspace; the stream and the inbox are read for that
workspace only.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.ingest import (
    GroupCommitWriter,
    InboxRow,
    IngestMetrics,
    StoreFailed,
    inbox_message,
    inbox_relay,
    running_writer,
)
from gateway.models import EventInbox
from gateway.settings import GatewaySettings
from shared import db, outbox
from shared.bus import MSG_ID
from shared.events import AcceptedEvent, partition_of, subject_for, workspace_subjects
from shared.settings import ClockMode
from shared.topology import EVENTS
from tests.conftest import Servers
from tests.helpers import eventually
from tests.stack import SERVICE_TOKEN, Stack, Workspace, new_workspace, running_stack
from waypost.embedded import free_port

PARTITIONS = GatewaySettings().event_partitions


def event(profile_id: str = "alice", **fields: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "profile_id": profile_id, "name": "page_viewed"} | fields


# Reading the inbox and the stream


@pytest.fixture(scope="module")
async def pg(servers: Servers) -> AsyncIterator[asyncpg.Pool]:
    dsn = db.asyncpg_dsn(servers.database_url)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def inbox(pg: asyncpg.Pool, workspace_id: str) -> list[asyncpg.Record]:
    return await pg.fetch(
        f"SELECT * FROM {EventInbox.fullname} WHERE workspace_id = $1 ORDER BY seq", workspace_id
    )


async def drained(pg: asyncpg.Pool, workspace_id: str, at_least: int = 1) -> bool:
    """Every inbox row of the workspace has been published (and there are some)."""
    rows = await inbox(pg, workspace_id)
    return len(rows) >= at_least and all(r["published_at"] is not None for r in rows)


async def stream(nc: NATS, workspace_id: str) -> list[Msg]:
    """Every message of the workspace on EVENTS, in stream order."""
    js = nc.jetstream()
    config = ConsumerConfig(
        ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, max_ack_pending=-1
    )
    sub = await js.pull_subscribe(
        workspace_subjects(workspace_id), stream=EVENTS.name, config=config
    )
    try:
        pending = (await sub.consumer_info()).num_pending
        msgs: list[Msg] = []
        while len(msgs) < pending:
            msgs += await sub.fetch(min(1000, pending - len(msgs)), timeout=10)
        return msgs
    finally:
        await sub.unsubscribe()


async def published(
    pg: asyncpg.Pool, nc: NATS, workspace_id: str, at_least: int = 1
) -> list[AcceptedEvent]:
    """The workspace's envelopes on the stream once the relay has published everything."""
    await eventually(lambda: drained(pg, workspace_id, at_least), "the relay to drain the inbox")
    return [AcceptedEvent.model_validate_json(m.data) for m in await stream(nc, workspace_id)]


# Accepted events on the stream


async def test_an_accepted_event_reaches_the_stream_with_its_envelope(
    workspace: Workspace, pg: asyncpg.Pool, nc: NATS
) -> None:
    key = await workspace.key("ingest")
    sent = event(
        "alice", timestamp="2026-01-31T10:00:00+01:00",
        properties={"cart": {"total": 60, "items": ["a", "b"]}}, traits={"plan": "pro"},
    )  # fmt: skip
    async with workspace.client(key) as c:
        r = await c.post("/v1/events", json=sent)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 1}

    await eventually(lambda: drained(pg, workspace.id), "the event to be published")
    (msg,) = await stream(nc, workspace.id)
    assert msg.subject == subject_for(workspace.id, "alice", PARTITIONS)
    assert msg.subject == f"events.{workspace.id}.{partition_of('alice', PARTITIONS)}"
    assert msg.headers is not None
    assert msg.headers[MSG_ID] == f"{workspace.id}:{sent['event_id']}"
    envelope = AcceptedEvent.model_validate_json(msg.data)
    assert envelope.model_dump(exclude={"accepted_at"}) == {
        "workspace_id": workspace.id,
        "event_id": sent["event_id"],
        "profile_id": "alice",
        "name": "page_viewed",
        "timestamp": datetime(2026, 1, 31, 9, tzinfo=UTC),
        "properties": sent["properties"],
        "traits": {"plan": "pro"},
        "kind": "event",
    }
    assert abs(envelope.accepted_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_event_id_and_timestamp_default_to_a_new_id_and_now(
    workspace: Workspace, pg: asyncpg.Pool, nc: NATS
) -> None:
    async with workspace.client() as c:
        r = await c.post("/v1/events", json={"profile_id": "bob", "name": "signed_up"})
    assert r.status_code == 202, r.text
    (envelope,) = await published(pg, nc, workspace.id)
    assert re.fullmatch(r"[0-9a-f]{32}", envelope.event_id)
    assert envelope.timestamp == envelope.accepted_at
    assert abs(envelope.timestamp - datetime.now(UTC)) < timedelta(minutes=1)
    assert (envelope.properties, envelope.traits) == ({}, {})


async def test_a_missing_timestamp_is_now_on_the_virtual_clock(
    servers: Servers, pg: asyncpg.Pool, nc: NATS
) -> None:
    async with running_stack(servers, clock=ClockMode.VIRTUAL) as virtual:
        ws = await new_workspace(virtual)
        async with ws.client() as c:
            moved = await c.post("/v1/admin/clock", json={"advance": "PT1S"})
            r = await c.post("/v1/events", json={"profile_id": "ivy", "name": "signed_up"})
        assert r.status_code == 202, r.text
        (envelope,) = await published(pg, nc, ws.id)
    # The virtual clock stands still until changed: the very instant it was moved to.
    assert envelope.timestamp == envelope.accepted_at == datetime.fromisoformat(moved.json()["now"])


async def test_events_of_one_profile_keep_their_acceptance_order(
    workspace: Workspace, pg: asyncpg.Pool, nc: NATS
) -> None:
    order: list[str] = []
    async with workspace.client(await workspace.key("ingest")) as c:
        for round_ in range(3):
            one = event("carol", name=f"single-{round_}")
            assert (await c.post("/v1/events", json=one)).status_code == 202
            batch = [event("carol", name=f"batch-{round_}-{i}") for i in range(4)]
            batch.insert(2, event("dave"))  # another profile in between
            r = await c.post("/v1/events/batch", json={"events": batch})
            assert r.status_code == 202, r.text
            profile = await c.put("/v1/profiles/carol", json={"attributes": {"round": round_}})
            assert profile.status_code == 200, profile.text
            order += [one["name"], *[e["name"] for e in batch if e["profile_id"] == "carol"]]
            order.append(f"profile-{round_}")

    await eventually(lambda: drained(pg, workspace.id, at_least=3 * 7), "the relay to drain")
    msgs = await stream(nc, workspace.id)
    carol = [(m, AcceptedEvent.model_validate_json(m.data)) for m in msgs]
    carol = [(m, e) for m, e in carol if e.profile_id == "carol"]
    seen = [e.name if e.kind == "event" else f"profile-{e.traits['round']}" for _, e in carol]
    assert seen == order
    assert {m.subject for m, _ in carol} == {subject_for(workspace.id, "carol", PARTITIONS)}


async def test_a_profile_upsert_answers_the_profile_and_travels_with_the_events(
    workspace: Workspace, pg: asyncpg.Pool, nc: NATS
) -> None:
    body = {"attributes": {"email": "erin@example.com", "tz": "Asia/Tokyo"},
            "consent": {"email": True, "sms": False}}  # fmt: skip
    async with workspace.client(await workspace.key("ingest")) as c:
        r = await c.put("/v1/profiles/erin", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"profile_id": "erin", **body}
    (envelope,) = await published(pg, nc, workspace.id)
    assert envelope.kind == "profile"
    assert envelope.profile_id == "erin"
    assert envelope.traits == body["attributes"]
    assert envelope.properties == {"consent": body["consent"]}


# Duplicates


async def test_a_repeated_event_id_is_accepted_again_and_has_no_further_effect(
    workspace: Workspace, pg: asyncpg.Pool, nc: NATS
) -> None:
    twice, in_batch, across = event(), event("frank"), event("frank")
    async with workspace.client(await workspace.key("ingest")) as c:
        first = await c.post("/v1/events", json=twice)
        second = await c.post("/v1/events", json=twice | {"name": "changed"})
        batch = await c.post("/v1/events/batch", json={"events": [in_batch, in_batch, across]})
        again = await c.post("/v1/events/batch", json={"events": [across, twice]})
    assert [r.status_code for r in (first, second, batch, again)] == [202] * 4
    assert [first.json(), second.json()] == [{"accepted": 1}] * 2
    assert batch.json() == {"accepted": 3, "rejected": []}
    assert again.json() == {"accepted": 2, "rejected": []}

    envelopes = await published(pg, nc, workspace.id, at_least=3)
    rows = await inbox(pg, workspace.id)
    ids = [twice["event_id"], in_batch["event_id"], across["event_id"]]
    assert [r["event_id"] for r in rows] == ids
    assert [e.event_id for e in envelopes] == ids
    assert envelopes[0].name == "page_viewed"  # the first one counts


# Validation


async def test_a_batch_accepts_the_valid_events_and_reports_the_others(
    workspace: Workspace, pg: asyncpg.Pool, nc: NATS
) -> None:
    events = [
        event("gina", name="ok-0"),
        {"name": "no-profile"},
        event("gina", name="ok-2"),
        event("gina", timestamp="2026-01-31T09:00:00"),
        event("gina", colour="red", properties=[]),
        "not an event",
    ]
    async with workspace.client(await workspace.key("ingest")) as c:
        r = await c.post("/v1/events/batch", json={"events": events})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == 2
    rejected = {item["index"]: {e["path"] for e in item["errors"]} for item in body["rejected"]}
    assert rejected == {
        1: {"events[1].profile_id"},
        3: {"events[3].timestamp"},
        4: {"events[4].colour", "events[4].properties"},
        5: {"events[5]"},
    }
    assert [i["index"] for i in body["rejected"]] == [1, 3, 4, 5]
    envelopes = await published(pg, nc, workspace.id, at_least=2)
    assert [e.name for e in envelopes] == ["ok-0", "ok-2"]


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


INVALID: dict[str, tuple[Any, set[str]]] = {
    "missing profile_id": ({"name": "x"}, {"profile_id"}),
    "empty name": ({"profile_id": "p", "name": ""}, {"name"}),
    "long profile_id": ({"profile_id": "p" * 201, "name": "x"}, {"profile_id"}),
    "long event_id": (event(event_id="e" * 201), {"event_id"}),
    "number as profile_id": ({"profile_id": 7, "name": "x"}, {"profile_id"}),
    "time without offset": (event(timestamp="2026-01-31T09:00:00"), {"timestamp"}),
    "time as a number": (event(timestamp=1767171600), {"timestamp"}),
    "impossible time": (event(timestamp="2026-02-30T09:00:00Z"), {"timestamp"}),
    "unknown field": (event(colour="red"), {"colour"}),
    "properties not an object": (event(properties=[1, 2]), {"properties"}),
    "too deep properties": (event(properties=nested(33)), {"properties"}),
    "too deep traits": (event(traits={"a": [nested(31)]}), {"traits"}),
    "too large": (event(properties={"blob": "x" * 65_536}), {"$"}),
    "every problem at once": (
        {"name": "x", "timestamp": "yesterday", "colour": 1},
        {"profile_id", "timestamp", "colour"},
    ),
    "not an object": ([event()], {"$"}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(INVALID))
async def test_an_invalid_event_gets_422_with_every_problem(
    workspace: Workspace, case: str
) -> None:
    body, paths = INVALID[case]
    async with workspace.client(await workspace.key("ingest")) as c:
        r = await c.post("/v1/events", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert {e["path"] for e in r.json()["errors"]} == paths


async def test_nesting_up_to_the_limit_is_accepted(workspace: Workspace) -> None:
    async with workspace.client() as c:
        r = await c.post("/v1/events", json=event(properties=nested(32), traits=nested(32)))
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"events": [event()] * 1001}, "events"),
        ({"events": []}, "events"),
        ({"events": {"0": event()}}, "events"),
        ({}, "events"),
        ({"events": [event()], "extra": 1}, "extra"),
        ([event()], "$"),
        ("events", "$"),
    ],
)
async def test_a_malformed_batch_gets_422(workspace: Workspace, body: Any, path: str) -> None:
    async with workspace.client() as c:
        r = await c.post("/v1/events/batch", json=body)
    assert r.status_code == 422, r.text
    assert [e["path"] for e in r.json()["errors"]] == [path]


NOT_JSON = "the body is not valid JSON"
# Python reads these, PostgreSQL would refuse them: refused at the edge instead.
UNSTORABLE = [
    b'{"profile_id": "p", "name": "n", "properties": {"x": NaN}}',
    b'{"profile_id": "p", "name": "n", "properties": {"x": -Infinity}}',
    b'{"profile_id": "p", "name": "n", "properties": {"x": 1e400}}',
    b'{"profile_id": "p", "name": "n", "traits": {"x": "\\ud800"}}',
]


async def test_bodies_that_are_not_json_get_422(workspace: Workspace) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    async with workspace.client() as c:
        for path in ("/v1/events", "/v1/events/batch"):
            for content in (b"{not json", b"", deep, *UNSTORABLE):
                r = await c.post(path, content=content)
                assert r.status_code == 422, (path, content[:10], r.text)
                assert r.json()["errors"] == [
                    {"path": "$", "message": "the body is not valid JSON"}
                ]


async def test_an_invalid_profile_upsert_gets_422(workspace: Workspace) -> None:
    async with workspace.client() as c:
        bad = await c.put(
            "/v1/profiles/p1",
            json={"attributes": nested(33), "consent": {"email": "yes"}, "tags": []},
        )
        long_id = await c.put(f"/v1/profiles/{'p' * 201}", json={})
    assert bad.status_code == 422
    assert {e["path"] for e in bad.json()["errors"]} == {"attributes", "consent.email", "tags"}
    assert long_id.status_code == 422


# Access


@pytest.mark.parametrize(("role", "status"), [("ingest", 202), ("editor", 202), ("viewer", 403)])
async def test_ingest_roles_may_post_events_and_readers_may_not(
    workspace: Workspace, role: str, status: int
) -> None:
    key = await workspace.key(role)
    async with workspace.client(key) as c:
        single = await c.post("/v1/events", json=event())
        batch = await c.post("/v1/events/batch", json={"events": [event()]})
        profile = await c.put("/v1/profiles/p1", json={"attributes": {}})
    assert single.status_code == status
    assert batch.status_code == status
    assert profile.status_code == (200 if status == 202 else 403)


async def test_ingestion_needs_a_key_and_a_known_method(stack: Stack) -> None:
    async with stack.client(None) as anonymous:
        r = await anonymous.post("/v1/events", json=event())
    assert r.status_code == 401
    async with stack.client(stack.bootstrap_key) as c:
        listing = await c.get("/v1/events")
        head = await c.head("/v1/admin/clock")
    assert listing.status_code == 405
    assert head.status_code == 405  # answered by the gateway, never forwarded


async def test_the_workspace_comes_from_the_key_not_the_body(workspace: Workspace) -> None:
    async with workspace.client() as c:
        r = await c.post("/v1/events", json=event(workspace_id="someone-else"))
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "workspace_id"


async def test_the_api_document_shows_ingestion_beside_the_runtime_reads(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as c:
        paths = (await c.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/events"]) == {"post"}
    assert set(paths["/v1/events/batch"]) == {"post"}
    assert {"put", "get", "delete"} <= set(paths["/v1/profiles/{profile_id}"])


# Group commit and the relay


async def _commits(client: httpx.AsyncClient) -> tuple[float, float]:
    text = (await client.get("/metrics")).text
    count = re.search(r"^waypost_ingest_commit_rows_count (\S+)$", text, re.M)
    total = re.search(r"^waypost_ingest_commit_rows_sum (\S+)$", text, re.M)
    assert count is not None
    assert total is not None
    return float(count.group(1)), float(total.group(1))


async def test_concurrent_requests_share_commits(workspace: Workspace) -> None:
    requests = 100
    async with workspace.client() as c:
        commits_before, rows_before = await _commits(c)
        answers = await asyncio.gather(
            *(c.post("/v1/events", json=event(f"p{i}")) for i in range(requests))
        )
        commits_after, rows_after = await _commits(c)
    assert [r.status_code for r in answers] == [202] * requests
    assert rows_after - rows_before == requests
    assert commits_after - commits_before < requests


def _rows(workspace_id: str, count: int) -> list[InboxRow]:
    now = datetime.now(UTC)
    return [
        InboxRow(workspace_id, uuid.uuid4().hex, "p", "event", f"e{i}", now, now, "{}", "{}")
        for i in range(count)
    ]


async def test_the_writer_groups_whole_requests_up_to_its_limit_in_order(
    servers: Servers, pg: asyncpg.Pool
) -> None:
    engine = db.create_engine(servers.database_url, pool_size=1)
    registry = CollectorRegistry()
    writer = GroupCommitWriter(
        db.make_sessionmaker(engine), window_s=0.1, max_rows=10,
        metrics=IngestMetrics(registry), on_commit=lambda: None,
    )  # fmt: skip
    workspace_id = uuid.uuid4().hex
    requests = [_rows(workspace_id, 4) for _ in range(5)]
    try:
        async with running_writer(writer):
            await asyncio.gather(*(writer.write(rows) for rows in requests))
    finally:
        await engine.dispose()
    # 4 + 4 fit in 10, a third request would not: [8, 8, 4], never a request split.
    assert registry.get_sample_value("waypost_ingest_commit_rows_count") == 3
    assert registry.get_sample_value("waypost_ingest_commit_rows_sum") == 20
    stored = [r["event_id"] for r in await inbox(pg, workspace_id)]
    assert stored == [row.event_id for rows in requests for row in rows]


async def test_a_failed_commit_answers_503_and_stores_nothing() -> None:
    engine = db.create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none")
    writer = GroupCommitWriter(
        db.make_sessionmaker(engine), window_s=0.0, max_rows=10,
        metrics=IngestMetrics(CollectorRegistry()), on_commit=lambda: None,
    )  # fmt: skip
    try:
        async with running_writer(writer):
            with pytest.raises(StoreFailed) as failed:
                await writer.write(_rows("w", 2))
    finally:
        await engine.dispose()
    assert failed.value.status == 503


async def test_a_request_that_cannot_be_stored_fails_alone(
    servers: Servers, pg: asyncpg.Pool
) -> None:
    engine = db.create_engine(servers.database_url, pool_size=1)
    writer = GroupCommitWriter(
        db.make_sessionmaker(engine), window_s=0.1, max_rows=100,
        metrics=IngestMetrics(CollectorRegistry()), on_commit=lambda: None,
    )  # fmt: skip
    workspace_id = uuid.uuid4().hex
    good, other = _rows(workspace_id, 2), _rows(workspace_id, 1)
    bad = [_rows(workspace_id, 1)[0]._replace(properties="not json")]
    try:
        async with running_writer(writer):
            results = await asyncio.gather(
                writer.write(good), writer.write(bad), writer.write(other),
                return_exceptions=True,
            )  # fmt: skip
    finally:
        await engine.dispose()
    assert results[0] is None
    assert isinstance(results[1], StoreFailed)
    assert results[2] is None
    stored = [r["event_id"] for r in await inbox(pg, workspace_id)]
    assert stored == [row.event_id for row in good + other]


async def test_rows_left_unpublished_are_published_once_when_a_relay_runs(
    workspace: Workspace, servers: Servers, pg: asyncpg.Pool, nc: NATS
) -> None:
    engine = db.create_engine(servers.database_url, pool_size=1)
    settings = GatewaySettings(database_url=servers.database_url, nats_url=servers.nats_url)
    lock = outbox.relay_lock_key(EventInbox)
    events = [event("hana", name=f"e{i}") for i in range(3)]
    try:
        async with pg.acquire() as holder:
            # While this lock is held no relay works on the inbox, as after a crash.
            await holder.execute("SELECT pg_advisory_lock($1)", lock)
            try:
                async with workspace.client() as c:
                    r = await c.post("/v1/events/batch", json={"events": events})
                assert r.json()["accepted"] == 3
                rows = await inbox(pg, workspace.id)
                assert [row["published_at"] for row in rows] == [None] * 3
                # A relay that died after publishing the first row, before marking it:
                await _publish_first(engine, nc, workspace.id)
            finally:
                await holder.execute("SELECT pg_advisory_unlock($1)", lock)

        relay = inbox_relay(db.make_sessionmaker(engine), nc.jetstream(), settings)
        async with outbox.running(relay):
            envelopes = await published(pg, nc, workspace.id, at_least=3)
    finally:
        await engine.dispose()
    assert [e.name for e in envelopes] == ["e0", "e1", "e2"]


async def test_published_events_leave_the_inbox_after_the_retention(
    workspace: Workspace, servers: Servers, pg: asyncpg.Pool, nc: NATS
) -> None:
    async with workspace.client() as c:
        assert (await c.post("/v1/events/batch", json={"events": [event(), event()]})).is_success
        await eventually(lambda: drained(pg, workspace.id, at_least=2), "the events published")
        lock = outbox.relay_lock_key(EventInbox)
        engine = db.create_engine(servers.database_url, pool_size=1)
        async with pg.acquire() as holder:
            await holder.execute("SELECT pg_advisory_lock($1)", lock)  # the next stays pending
            try:
                pending = event()
                assert (await c.post("/v1/events", json=pending)).is_success
                relay = outbox.OutboxRelay(
                    db.make_sessionmaker(engine), EventInbox, nc.jetstream(),
                    keep_published_s=1e-6,
                )  # fmt: skip
                while await relay.prune_once():
                    pass
                left = [r["event_id"] for r in await inbox(pg, workspace.id)]
            finally:
                await holder.execute("SELECT pg_advisory_unlock($1)", lock)
                await engine.dispose()
    assert left == [pending["event_id"]]  # published ones went, the unpublished one stays


async def _publish_first(engine: AsyncEngine, nc: NATS, workspace_id: str) -> None:
    query = (
        select(EventInbox)
        .where(EventInbox.c.workspace_id == workspace_id)
        .order_by(EventInbox.c.seq)
        .limit(1)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one()
    message = inbox_message(row, PARTITIONS)
    await nc.jetstream().publish(message.subject, message.data, headers={MSG_ID: message.msg_id})


# A crash of the gateway under load


class GatewayProcess:
    """``waypost gateway`` as its own process, on the test servers, behind the stack's
    designer for authentication."""

    def __init__(self, stack: Stack, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        env |= {
            "WAYPOST_DATABASE_URL": stack.servers.database_url,
            "WAYPOST_NATS_URL": stack.servers.nats_url,
            "WAYPOST_PORT": str(self.port),
            "WAYPOST_RATE_LIMIT_PER_S": "100000",
            "WAYPOST_RATE_LIMIT_BURST": "100000",
            "WAYPOST_LOG_LEVEL": "WARNING",
            "WAYPOST_SERVICE_TOKEN": SERVICE_TOKEN,
            **{f"WAYPOST_{n.upper()}_URL": u for n, u in stack.service_urls.items()},
        }
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "waypost", "gateway"], env=env, stdout=out, stderr=out
            )

    async def started(self) -> None:
        async def up() -> bool:
            assert self.proc.poll() is None, "the gateway exited while starting"
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(f"{self.url}/healthz", timeout=1)).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(up, "the gateway process to start", within_s=60)

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.proc.wait, 10)

    async def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                await self.kill()


async def _post_until_refused(
    url: str, key: str, client_no: int, accepted: list[str], refused: list[str]
) -> None:
    """Post singles and batches until the gateway goes away; note what got a 202."""
    n = 0
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as c:
        while True:
            n += 1
            events = [event(f"crash-{client_no}-{n % 5}") for _ in range(1 if n % 2 else 20)]
            try:
                if len(events) == 1:
                    r = await c.post("/v1/events", json=events[0])
                else:
                    r = await c.post("/v1/events/batch", json={"events": events})
            except httpx.HTTPError:
                return
            ids = [e["event_id"] for e in events]
            (accepted if r.status_code == 202 else refused).extend(ids)


async def test_every_202_survives_a_kill_9_and_is_published_exactly_once(
    workspace: Workspace, pg: asyncpg.Pool, nc: NATS, tmp_path: Path
) -> None:
    key = await workspace.key("ingest")
    first = GatewayProcess(workspace.stack, tmp_path / "gateway.log")
    accepted: list[str] = []
    refused: list[str] = []
    try:
        await first.started()
        load = [
            asyncio.create_task(_post_until_refused(first.url, key, i, accepted, refused))
            for i in range(8)
        ]

        async def enough() -> bool:
            return len(accepted) >= 800

        await eventually(enough, "events to be accepted under load", within_s=60)
        await first.kill()  # mid-load: requests in flight, commits and publishes under way
        await asyncio.gather(*load)
    finally:
        await first.stop()
    assert not refused

    second = GatewayProcess(workspace.stack, tmp_path / "gateway.log")
    try:
        await second.started()
        await eventually(
            lambda: drained(pg, workspace.id, at_least=len(accepted)),
            "a relay (the restarted gateway's or another) to publish what the first left",
            within_s=60,
        )
    finally:
        await second.stop()

    stored = collections.Counter(r["event_id"] for r in await inbox(pg, workspace.id))
    assert set(accepted) <= set(stored)
    assert max(stored.values()) == 1
    on_stream = collections.Counter(
        (m.headers or {}).get(MSG_ID) for m in await stream(nc, workspace.id)
    )
    assert on_stream == collections.Counter(f"{workspace.id}:{e}" for e in stored)
