"""No single message stops a queue, and no input fails a group commit.

Profile attributes and traits are capped at the gateway (422 naming the limit) and the
merged profile in the runtime (the update dead-lettered); a row too large for NATS, or one
the stream keeps refusing, is moved aside with the reason while the rows behind it, of
every workspace, go out; times outside 1970..9999 are refused before they reach a commit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry
from sqlalchemy import Table, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.ingest import inbox_relay
from gateway.models import EventInbox
from gateway.settings import GatewaySettings
from shared import bus, db, outbox
from shared.metrics import RelayMetrics
from shared.topology import ACTIVATIONS, DEADLETTER, StreamSpec
from tests.conftest import Servers
from tests.helpers import eventually, serving
from tests.integration.test_segment_and_hooks import basic, create_source, signed
from tests.stack import Workspace, new_workspace

CAP = 32 * 1024


def padding(size: int) -> str:
    return "x" * size


@pytest.fixture(scope="module")
async def pg(servers: Servers) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db.asyncpg_dsn(servers.database_url), min_size=1, max_size=3)
    yield pool
    await pool.close()


async def dead_letters(nc: NATS, subjects: str) -> list[Msg]:
    """Every record on the dead-letter stream under ``subjects``."""
    return await on_stream(nc, DEADLETTER.name, subjects)


async def on_stream(nc: NATS, stream: str, subjects: str) -> list[Msg]:
    """Every message of ``stream`` under ``subjects``."""
    js = nc.jetstream()
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, max_ack_pending=-1
    )
    sub = await js.pull_subscribe(subjects, stream=stream, config=config)
    try:
        pending = (await sub.consumer_info()).num_pending or 0
        msgs: list[Msg] = []
        while len(msgs) < pending:
            msgs += await sub.fetch(min(500, pending - len(msgs)), timeout=10)
        return msgs
    finally:
        await sub.unsubscribe()


def header(msg: Msg, name: str) -> str:
    assert msg.headers is not None
    return msg.headers[name]


def problems(r: httpx.Response) -> dict[str, str]:
    return {e["path"]: e["message"] for e in r.json()["errors"]}


# Caps at the gateway


async def test_profile_attributes_and_traits_over_the_cap_are_422_naming_the_limit(
    workspace: Workspace,
) -> None:
    big = {"notes": padding(CAP)}
    async with workspace.client(await workspace.key("ingest")) as c:
        r = await c.put("/v1/profiles/p-big", json={"attributes": big})
        assert r.status_code == 422, r.text
        assert list(problems(r)) == ["attributes"]
        assert str(CAP) in problems(r)["attributes"]
        ok = await c.put("/v1/profiles/p-big", json={"attributes": {"notes": padding(CAP - 100)}})
        assert ok.status_code == 200, ok.text

        r = await c.post("/v1/events", json={"profile_id": "p", "name": "x", "traits": big})
        assert r.status_code == 422, r.text
        assert str(CAP) in problems(r)["traits"]

        batch = [
            {"profile_id": "p", "name": "fine"},
            {"profile_id": "p", "name": "fat", "traits": big},
        ]
        r = await c.post("/v1/events/batch", json={"events": batch})
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 1
        [rejected] = r.json()["rejected"]
        assert rejected["index"] == 1
        assert [e["path"] for e in rejected["errors"]] == ["events[1].traits"]


async def test_segment_traits_and_webhook_payloads_over_their_caps_are_refused(
    workspace: Workspace,
) -> None:
    big = {"notes": padding(CAP)}
    key = await workspace.key("ingest")
    async with httpx.AsyncClient(base_url=workspace.stack.url, headers=basic(key)) as http:
        r = await http.post("/segment/v1/identify", json={"userId": "s", "traits": big})
        # Segment's endpoints answer problems in a message as 400, as they always have.
        assert r.status_code == 400, r.text
        assert str(CAP) in problems(r)["traits"]
        track = {"type": "track", "userId": "s", "event": "e", "context": {"traits": big}}
        r = await http.post("/segment/v1/batch", json={"batch": [track]})
        assert r.status_code == 400, r.text
        assert list(problems(r)) == ["batch[0].context.traits"]

    # A webhook's payload becomes the event's properties: it is held to the event's size.
    source = await create_source(workspace)
    data, headers = signed({"type": "signed_up", "user": {"id": "w", "bio": padding(2 * CAP)}})
    async with httpx.AsyncClient(base_url=workspace.stack.url) as http:
        r = await http.post(f"/hooks/{source['id']}", content=data, headers=headers)
    assert r.status_code == 422, r.text
    assert str(2 * CAP) in problems(r)["$"]


# The merged profile in the runtime


async def test_an_update_that_would_make_the_profile_too_large_is_dead_lettered(
    workspace: Workspace, nc: NATS
) -> None:
    profile = f"grow-{uuid.uuid4().hex[:8]}"
    half = CAP // 2 + 100
    async with workspace.client(await workspace.key("ingest")) as c:
        for attributes in ({"a": padding(half)}, {"b": padding(half)}, {"c": "small"}):
            r = await c.put(f"/v1/profiles/{profile}", json={"attributes": attributes})
            assert r.status_code == 200, r.text

    async def merged() -> dict[str, Any] | None:
        async with workspace.client() as c:
            r = await c.get(f"/v1/profiles/{profile}")
        found = r.json()["attributes"] if r.status_code == 200 else {}
        return found if "c" in found else None

    # The refused update changes nothing, and the one after it still applies.
    attributes = await eventually(merged, "the update after the refused one")
    assert set(attributes) == {"a", "c"}

    async def recorded() -> list[Msg]:
        found = []
        for msg in await dead_letters(nc, "deadletter.EVENTS.>"):
            body = json.loads(msg.data)
            if body.get("profile_id") == profile:
                found.append(msg)
        return found

    [record] = await eventually(recorded, "the refused update on the dead-letter stream")
    assert "b" in json.loads(record.data)["traits"]
    assert str(CAP) in header(record, bus.DEAD_REASON)


# Activations carry what their template reads


async def test_an_activation_carries_the_attributes_its_template_reads(
    workspace: Workspace, nc: NATS
) -> None:
    received: list[dict[str, Any]] = []
    sink = FastAPI()

    @sink.post("/sms")
    async def sms(request: Request) -> dict[str, bool]:
        received.append(json.loads(await request.body()))
        return {"ok": True}

    profile = f"ada-{uuid.uuid4().hex[:6]}"
    async with serving(sink) as url, workspace.client() as c:
        conn = await c.post(
            "/v1/connectors",
            json={"name": f"c{uuid.uuid4().hex[:6]}", "type": "sms_http",
                  "config": {"url": f"{url}/sms"}},
        )  # fmt: skip
        body = "Hi {{ profile.first_name }}, your plan: {{ profile['plan'] }}"
        tmpl = await c.post("/v1/templates", json={"name": f"t{uuid.uuid4().hex[:6]}",
                            "channel": "sms", "body": body, "status": "ready"})  # fmt: skip
        journey = {
            "name": f"Welcome {uuid.uuid4().hex[:6]}",
            "stages": [{"name": "Signed up", "entry": {"event": "signup"}, "steps": [
                {"id": "hello", "type": "activation", "channel": "sms",
                 "connector_id": conn.json()["id"], "template_id": tmpl.json()["id"],
                 "to_attribute": "phone"}]}],
        }  # fmt: skip
        jid = (await c.post("/v1/journeys", json=journey)).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
        attributes = {"first_name": "Ada", "plan": "pro", "phone": "+15550100",
                      "timezone": "Europe/Paris", "notes": padding(CAP // 2)}  # fmt: skip
        assert (await c.put(f"/v1/profiles/{profile}", json={"attributes": attributes})).is_success
        r = await c.post("/v1/events", json={"profile_id": profile, "name": "signup"})
        assert r.status_code == 202, r.text

        async def activation() -> dict[str, Any] | None:
            for msg in await on_stream(
                nc, ACTIVATIONS.name, f"activations.requested.{workspace.id}"
            ):
                payload: dict[str, Any] = json.loads(msg.data)
                if payload["profile_id"] == profile:
                    return payload
            return None

        requested = await eventually(activation, "the activation")
        await eventually(lambda: _arrived(received), "the message at the provider")
    assert requested["context"]["profile"] == {
        "first_name": "Ada",
        "plan": "pro",
        "timezone": "Europe/Paris",
    }
    assert requested["to"] == "+15550100"
    assert "Hi Ada, your plan: pro" in json.dumps(received[0])


async def _arrived(received: list[dict[str, Any]]) -> bool:
    return bool(received)


# Relays that no row can stop


async def test_a_row_too_large_to_publish_is_dead_lettered_and_the_rows_behind_it_go_out(
    workspace: Workspace, pg: asyncpg.Pool, nc: NATS, servers: Servers
) -> None:
    other = await new_workspace(workspace.stack)
    limit = nc.max_payload
    lock = outbox.relay_lock_key(EventInbox)
    async with pg.acquire() as holder:
        # While this lock is held no relay works on the inbox: what follows waits behind
        # the oversized row, as it would behind a row written before the caps existed.
        await holder.execute("SELECT pg_advisory_lock($1)", lock)
        try:
            seq = await pg.fetchval(
                f"INSERT INTO {EventInbox.fullname} (workspace_id, event_id, profile_id, kind, "
                "name, timestamp, accepted_at, properties, traits) "
                "VALUES ($1, $2, 'huge', 'event', 'huge', now(), now(), '{}', $3::jsonb) "
                "RETURNING seq",
                workspace.id, uuid.uuid4().hex, json.dumps({"blob": padding(limit)}),
            )  # fmt: skip
            # And a row no message can be made of (a workspace id no subject can hold).
            unusable = await pg.fetchval(
                f"INSERT INTO {EventInbox.fullname} (workspace_id, event_id, profile_id, kind, "
                "name, timestamp, accepted_at, properties, traits) "
                "VALUES ('no.such', $1, 'p', 'event', 'x', now(), now(), '{}', '{}') "
                "RETURNING seq",
                uuid.uuid4().hex,
            )  # fmt: skip
            for ws, profile in ((workspace, "same-workspace"), (other, "other-workspace")):
                async with ws.client() as c:
                    r = await c.post("/v1/events", json={"profile_id": profile, "name": "hi"})
                    assert r.status_code == 202, r.text
        finally:
            await holder.execute("SELECT pg_advisory_unlock($1)", lock)

    async def known(ws: Workspace, profile: str) -> bool:
        async with ws.client() as c:
            return (await c.get(f"/v1/profiles/{profile}")).status_code == 200

    await eventually(lambda: known(workspace, "same-workspace"), "the row behind, same workspace")
    await eventually(lambda: known(other, "other-workspace"), "the row behind, other workspace")
    await eventually(
        lambda: pg.fetchval(
            f"SELECT published_at IS NOT NULL FROM {EventInbox.fullname} WHERE seq = $1", seq
        ),
        "the oversized row moved aside",
    )
    row = f"{EventInbox.fullname}:{seq}"
    subject = "deadletter.RELAY.gateway-event_inbox"

    async def records() -> list[Msg]:
        return await _records_of(nc, subject, row)

    [record] = await eventually(records, "the oversized row's dead-letter record")
    assert str(limit) in header(record, bus.DEAD_REASON)
    assert header(record, bus.DEAD_SUBJECT).startswith(f"events.{workspace.id}.")
    assert int(header(record, bus.DEAD_DROPPED)) > limit  # the body did not fit: headers only

    [broken] = await eventually(
        lambda: _records_of(nc, subject, f"{EventInbox.fullname}:{unusable}"),
        "the unusable row's dead-letter record",
    )
    assert "no message can be made" in header(broken, bus.DEAD_REASON)

    # The row is settled in its table: later turns (of this relay or one started after a
    # restart) never meet it again.
    async with other.client() as c:
        assert (await c.post("/v1/events", json={"profile_id": "later", "name": "hi"})).is_success
    await eventually(lambda: known(other, "later"), "a later row")
    assert len(await records()) == 1


async def test_a_due_timer_too_large_to_fire_is_dead_lettered_and_the_others_fire(
    workspace: Workspace, pg: asyncpg.Pool, nc: NATS
) -> None:
    huge, small = f"huge-{uuid.uuid4().hex}", f"small-{uuid.uuid4().hex}"
    for timer_id, payload in ((huge, {"blob": padding(nc.max_payload)}), (small, {})):
        await pg.execute(
            "INSERT INTO scheduler.timers (timer_id, workspace_id, profile_id, journey_id, kind, "
            "due_at, payload, state) VALUES ($1, $2, 'nobody', 'j', 'wait', now(), $3::jsonb, "
            "'pending')",
            timer_id, workspace.id, json.dumps(payload),
        )  # fmt: skip

    async def state(timer_id: str) -> str:
        found: str = await pg.fetchval(
            "SELECT state FROM scheduler.timers WHERE timer_id = $1", timer_id
        )
        return found

    await eventually(lambda: _is(state(small), "fired"), "the small timer to fire")
    await eventually(lambda: _is(state(huge), "cancelled"), "the huge one to be moved aside")
    records = [
        m
        for m in await dead_letters(nc, "deadletter.TIMERS.scheduler-release")
        if header(m, bus.DEAD_SUBJECT) == f"timers.fired.{workspace.id}"
    ]
    assert len(records) == 1
    assert str(nc.max_payload) in header(records[0], bus.DEAD_REASON)


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected


async def test_the_inbox_relay_skips_the_later_rows_of_a_profile_held_back(
    servers: Servers, nc: NATS, engine: AsyncEngine, pg: asyncpg.Pool
) -> None:
    """The inbox's order key is the workspace and profile: while a row is retried, the
    later rows of its profile are left out of each turn and every other profile's are in."""
    ws = f"w{uuid.uuid4().hex[:8]}"
    settings = GatewaySettings(database_url=servers.database_url)
    relay = inbox_relay(db.make_sessionmaker(engine), nc.jetstream(), settings)
    lock = outbox.relay_lock_key(EventInbox)
    async with pg.acquire() as holder:
        await holder.execute("SELECT pg_advisory_lock($1)", lock)  # no relay publishes these
        try:
            seqs = {}
            for name, profile in (("first", "held"), ("free", "free"), ("later", "held")):
                seqs[name] = await pg.fetchval(
                    f"INSERT INTO {EventInbox.fullname} (workspace_id, event_id, profile_id, "
                    "kind, name, timestamp, accepted_at, properties, traits) VALUES ($1, $2, $3, "
                    "'event', 'x', now(), now(), '{}', '{}') RETURNING seq",
                    ws, uuid.uuid4().hex, profile,
                )  # fmt: skip
            relay._failing = {seqs["first"]: outbox._Failing(f"{ws}/held", 0.0)}
            async with engine.connect() as conn:
                rows = (await conn.execute(relay._unpublished().limit(None))).all()
            mine = [r.seq for r in rows if r.workspace_id == ws]
        finally:
            await pg.execute(
                f"UPDATE {EventInbox.fullname} SET published_at = now() WHERE workspace_id = $1",
                ws,
            )
            await holder.execute("SELECT pg_advisory_unlock($1)", lock)
    assert mine == [seqs["first"], seqs["free"]]


async def _records_of(nc: NATS, subject: str, row: str) -> list[Msg]:
    return [m for m in await dead_letters(nc, subject) if header(m, outbox.DEAD_ROW) == row]


async def _insert(pool: asyncpg.Pool, table: Table, subject: str, payload: str) -> int:
    row_id: int = await pool.fetchval(
        f"INSERT INTO {table.fullname} (msg_id, subject, payload) VALUES ($1, $2, $3::jsonb) "
        "RETURNING id",
        uuid.uuid4().hex, subject, payload,
    )  # fmt: skip
    return row_id


@pytest.mark.parametrize("plain", [False, True], ids=["orm", "asyncpg"])
async def test_an_outbox_row_refused_by_the_stream_holds_back_only_its_subject(
    engine: AsyncEngine, table: Table, stream: StreamSpec, nc: NATS, pg: asyncpg.Pool,
    servers: Servers, plain: bool,
) -> None:  # fmt: skip
    """Rows on a subject no stream takes are refused while the others go out; after the
    give-up they are moved aside with the reason, and a restarted relay does not retry
    them; an oversized row is moved aside at once."""
    good = stream.subjects[0].replace(">", "ok")
    nowhere = f"nowhere{uuid.uuid4().hex[:8]}.x"
    refused = await _insert(pg, table, nowhere, '{"n": 0}')
    oversized = await _insert(pg, table, good, json.dumps({"blob": padding(nc.max_payload)}))
    await _insert(pg, table, good, '{"n": 1}')
    registry = CollectorRegistry()
    metrics = RelayMetrics(registry)
    pool = await db.create_raw_pool(servers.database_url, 2) if plain else None
    sessions = db.make_sessionmaker(engine)
    try:
        relay = outbox.OutboxRelay(
            sessions, table, nc.jetstream(), pool=pool, give_up_s=3600, metrics=metrics
        )
        assert await relay.relay_once() == 2  # the oversized row and the one behind it
        await _insert(pg, table, good, '{"n": 2}')
        held = await _insert(pg, table, nowhere, '{"n": 3}')  # waits behind the refused one
        assert await relay.relay_once() == 1
        assert set(relay._failing) == {refused}

        # Restarted with a shorter patience: the refused row goes aside, and the one it held
        # (refused too); the oversized row, settled, is not met again.
        relay = outbox.OutboxRelay(
            sessions, table, nc.jetstream(), pool=pool, give_up_s=0, give_up_attempts=1,
            metrics=metrics,
        )  # fmt: skip
        assert await relay.relay_once() == 2
        assert await relay.relay_once() == 0
    finally:
        if pool is not None:
            await pool.close()

    async with sessions() as s:
        unpublished = (
            await s.execute(select(table.c.id).where(table.c.published_at.is_(None)))
        ).all()
    assert unpublished == []
    sub = await nc.jetstream().pull_subscribe(good, stream=stream.name)
    bodies = [json.loads(m.data) for m in await sub.fetch(10, timeout=5)]
    assert bodies == [{"n": 1}, {"n": 2}]
    subject = f"deadletter.RELAY.{table.fullname.replace('.', '-')}"
    records = {header(m, outbox.DEAD_ROW): m for m in await dead_letters(nc, subject)}
    assert set(records) == {f"{table.fullname}:{i}" for i in (refused, oversized, held)}
    reason = header(records[f"{table.fullname}:{refused}"], bus.DEAD_REASON)
    assert "NoStreamResponseError" in reason
    assert json.loads(records[f"{table.fullname}:{held}"].data) == {"n": 3}
    value = registry.get_sample_value
    labels = {"table": table.fullname}
    assert value("waypost_outbox_rows_dead_lettered_total", labels | {"reason": "too_large"}) == 1
    assert value("waypost_outbox_rows_dead_lettered_total", labels | {"reason": "refused"}) == 2


async def test_a_message_the_server_would_refuse_is_never_sent(nc: NATS) -> None:
    """The size counted is the server's: a message of exactly ``max_payload`` bytes with
    its headers goes out; one byte more raises, and the connection stays up."""
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:8]
    spec = StreamSpec(f"SZ_{tag}", (f"sz{tag}.>",), "size test")
    await bus.ensure_streams(js, [spec])
    try:
        subject, msg_id = f"sz{tag}.x", "m-1"
        headers = {bus.MSG_ID: msg_id}
        room = nc.max_payload - bus.header_bytes(headers)
        with pytest.raises(bus.TooLarge):
            await bus.publish(js, subject, b"x" * (room + 1), msg_id)
        await bus.publish(js, subject, b"x" * room, msg_id)
        assert nc.is_connected
        assert (await js.stream_info(spec.name)).state.messages == 1
    finally:
        await js.delete_stream(spec.name)


# Times out of range


async def test_times_out_of_range_are_422_and_never_fail_the_commit(workspace: Workspace) -> None:
    bad = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00", "1969-12-31T23:59:59Z")
    async with workspace.client(await workspace.key("ingest")) as c:
        for stamp in bad:
            r = await c.post(
                "/v1/events", json={"profile_id": "t", "name": "x", "timestamp": stamp}
            )
            assert r.status_code == 422, (stamp, r.text)
            assert "out of range" in problems(r)["timestamp"]
        # The valid events of a batch are accepted beside the refused one.
        batch = [
            {"profile_id": "t", "name": "ok", "timestamp": "2026-01-01T00:00:00+01:00"},
            {"profile_id": "t", "name": "bad", "timestamp": bad[0]},
            {"profile_id": "t", "name": "edge", "timestamp": "9999-12-31T23:59:59Z"},
        ]
        r = await c.post("/v1/events/batch", json={"events": batch})
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 2
        assert [x["errors"][0]["path"] for x in r.json()["rejected"]] == ["events[1].timestamp"]

    key = await workspace.key("ingest")
    async with httpx.AsyncClient(base_url=workspace.stack.url, headers=basic(key)) as http:
        track = {"type": "track", "userId": "t", "event": "e", "timestamp": bad[0]}
        r = await http.post("/segment/v1/batch", json={"batch": [track]})
        assert r.status_code == 400, r.text
        assert list(problems(r)) == ["batch[0].timestamp"]
    source = await create_source(workspace)
    data, headers = signed({"type": "paid", "user": {"id": "t"}, "ts": bad[0]})
    async with httpx.AsyncClient(base_url=workspace.stack.url) as http:
        r = await http.post(f"/hooks/{source['id']}", content=data, headers=headers)
    assert r.status_code == 422, r.text
    assert list(problems(r)) == ["timestamp"]


async def test_a_failed_statement_never_shows_its_parameters(engine: AsyncEngine) -> None:
    """Engines hide statement parameters, and what the group commit logs of a failure is
    the error's type and SQLSTATE: the driver's own text names the values."""
    secret = f"someone-else@{uuid.uuid4().hex}.example"
    statement = text("SELECT CAST(:a AS text[]), CAST(:b AS int)")
    with pytest.raises(DBAPIError) as raised:
        async with engine.connect() as conn:
            await conn.execute(statement, {"a": [secret], "b": "not a number"})
    assert secret not in str(raised.value)
    assert "not a number" not in db.describe_error(raised.value)
    assert "SQLSTATE" in db.describe_error(raised.value)
