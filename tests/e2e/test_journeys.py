"""The product used as a customer would, black box through the gateway on the virtual
clock: post events, move time, and see what real sinks received."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from shared.settings import ClockMode
from tests.conftest import Servers
from tests.helpers import eventually
from tests.scenarios import load
from tests.sinks import Mailbox, run_mailbox
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
