"""The activator against real NATS, PostgreSQL, SMTP and HTTP providers: requested
activations are decided, rendered, delivered once, retried, recorded and fed back."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import nats.errors
import nats.js.errors
import pytest
from fastapi import FastAPI, Request, Response
from nats.aio.client import Client as NATS

from services.activator import policy
from services.activator.app import create_app
from services.activator.schemas import QuietHours
from services.activator.settings import ActivatorSettings
from shared import bus, db
from shared.events import subject_for
from shared.topology import ACTIVATIONS
from tests.helpers import eventually, serving
from tests.sinks import Mailbox, run_mailbox
from tests.stack import SERVICE_TOKEN, Stack, Workspace, new_workspace, service_headers

PARTITIONS = 16
# Its own durable: the stack's activator has no designer address, so it must not be the one
# deciding these requests (its delivery loop, unable to prepare anything, claims nothing).
DURABLE = f"activator-test-{uuid.uuid4().hex[:8]}"
SPREAD_S = 600.0


@pytest.fixture(scope="module")
async def activator(stack: Stack) -> AsyncIterator[str]:
    settings = ActivatorSettings(
        database_url=stack.servers.database_url,
        nats_url=stack.servers.nats_url,
        designer_url=stack.service_urls["designer"],
        service_token=SERVICE_TOKEN,
        consumer_durable=DURABLE,
        allow_private_connectors=True,
        retry_base_s=0.05,
        retry_max_s=0.2,
        max_attempts=4,
        quiet_hours_spread_s=SPREAD_S,
    )
    async with serving(create_app(settings)) as url:
        yield url
    nc = await bus.connect(stack.servers.nats_url, "tests-cleanup")
    try:
        await nc.jetstream().delete_consumer(ACTIVATIONS.name, DURABLE)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    yield from run_mailbox()


# --- a local SMS provider ---------------------------------------------------------------


@dataclass
class Provider:
    """Answers with ``replies`` in order, then 202; records each request."""

    url: str = ""
    replies: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    state = Provider()
    app = FastAPI()

    @app.post("/sms")
    async def sms(request: Request) -> Response:
        state.requests.append((dict(request.headers), await request.body()))
        state.times.append(time.monotonic())
        status = state.replies.pop(0) if state.replies else 202
        return Response(b'{"detail":"as configured"}', status, media_type="application/json")

    async with serving(app) as url:
        state.url = f"{url}/sms"
        yield state


# --- helpers ----------------------------------------------------------------------------


async def connector(c: httpx.AsyncClient, kind: str, config: dict[str, Any]) -> str:
    r = await c.post(
        "/v1/connectors", json={"name": f"c-{uuid.uuid4().hex[:6]}", "type": kind, "config": config}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def template(
    c: httpx.AsyncClient, channel: str, body: str, subject: str | None = None
) -> str:
    r = await c.post(
        "/v1/templates",
        json={"name": f"t-{uuid.uuid4().hex[:6]}", "channel": channel, "subject": subject,
              "body": body, "status": "ready"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def sms_route(c: httpx.AsyncClient, provider: Provider) -> tuple[str, str]:
    return (
        await connector(c, "sms_http", {"url": provider.url}),
        await template(c, "sms", "Hi {{ profile.first_name }}"),
    )


def request(
    ws: str, route: tuple[str, str], *, channel: str = "sms", profile: str = "ada",
    to: Any = "+15550100", **changes: Any,
) -> dict[str, Any]:  # fmt: skip
    connector_id, template_id = route
    return {
        "activation_id": f"act_{uuid.uuid4().hex}", "workspace_id": ws, "profile_id": profile,
        "journey_id": "j-welcome", "version": 1, "step_id": "a1", "channel": channel,
        "connector_id": connector_id, "template_id": template_id, "to": to, "consent": {},
        "context": {"profile": {"first_name": "Ada"}, "event": {}, "journey": {}, "step": {}},
        "requested_at": datetime.now(UTC).isoformat(), **changes,
    }  # fmt: skip


async def publish(nc: NATS, payload: dict[str, Any], msg_id: str | None = None) -> None:
    subject = f"activations.requested.{payload['workspace_id']}"
    await bus.publish(
        nc.jetstream(), subject, payload, msg_id or f"activation:{payload['activation_id']}"
    )


async def find(c: httpx.AsyncClient, activation_id: str, **params: str) -> dict[str, Any] | None:
    r = await c.get("/v1/deliveries", params={"limit": "500", **params})
    assert r.status_code == 200, r.text
    return next((d for d in r.json()["items"] if d["id"] == activation_id), None)


async def settled(c: httpx.AsyncClient, activation_id: str, status: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        found = await find(c, activation_id)
        return found if found and found["status"] == status else None

    return await eventually(probe, f"{activation_id} to be {status}")


async def feedback(nc: NATS, ws: str, profile: str, event_id: str) -> dict[str, Any] | None:
    """The event ``event_id`` on the profile's EVENTS subject, if it is there."""
    sub = await nc.jetstream().pull_subscribe(subject_for(ws, profile, PARTITIONS), stream="EVENTS")
    try:
        msgs = await sub.fetch(500, timeout=1)
    except nats.errors.TimeoutError:
        msgs = []
    finally:
        await sub.unsubscribe()
    return next((e for m in msgs if (e := bus.decode(m))["event_id"] == event_id), None)


async def put_settings(c: httpx.AsyncClient, **body: Any) -> None:
    r = await c.put("/v1/workspace/settings", json=body)
    assert r.status_code == 200, r.text


# --- delivery ---------------------------------------------------------------------------


async def test_an_email_is_personalised_delivered_once_and_fed_back(
    activator: str, workspace: Workspace, nc: NATS, mailbox: Mailbox, stack: Stack
) -> None:
    ws = workspace.id
    async with workspace.client() as c:
        smtp = {"host": "127.0.0.1", "port": mailbox.port, "from": "Shop <shop@example.com>"}
        route = (
            await connector(c, "smtp", smtp),
            await template(
                c, "email",
                "Hi {{ profile.first_name }}, {{ event.properties['items'] | join(' and ') }} "
                "wait in your cart.",
                subject="{{ profile.first_name }}, {{ event.properties['items'] | length }} items",
            ),
        )  # fmt: skip
        context = {"profile": {"first_name": "Ada"}, "journey": {"id": "j-welcome"},
                   "event": {"name": "cart_abandoned", "event_id": "e-1",
                             "properties": {"items": ["socks", "a hat"]}},
                   "step": {"id": "a1"}}  # fmt: skip
        ask = request(ws, route, channel="email", to="ada@example.org", context=context)
        aid = ask["activation_id"]
        await publish(nc, ask)

        sent = await settled(c, aid, "sent")
        assert (sent["attempts"], sent["reason"], sent["channel"]) == (1, None, "email")
        assert sent["sent_at"] is not None
        (email,) = mailbox.messages
        assert email["Subject"] == "Ada, 2 items"
        assert email["To"] == "ada@example.org"
        assert aid in email["Message-ID"]
        assert email.get_content().strip() == "Hi Ada, socks and a hat wait in your cart."

        event = await eventually(
            lambda: feedback(nc, ws, "ada", f"{aid}:sent"), "message_sent on EVENTS"
        )
        assert event["name"] == "message_sent"
        assert event["properties"] == {"journey_id": "j-welcome", "step_id": "a1",
                                       "activation_id": aid, "channel": "email"}  # fmt: skip

        # The same request again, under another Nats-Msg-Id so JetStream keeps it; then one
        # more request behind it, so once that one is sent the repeat has been handled.
        await publish(nc, ask, msg_id=f"again:{aid}")
        behind = request(ws, route, channel="email", profile="bob", to="bob@example.org")
        await publish(nc, behind)
        await settled(c, behind["activation_id"], "sent")
        assert [m["To"] for m in mailbox.messages] == ["ada@example.org", "bob@example.org"]
        assert (await find(c, aid) or {})["attempts"] == 1

    # Two activators share the deliveries (this test's and the stack's): either may send.
    async with httpx.AsyncClient() as scrape:
        urls = (activator, stack.service_urls["activator"])
        metrics = "".join([(await scrape.get(f"{url}/metrics")).text for url in urls])
    assert 'waypost_activator_deliveries_total{channel="email",status="sent"}' in metrics
    assert 'waypost_activator_attempts_total{channel="email",result="sent"}' in metrics
    assert 'waypost_activator_send_seconds_count{channel="email"}' in metrics


async def test_a_push_carries_its_rendered_title_and_data(
    activator: str, workspace: Workspace, nc: NATS, provider: Provider
) -> None:
    async with workspace.client() as c:
        r = await c.post(
            "/v1/templates",
            json={"name": f"t-{uuid.uuid4().hex[:6]}", "channel": "push", "status": "ready",
                  "title": "{{ profile.first_name }}, your cart",
                  "body": "{{ event.properties['items'] | join(', ') }} are waiting",
                  "data": {"deep_link": "shop://cart/{{ event.properties.cart_id }}",
                           "missing": "{{ event.properties.nothing }}"}},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.json()["title"] == "{{ profile.first_name }}, your cart"
        route = (await connector(c, "push_http", {"url": provider.url}), r.json()["id"])
        properties = {"items": ["socks", "a hat"], "cart_id": "c-42"}
        context = {"profile": {"first_name": "Ada"},
                   "event": {"name": "cart_abandoned", "properties": properties}}  # fmt: skip
        ask = request(workspace.id, route, channel="push", to="device-1", context=context)
        await publish(nc, ask)
        await settled(c, ask["activation_id"], "sent")
    ((headers, body),) = provider.requests
    sent = json.loads(body)
    assert {k: sent[k] for k in ("to", "body", "title", "data", "activation_id")} == {
        "to": "device-1",
        "body": "socks, a hat are waiting",
        "title": "Ada, your cart",
        "data": {"deep_link": "shop://cart/c-42", "missing": ""},
        "activation_id": ask["activation_id"],
    }
    assert headers["idempotency-key"] == ask["activation_id"]


async def test_title_and_data_belong_to_push_templates_and_are_checked(
    workspace: Workspace,
) -> None:
    async with workspace.client() as c:
        sms = await c.post(
            "/v1/templates",
            json={"name": "sms-with-title", "channel": "sms", "body": "Hi", "title": "T",
                  "data": {"k": "v"}},
        )  # fmt: skip
        broken = await c.post(
            "/v1/templates",
            json={"name": "push-broken", "channel": "push", "body": "Hi", "title": "{{ x",
                  "data": {"link": "{% if %}", "bad key": "v"}},
        )  # fmt: skip
    assert sms.status_code == 422
    assert sorted(e["path"] for e in sms.json()["errors"]) == ["data", "title"]
    assert broken.status_code == 422
    assert [e["path"] for e in broken.json()["errors"]] == ["data.bad key"]
    async with workspace.client() as c:
        broken = await c.post(
            "/v1/templates",
            json={"name": "push-broken", "channel": "push", "body": "Hi", "title": "{{ x",
                  "data": {"link": "{% if %}"}},
        )  # fmt: skip
    assert broken.status_code == 422
    assert sorted(e["path"] for e in broken.json()["errors"]) == ["data.link", "title"]


async def test_transient_failures_are_retried_until_sent(
    activator: str, workspace: Workspace, nc: NATS, provider: Provider
) -> None:
    provider.replies = [503, 503]
    async with workspace.client() as c:
        ask = request(workspace.id, await sms_route(c, provider))
        await publish(nc, ask)
        sent = await settled(c, ask["activation_id"], "sent")
    assert sent["attempts"] == 3
    assert "HTTP 503" in sent["last_error"]
    assert len(provider.requests) == 3
    assert {h["idempotency-key"] for h, _ in provider.requests} == {ask["activation_id"]}
    assert b'"body":"Hi Ada"' in provider.requests[-1][1]


async def test_a_refused_request_fails_at_once_and_is_fed_back(
    activator: str, workspace: Workspace, nc: NATS, provider: Provider
) -> None:
    provider.replies = [400]
    async with workspace.client() as c:
        ask = request(workspace.id, await sms_route(c, provider))
        aid = ask["activation_id"]
        await publish(nc, ask)
        failed = await settled(c, aid, "failed")
    assert failed["attempts"] == 1
    assert failed["reason"] == failed["last_error"]
    assert failed["reason"].startswith("HTTP 400 from provider")
    event = await eventually(
        lambda: feedback(nc, workspace.id, "ada", f"{aid}:failed"), "message_failed on EVENTS"
    )
    assert event["name"] == "message_failed"
    assert event["properties"]["reason"] == failed["reason"]
    assert event["properties"]["activation_id"] == aid


async def test_an_unrenderable_template_fails_with_its_error(
    activator: str, workspace: Workspace, nc: NATS, provider: Provider
) -> None:
    async with workspace.client() as c:
        route = (
            await connector(c, "sms_http", {"url": provider.url}),
            await template(c, "sms", "{{ (profile.first_name | length) / 0 }}"),
        )
        ask = request(workspace.id, route)
        await publish(nc, ask)
        failed = await settled(c, ask["activation_id"], "failed")
    assert failed["attempts"] == 0
    assert "template error" in failed["reason"]
    assert provider.requests == []


async def test_a_rate_limited_connector_still_sends_a_whole_wave_once(
    activator: str, workspace: Workspace, nc: NATS, provider: Provider
) -> None:
    async with workspace.client() as c:
        route = (
            await connector(c, "sms_http", {"url": provider.url, "rate_limit_per_s": 10}),
            await template(c, "sms", "Hi"),
        )
        # More than fit in the one second a claimed delivery may wait for its turn: the
        # rest are left pending and taken up as the connector has room again.
        wave = [request(workspace.id, route, profile=f"p{i}") for i in range(14)]
        for ask in wave:
            await publish(nc, ask)
        for ask in wave:
            await settled(c, ask["activation_id"], "sent")
    # Every message of the wave goes out once; the spacing itself is the limiter's, tested
    # on its own (tests/unit/test_activator_limits.py) rather than by the wall clock here.
    assert len(provider.times) == 14


@pytest.fixture
async def second_activator(stack: Stack) -> AsyncIterator[str]:
    """Another replica on the same durable, database and NATS as ``activator``."""
    settings = ActivatorSettings(
        database_url=stack.servers.database_url,
        nats_url=stack.servers.nats_url,
        designer_url=stack.service_urls["designer"],
        service_token=SERVICE_TOKEN,
        consumer_durable=DURABLE,
        allow_private_connectors=True,
    )
    async with serving(create_app(settings)) as url:
        yield url


async def _sent_by(url: str) -> float:
    async with httpx.AsyncClient(base_url=url, headers=service_headers()) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    line = 'waypost_activator_attempts_total{channel="sms",result="sent"} '
    return sum(float(x[len(line) :]) for x in r.text.splitlines() if x.startswith(line))


async def test_a_connectors_rate_holds_across_two_activator_replicas(
    activator: str,
    second_activator: str,
    workspace: Workspace,
    nc: NATS,
    provider: Provider,
    stack: Stack,
) -> None:
    """Replicas share one schedule of turns per connector, so together they send at its
    rate, not N times it. Counted from the provider's receipt times, per second. (The
    stack's own activator is a third replica: it has its own durable, so it takes every
    request too, and the deliveries are shared through the table.)"""
    rate, count = 5, 30
    replicas = [activator, second_activator, stack.service_urls["activator"]]
    before = [await _sent_by(url) for url in replicas]
    async with workspace.client() as c:
        route = (
            await connector(c, "sms_http", {"url": provider.url, "rate_limit_per_s": rate}),
            await template(c, "sms", "Hi"),
        )
        wave = [request(workspace.id, route, profile=f"r{i}") for i in range(count)]
        for ask in wave:
            await publish(nc, ask)
        for ask in wave:
            await settled(c, ask["activation_id"], "sent")
    after = [await _sent_by(url) for url in replicas]
    sent_by = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(sent_by) == count
    assert sum(1 for n in sent_by if n > 0) >= 2, f"one replica sent everything: {sent_by}"
    times = sorted(provider.times)
    assert len(times) == count
    # Any second holds at most the rate, plus one turn for the bucket's burst and one for
    # a send that left late and arrived close to the next (the replicas' own pacing).
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= rate + 2, f"{busiest} messages within one second at {rate}/s"


async def _claims(url: str, woken_by: str) -> float:
    async with httpx.AsyncClient(base_url=url, headers=service_headers()) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    prefix = 'waypost_activator_claims_total{found="'
    return sum(
        float(x.rsplit(" ", 1)[1])
        for x in r.text.splitlines()
        if x.startswith(prefix) and f'woken_by="{woken_by}"' in x
    )


async def test_a_delivered_group_sets_off_no_claim(
    activator: str, workspace: Workspace, nc: NATS, provider: Provider, stack: Stack
) -> None:
    """Deliveries handed over by the intake and all recorded leave nothing for a claim to
    find, so their groups ending does not wake the loop to claim (and to ask when the next
    is due); a retry still does."""
    replicas = [activator, stack.service_urls["activator"]]
    before = [await _claims(url, "group") for url in replicas]
    async with workspace.client() as c:
        route = await sms_route(c, provider)
        for i in range(8):
            ask = request(workspace.id, route, profile=f"g{i}")
            await publish(nc, ask)
            await settled(c, ask["activation_id"], "sent")
        assert [await _claims(url, "group") for url in replicas] == before

        provider.replies = [503]
        retried = request(workspace.id, route, profile="g-retry")
        await publish(nc, retried)
        await settled(c, retried["activation_id"], "sent")
    after = [await _claims(url, "group") for url in replicas]
    assert sum(after) > sum(before)


# --- decisions on arrival ---------------------------------------------------------------


async def test_consent_and_recipient_are_checked_before_sending(
    activator: str, workspace: Workspace, nc: NATS, provider: Provider
) -> None:
    ws = workspace.id
    async with workspace.client() as c:
        route = await sms_route(c, provider)
        refused = request(ws, route, consent={"sms": False})
        nobody = request(ws, route, to=None)
        for ask in (refused, nobody):
            await publish(nc, ask)
        assert (await settled(c, refused["activation_id"], "skipped"))["reason"] == "no_consent"
        assert (await settled(c, nobody["activation_id"], "skipped"))["reason"] == "no_recipient"

        await put_settings(c, consent_mode="opt_in")
        unasked = request(ws, route, profile="bob")
        agreed = request(ws, route, profile="cy", consent={"sms": True}, to="+15550199")
        for ask in (unasked, agreed):
            await publish(nc, ask)
        assert (await settled(c, unasked["activation_id"], "skipped"))["reason"] == "no_consent"
        await settled(c, agreed["activation_id"], "sent")
    assert [b'"to":"+15550199"' in body for _h, body in provider.requests] == [True]


async def _delivery_of(c: httpx.AsyncClient, profile: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await c.get("/v1/deliveries", params={"profile_id": profile})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        return items[0] if items and items[0]["status"] in ("sent", "skipped") else None

    return await eventually(probe, f"the message of {profile} to be decided")


async def test_a_consent_mode_change_applies_to_the_next_message_a_journey_requests(
    workspace: Workspace, provider: Provider
) -> None:
    """The rules are kept with the designer revision the runtime made each request at, so
    a settings change reaches the very next request, both ways."""
    async with workspace.client() as c:
        connector_id, template_id = await sms_route(c, provider)
        step = {"id": "sms", "type": "activation", "channel": "sms", "connector_id": connector_id,
                "template_id": template_id, "to_attribute": "phone"}  # fmt: skip
        body = {"name": "Consent", "stages": [{"name": "Bought", "entry": {"event": "purchase"},
                                               "steps": [step]}]}  # fmt: skip
        r = await c.post("/v1/journeys", json=body)
        assert r.status_code == 201, r.text
        r = await c.post(f"/v1/journeys/{r.json()['id']}/publish")
        assert r.status_code == 200, r.text

        async def buy(profile: str) -> dict[str, Any]:
            event = {"profile_id": profile, "name": "purchase", "traits": {"phone": "+15550100"}}
            answer = await c.post("/v1/events", json=event)
            assert answer.status_code == 202, answer.text
            return await _delivery_of(c, profile)

        assert (await buy("before"))["status"] == "sent"
        await put_settings(c, consent_mode="opt_in")
        refused = await buy("after-opt-in")
        assert (refused["status"], refused["reason"]) == ("skipped", "no_consent")
        await put_settings(c, consent_mode="opt_out")
        assert (await buy("after-opt-out"))["status"] == "sent"


async def test_a_frequency_cap_skips_what_exceeds_it(
    activator: str, workspace: Workspace, nc: NATS, provider: Provider
) -> None:
    ws = workspace.id
    async with workspace.client() as c:
        await put_settings(c, frequency_caps=[{"channel": "sms", "max": 1, "per": "P1D"}])
        route = await sms_route(c, provider)
        first, second = request(ws, route), request(ws, route)
        other = request(ws, route, profile="bob")
        for ask in (first, second, other):
            await publish(nc, ask)
        await settled(c, first["activation_id"], "sent")
        capped = await settled(c, second["activation_id"], "skipped")
        await settled(c, other["activation_id"], "sent")
        later = request(ws, route)
        await publish(nc, later)
        assert (await settled(c, later["activation_id"], "skipped"))["reason"] == "frequency_cap"
    assert capped["reason"] == "frequency_cap"
    assert capped["attempts"] == 0
    assert len(provider.requests) == 2


async def test_quiet_hours_hold_a_message_with_a_scheduler_timer(
    activator: str, workspace: Workspace, nc: NATS, provider: Provider, stack: Stack
) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    local = datetime.now(UTC).astimezone(tokyo)
    quiet = QuietHours(
        start=(local - timedelta(hours=1)).strftime("%H:%M"),
        end=(local + timedelta(hours=2)).strftime("%H:%M"),
    )
    async with workspace.client() as c:
        await put_settings(c, quiet_hours=quiet.model_dump())
        context = {"profile": {"first_name": "Ada", "timezone": "Asia/Tokyo"}}
        ask = request(workspace.id, await sms_route(c, provider), context=context)
        aid = ask["activation_id"]
        await publish(nc, ask)

        async def stored() -> dict[str, Any] | None:
            return await find(c, aid)

        held = await eventually(stored, "the held delivery")
    opening = policy.window_opening(datetime.now(UTC), quiet, tokyo)
    assert opening is not None
    assert (held["status"], held["attempts"]) == ("held", 0)
    due = datetime.fromisoformat(held["next_attempt_at"])
    assert due == opening + policy.spread_offset(aid, SPREAD_S)
    assert opening <= due < opening + timedelta(seconds=SPREAD_S)
    assert provider.requests == []

    # The release is the scheduler's: a quiet-hours timer due then, for this workspace.
    async with httpx.AsyncClient(
        base_url=stack.service_urls["scheduler"], headers=service_headers()
    ) as scheduler:

        async def timer() -> dict[str, Any] | None:
            r = await scheduler.get("/internal/timers/stats", params={"workspace_id": workspace.id})
            return r.json() if r.json()["pending"] == 1 else None

        stats = await eventually(timer, "the quiet-hours timer at the scheduler")
    assert datetime.fromisoformat(stats["next_due_at"]) == due


# --- reading ----------------------------------------------------------------------------


async def test_deliveries_are_filtered_paged_counted_and_kept_per_workspace(
    activator: str, stack: Stack, workspace: Workspace, nc: NATS, provider: Provider
) -> None:
    ws = workspace.id
    async with workspace.client() as c:
        route = await sms_route(c, provider)
        asks = [
            request(ws, route, consent={"sms": False}),
            request(ws, route, profile="bob"),
            request(ws, route, journey_id="j-other", to=None),
        ]
        for ask in asks:
            await publish(nc, ask)
        await settled(c, asks[1]["activation_id"], "sent")
        await settled(c, asks[2]["activation_id"], "skipped")
        await settled(c, asks[0]["activation_id"], "skipped")

        async def ids(**params: str) -> set[str]:
            r = await c.get("/v1/deliveries", params=params)
            assert r.status_code == 200, r.text
            return {d["id"] for d in r.json()["items"]}

        a, b, other = (ask["activation_id"] for ask in asks)
        assert await ids() == {a, b, other}
        assert await ids(journey_id="j-welcome") == {a, b}
        assert await ids(profile_id="ada") == {a, other}
        assert await ids(status="skipped") == {a, other}
        assert await ids(journey_id="j-welcome", status="sent") == {b}
        assert await ids(status="failed") == set()

        pages: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/v1/deliveries", params=params)).json()
            pages += [d["id"] for d in page["items"]]
            if (cursor := page["next_cursor"]) is None:
                break
        assert sorted(pages) == sorted([a, b, other])
        assert (await c.get("/v1/deliveries", params={"cursor": "nonsense"})).status_code == 422
        bad = await c.get("/v1/deliveries", params={"status": "lost"})
        assert bad.status_code == 422

    stranger = await new_workspace(stack)
    async with stranger.client() as c:
        assert (await c.get("/v1/deliveries")).json() == {"items": [], "next_cursor": None}
        assert (await c.get("/v1/deliveries", params={"journey_id": "j-welcome"})).json()[
            "items"
        ] == []

    async with httpx.AsyncClient(base_url=activator, headers=service_headers()) as own:
        path = f"/internal/workspaces/{ws}/journeys/j-welcome/activations"
        counts = (await own.get(path)).json()
        assert counts == {"sent": 1, "skipped": 1, "failed": 0, "pending": 0, "held": 0}
        assert (await own.get(path, params={"version": 2})).json()["skipped"] == 0
        elsewhere = f"/internal/workspaces/{stranger.id}/journeys/j-welcome/activations"
        assert (await own.get(elsewhere)).json() == {"sent": 0, "skipped": 0, "failed": 0,
                                                     "pending": 0, "held": 0}  # fmt: skip


async def test_a_key_limited_to_folders_lists_by_journey(workspace: Workspace) -> None:
    async with workspace.client() as c:
        folder = await c.post("/v1/folders", json={"name": f"f-{uuid.uuid4().hex[:6]}"})
        assert folder.status_code == 201, folder.text
    viewer = await workspace.key("viewer", [folder.json()["id"]])
    async with workspace.client(viewer) as c:
        r = await c.get("/v1/deliveries")
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"


async def test_deleting_a_profile_erases_its_messages_even_those_still_on_their_way(
    activator: str, workspace: Workspace, nc: NATS, provider: Provider, stack: Stack
) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    local = datetime.now(UTC).astimezone(tokyo)
    quiet = QuietHours(
        start=(local - timedelta(hours=1)).strftime("%H:%M"),
        end=(local + timedelta(hours=2)).strftime("%H:%M"),
    )
    profile = f"gone-{uuid.uuid4().hex[:6]}"
    context = {"profile": {"first_name": "Ada", "timezone": "Asia/Tokyo"}}
    async with workspace.client() as c:
        await put_settings(c, quiet_hours=quiet.model_dump())
        route = await sms_route(c, provider)
        held = request(workspace.id, route, profile=profile, context=context)
        await publish(nc, held)
        await settled(c, held["activation_id"], "held")
        # The profile exists in the runtime; deleting it there erases it here.
        assert (await c.post("/v1/events", json={"profile_id": profile, "name": "x"})).is_success

        async def known() -> bool:
            return (await c.get(f"/v1/profiles/{profile}")).status_code == 200

        await eventually(known, "the profile to exist")
        late = request(workspace.id, route, profile=profile, context=context)  # made before
        assert (await c.delete(f"/v1/profiles/{profile}")).status_code == 204
        erased = await settled(c, held["activation_id"], "skipped")
        assert erased["reason"] == "profile_erased"
        # A request made before the deletion that arrives after it is skipped on arrival.
        await publish(nc, late)
        skipped = await settled(c, late["activation_id"], "skipped")
        assert skipped["reason"] == "profile_erased"
    assert provider.requests == []
    conn = await asyncpg.connect(db.asyncpg_dsn(stack.servers.database_url))
    try:
        kept = await conn.fetch(
            "SELECT recipient, request FROM activator.deliveries WHERE activation_id = ANY($1)",
            [held["activation_id"], late["activation_id"]],
        )
    finally:
        await conn.close()
    assert [(r["recipient"], r["request"]) for r in kept] == [(None, "{}"), (None, "{}")]
