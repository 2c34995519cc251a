"""Erasing a profile through the gateway leaves nothing of it behind, and nothing that
arrives late brings it back: not feedback on its messages, not a tracking hit, not an
event accepted before the erasure. Only a partner's event after the erasure makes it again.
Every table that held the profile's data is read directly."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request, Response
from nats.aio.client import Client as NATS

from shared import bus, db
from shared.erasure import profile_key
from shared.events import AcceptedEvent, subject_for
from shared.tracking import Mark, sign
from tests.helpers import eventually, serving
from tests.stack import TRACKING_SECRET, Stack, Workspace

PARTITIONS = 16
PHONE, BOB_PHONE = "+4915550123456", "+4915550654321"
SECRET_VALUE, BOB_VALUE = "ada-private-plan-7f3e", "bob-private-plan-2c9a"

# Every table of every schema that holds a profile's data, and the column naming the profile.
PROFILE_TABLES = {
    "runtime.profiles": "profile_id",
    "runtime.memberships": "profile_id",
    "runtime.timeline": "profile_id",
    "runtime.explanations": "profile_id",
    "gateway.event_inbox": "profile_id",
}
# Tables that may keep rows of an erased profile, but nothing personal in them.
SEARCHED = ["runtime.outbox", "runtime.trigger_stats", "activator.deliveries",
            "activator.outbox", "gateway.event_inbox"]  # fmt: skip


@dataclass
class Provider:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    """An SMS provider that refuses every number, quoting it, as real ones do."""
    state = Provider()
    app = FastAPI()

    @app.post("/sms")
    async def sms(request: Request) -> Response:
        body = await request.json()
        state.requests.append(body)
        return Response(json.dumps({"error": f"number {body['to']} is not reachable"}), 400)

    async with serving(app) as url:
        state.url = f"{url}/sms"
        yield state


@pytest.fixture
async def conn(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(db.asyncpg_dsn(stack.servers.database_url))
    yield c
    await c.close()


async def live_sms_journey(c: httpx.AsyncClient, provider: Provider) -> str:
    connector = await c.post("/v1/connectors", json={
        "name": f"c-{uuid.uuid4().hex[:6]}", "type": "sms_http", "config": {"url": provider.url},
    })  # fmt: skip
    template = await c.post("/v1/templates", json={
        "name": f"t-{uuid.uuid4().hex[:6]}", "channel": "sms",
        "body": "Hi {{ profile.first_name }}", "status": "ready",
    })  # fmt: skip
    assert connector.status_code == 201, connector.text
    assert template.status_code == 201, template.text
    journey = {
        "name": f"Welcome {uuid.uuid4().hex[:6]}",
        "stages": [{
            "name": "Signed up",
            "entry": {"event": "signup"},
            "steps": [{"id": "hello", "type": "activation", "channel": "sms",
                       "connector_id": connector.json()["id"],
                       "template_id": template.json()["id"], "to_attribute": "phone"}],
        }],
    }  # fmt: skip
    created = await c.post("/v1/journeys", json=journey)
    assert created.status_code == 201, created.text
    jid: str = created.json()["id"]
    assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    return jid


async def late_event(nc: NATS, ws: str, profile: str, name: str, accepted_at: datetime,
                     **properties: Any) -> str:  # fmt: skip
    """An event straight onto EVENTS, as the activator's feedback or the gateway's relay
    would put it there."""
    event = AcceptedEvent(
        workspace_id=ws, event_id=uuid.uuid4().hex, profile_id=profile, name=name,
        timestamp=accepted_at, accepted_at=accepted_at, properties=properties,
    )  # fmt: skip
    await bus.publish(nc.jetstream(), subject_for(ws, profile, PARTITIONS),
                      event.model_dump(mode="json"), event.msg_id)  # fmt: skip
    return event.event_id


async def rows_of(conn: asyncpg.Connection, ws: str, profile: str) -> dict[str, int]:
    counts = {}
    for table, column in PROFILE_TABLES.items():
        counts[table] = await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE workspace_id = $1 AND {column} = $2", ws, profile
        )
    return {t: n for t, n in counts.items() if n}


async def mentions(conn: asyncpg.Connection, text: str) -> dict[str, int]:
    """Rows of any searched table whose text holds ``text``."""
    counts = {}
    for table in SEARCHED:
        counts[table] = await conn.fetchval(
            f"SELECT count(*) FROM {table} AS t WHERE t::text LIKE '%' || $1 || '%'", text
        )
    return {t: n for t, n in counts.items() if n}


async def test_an_erased_profile_leaves_nothing_personal_and_late_events_do_not_bring_it_back(
    workspace: Workspace, stack: Stack, nc: NATS, provider: Provider, conn: asyncpg.Connection
) -> None:
    ws = workspace.id
    ada, bob = f"ada-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    async with workspace.client() as c:
        trigger = {
            "name": "signup",
            "status": "draft",
            "properties": {"plan": {"type": "string", "enum": ["free", "pro"]}},
        }
        assert (await c.post("/v1/event-triggers", json=trigger)).status_code == 201
        await live_sms_journey(c, provider)
        for who, phone, plan in ((ada, PHONE, SECRET_VALUE), (bob, BOB_PHONE, BOB_VALUE)):
            r = await c.put(
                f"/v1/profiles/{who}", json={"attributes": {"phone": phone, "first_name": "Ada"}}
            )
            assert r.status_code == 200, r.text
            r = await c.post(
                "/v1/events",
                json={
                    "event_id": f"signup-{who}",
                    "profile_id": who,
                    "name": "signup",
                    "properties": {"plan": plan},
                },
            )
            assert r.status_code == 202, r.text

        # Before: the provider's error quotes the number, the trigger keeps both violations.
        async def failed() -> list[dict[str, Any]] | None:
            items = (await c.get("/v1/deliveries", params={"status": "failed"})).json()["items"]
            return items if len(items) == 2 else None

        deliveries = await eventually(failed, "both deliveries to fail")
        phones = {ada: PHONE, bob: BOB_PHONE}
        assert all(phones[d["profile_id"]] in d["last_error"] for d in deliveries)
        assert all(phones[d["profile_id"]] in d["reason"] for d in deliveries)

        async def sampled() -> list[dict[str, Any]] | None:
            stats = (await c.get("/v1/event-triggers/signup")).json()
            return stats["violation_samples"] if len(stats["violation_samples"]) == 2 else None

        samples = await eventually(sampled, "both violations to be sampled")
        assert {s["event_id"] for s in samples} == {f"signup-{ada}", f"signup-{bob}"}
        assert samples[0]["paths"] == ["properties.plan: not one of the enum values"]
        # The test sees the profile's rows and data where they are.
        assert await rows_of(conn, ws, ada)
        assert set(await mentions(conn, PHONE)) == {
            "activator.deliveries", "activator.outbox", "runtime.outbox", "gateway.event_inbox",
        }  # fmt: skip
        assert set(await mentions(conn, SECRET_VALUE)) == {
            "activator.deliveries", "runtime.outbox", "gateway.event_inbox",
        }  # fmt: skip

        # A message sent before the erasure, whose open and click come in after it.
        opened = Mark(ws, ada, "j", "hello", f"act_{uuid.uuid4().hex}",
                      issued_at=int(datetime.now(UTC).timestamp()))  # fmt: skip
        clicked = Mark(**{**opened.__dict__, "url": "https://shop.example/"})
        # An event accepted just before the erasure and still on its way.
        before = datetime.now(UTC) - timedelta(milliseconds=1)

        assert (await c.delete(f"/v1/profiles/{ada}")).status_code == 204
        assert (await c.get(f"/v1/profiles/{ada}")).status_code == 404

        async def inbox_erased() -> bool:
            return not (await rows_of(conn, ws, ada)).get("gateway.event_inbox")

        await eventually(inbox_erased, "the gateway to delete the profile's inbox rows")

        async def deliveries_erased() -> bool:
            return not (await mentions(conn, PHONE)).get("activator.deliveries")

        await eventually(deliveries_erased, "the activator to scrub the deliveries")

        # Late: feedback, an open and a click, an event accepted before the erasure.
        late = [
            await late_event(nc, ws, ada, "message_sent", datetime.now(UTC),
                             activation_id=opened.activation_id),
            await late_event(nc, ws, ada, "message_failed", datetime.now(UTC), reason=PHONE),
            await late_event(nc, ws, ada, "purchase", before),
        ]  # fmt: skip
        async with httpx.AsyncClient(base_url=stack.url) as browser:
            pixel = await browser.get(f"/t/o/{sign(opened, TRACKING_SECRET)}")
            click = await browser.get(f"/t/c/{sign(clicked, TRACKING_SECRET)}")
        assert pixel.status_code == 200
        assert (click.status_code, click.headers["location"]) == (302, "https://shop.example/")

        async def applied() -> bool:
            done = await conn.fetchval(
                "SELECT count(*) FROM runtime.processed WHERE workspace_id = $1 "
                "AND event_id = ANY($2::text[])", ws, late,
            )  # fmt: skip
            return bool(done == len(late))

        await eventually(applied, "the runtime to take the late events")
        assert (await c.get(f"/v1/profiles/{ada}")).status_code == 404
        assert await rows_of(conn, ws, ada) == {}
        assert await mentions(conn, PHONE) == {}
        assert await mentions(conn, SECRET_VALUE) == {}
        # bob's are untouched: only the erased profile's data goes.
        assert await mentions(conn, BOB_PHONE) == {
            "activator.deliveries": 1, "activator.outbox": 1, "runtime.outbox": 1,
            "gateway.event_inbox": 1,
        }  # fmt: skip
        assert await mentions(conn, BOB_VALUE) == {
            "activator.deliveries": 1, "runtime.outbox": 1, "gateway.event_inbox": 1,
        }  # fmt: skip
        stats = (await c.get("/v1/event-triggers/signup")).json()
        assert [s["event_id"] for s in stats["violation_samples"]] == [f"signup-{bob}"]
        assert stats["schema_violations"] == 2  # the counts stay

        # What is left of the profile: its skipped and scrubbed deliveries, and tombstones
        # that keep a digest of its id.
        (kept,) = (await c.get("/v1/deliveries", params={"profile_id": ada})).json()["items"]
        assert (kept["status"], kept["reason"]) == ("failed", "removed with the erased profile")
        tombstones = await conn.fetch(
            "SELECT profile_key FROM runtime.erasures WHERE workspace_id = $1 "
            "UNION ALL SELECT profile_key FROM gateway.erasures WHERE workspace_id = $1", ws
        )  # fmt: skip
        assert [bytes(t["profile_key"]) for t in tombstones] == [profile_key(ada)] * 2

        # A partner's event after the erasure makes the profile again, a new one.
        again = await c.post("/v1/events", json={"profile_id": ada, "name": "visit"})
        assert again.status_code == 202

        async def back() -> bool:
            return (await c.get(f"/v1/profiles/{ada}")).status_code == 200

        await eventually(back, "a partner's new event to make the profile again")
        profile = (await c.get(f"/v1/profiles/{ada}")).json()
        assert (profile["attributes"], profile["journeys"]) == ({}, [])
        assert not await conn.fetchval(
            "SELECT count(*) FROM runtime.erasures WHERE workspace_id = $1", ws
        )
