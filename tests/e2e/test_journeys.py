"""The product used as a customer would, black box through the gateway on the virtual
clock: post events, move time, and see what real sinks received."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from shared.settings import ClockMode
from tests.conftest import Servers
from tests.helpers import eventually, serving
from tests.scenarios import load
from tests.sinks import HttpSink, Mailbox, run_mailbox
from tests.stack import Stack, Workspace, new_workspace, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def virtual(servers: Servers) -> AsyncIterator[Stack]:
    async with running_stack(servers, clock=ClockMode.VIRTUAL) as stack:
        yield stack


async def setup_welcome(ws: Workspace, smtp_port: int) -> str:
    async with ws.client() as c:
        connector = await c.post(
            "/v1/connectors",
            json={
                "name": "mail",
                "type": "smtp",
                "config": {"host": "127.0.0.1", "port": smtp_port, "from": "shop@example.com"},
            },
        )
        template = await c.post("/v1/templates", json={
            "name": "welcome", "channel": "email", "status": "ready",
            "subject": "Welcome, {{ profile.first_name }}",
            "body": "Thanks for signing up via {{ event.properties.source }}."})  # fmt: skip
        body = load("welcome")
        step = body["stages"][0]["steps"][1]
        step["connector_id"] = connector.json()["id"]
        step["template_id"] = template.json()["id"]
        jid: str = (await c.post("/v1/journeys", json=body)).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    return jid


@pytest.fixture
def box() -> Iterator[Mailbox]:
    yield from run_mailbox()


async def test_welcome_email_goes_out_an_hour_after_signup(virtual: Stack, box: Mailbox) -> None:
    ws = await new_workspace(virtual)
    jid = await setup_welcome(ws, box.port)
    async with ws.client() as c:
        accepted = await c.post("/v1/events", json={
            "profile_id": "ada", "name": "newsletter_signup",
            "properties": {"source": "footer"},
            "traits": {"email": "ada@example.com", "first_name": "Ada"}})  # fmt: skip
        assert accepted.status_code == 202, accepted.text

        async def waiting() -> dict[str, Any] | None:
            r = await c.get("/v1/profiles/ada")
            journeys = r.json().get("journeys") if r.status_code == 200 else None
            return journeys[0] if journeys else None

        member = await eventually(waiting, "ada to enter the journey")
        assert member["step"] == "wait-1h"
        assert box.messages == []

        await c.post("/v1/admin/clock", json={"advance": "PT59M"})
        await c.post("/v1/admin/clock", json={"advance": "PT1M"})

        async def delivered() -> bool:
            return bool(box.messages)

        await eventually(delivered, "the welcome email")
        (mail,) = box.messages
        assert mail["Subject"] == "Welcome, Ada"
        assert "via footer" in mail.get_content()
        assert box.envelopes[0][1] == ["ada@example.com"]

        async def recorded() -> list[dict[str, Any]] | None:
            items = (await c.get("/v1/deliveries", params={"journey_id": jid})).json()
            return items["items"] if items["items"] and items["items"][0]["status"] == "sent" \
                else None  # fmt: skip

        (delivery,) = await eventually(recorded, "the delivery to be recorded as sent")
        assert delivery["profile_id"] == "ada"
        kinds = [e["kind"] for e in (await c.get("/v1/profiles/ada/timeline")).json()["items"]]
        assert kinds.count("activation") == 1


async def test_multichannel_cart_opened_email_stops_the_texts(virtual: Stack, box: Mailbox) -> None:
    sink = HttpSink()
    received = sink.received
    ws = await new_workspace(virtual)
    async with serving(sink.app()) as sink_url, ws.client() as c:
        ids: dict[str, str] = {}
        for name, kind, config in (
            ("smtp", "smtp", {"host": "127.0.0.1", "port": box.port, "from": "s@example.com"}),
            ("sms", "sms_http", {"url": f"{sink_url}/send"}),
            ("push", "push_http", {"url": f"{sink_url}/send"}),
        ):
            r = await c.post("/v1/connectors", json={"name": name, "type": kind, "config": config})
            ids[f"{{{{connector:{name}}}}}"] = r.json()["id"]
        for name, channel in (("cart-email", "email"), ("cart-sms", "sms"), ("cart-push", "push")):
            template = {"name": name, "channel": channel, "status": "ready",
                        "body": f"{channel} for {{{{ profile.first_name }}}}"}  # fmt: skip
            if channel == "email":
                template |= {
                    "subject": "Your cart",
                    "html": '<p>Back to <a href="https://shop.example/cart">cart</a></p>',
                }
            r = await c.post("/v1/templates", json=template)
            ids[f"{{{{template:{name}}}}}"] = r.json()["id"]
        text = json.dumps(load("multichannel-cart"))
        for placeholder, ident in ids.items():
            text = text.replace(placeholder, ident)
        jid = (await c.post("/v1/journeys", json=json.loads(text))).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200

        for who in ("opener", "ignorer"):
            traits = {"email": f"{who}@example.com", "phone": "+1555", "push_token": "tok",
                      "first_name": who}  # fmt: skip
            r = await c.post("/v1/events", json={"profile_id": who, "name": "cart_abandoned",
                                                 "traits": traits})  # fmt: skip
            assert r.status_code == 202

        async def two_emails() -> bool:
            return len(box.messages) == 2

        await eventually(two_emails, "both cart emails")
        opener_mail = next(m for m in box.messages if m["To"] == "opener@example.com")
        html = opener_mail.get_body(preferencelist=("html",)).get_content()
        (pixel,) = re.findall(r'<img src="([^"]+/t/o/[^"]+)"', html)
        async with httpx.AsyncClient() as browser:
            image = await browser.get(pixel.replace("&amp;", "&"))
        assert image.headers["content-type"] == "image/gif"

        async def opened() -> bool:
            timeline = (await c.get("/v1/profiles/opener/timeline")).json()["items"]
            return any(e["kind"] == "branch_taken" and e["detail"] == {"path": "yes"}
                       for e in timeline)  # fmt: skip

        await eventually(opened, "the open to take the yes path")
        await c.post("/v1/admin/clock", json={"advance": "P1D"})

        async def one_text() -> bool:
            return len(received) == 1

        await eventually(one_text, "the ignorer's text")
        await c.post("/v1/admin/clock", json={"advance": "P1D"})

        async def push_too() -> bool:
            return len(received) == 2

        await eventually(push_too, "the ignorer's push")
        assert [m["to"] for m in received] == ["+1555", "tok"]
        assert received[0]["body"] == "sms for ignorer"
