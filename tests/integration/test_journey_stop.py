"""Stopping a journey cancels its messages not yet sent (``journey_stopped``): those held
by quiet hours and those still on their way to the activator; another journey's are kept.
The profile's timeline shows what became of each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from nats.aio.client import Client as NATS

from services.activator.schemas import QuietHours
from tests.helpers import eventually
from tests.integration.test_activator import connector, find, publish, request, template
from tests.integration.test_runtime import send
from tests.stack import Workspace


async def _sms_journey(c: httpx.AsyncClient, route: tuple[str, str]) -> str:
    body = {
        "name": f"Stop me {uuid.uuid4().hex[:6]}",
        "stages": [{
            "name": "Signed up",
            "entry": {"event": "signup"},
            "steps": [{"id": "hello", "type": "activation", "channel": "sms",
                       "connector_id": route[0], "template_id": route[1],
                       "to_attribute": "phone"}],
        }],
    }  # fmt: skip
    created = await c.post("/v1/journeys", json=body)
    assert created.status_code == 201, created.text
    jid: str = created.json()["id"]
    assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    return jid


async def _delivery(c: httpx.AsyncClient, journey_id: str, status: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await c.get("/v1/deliveries", params={"journey_id": journey_id})
        assert r.status_code == 200, r.text
        items = [d for d in r.json()["items"] if d["status"] == status]
        return items[0] if items else None

    return await eventually(probe, f"a {status} delivery of {journey_id}")


async def test_stopping_a_journey_skips_its_messages_not_yet_sent(
    workspace: Workspace, nc: NATS
) -> None:
    async with workspace.client() as c:
        now = datetime.now(UTC)
        quiet = QuietHours(
            start=(now - timedelta(hours=1)).strftime("%H:%M"),
            end=(now + timedelta(hours=2)).strftime("%H:%M"),
        )
        r = await c.put("/v1/workspace/settings", json={"quiet_hours": quiet.model_dump()})
        assert r.status_code == 200, r.text
        route = (
            await connector(c, "sms_http", {"url": "http://127.0.0.1:9/sms"}),
            await template(c, "sms", "Hi"),
        )
        stopped, kept = await _sms_journey(c, route), await _sms_journey(c, route)
        profile = f"p-{uuid.uuid4().hex[:8]}"
        await send(nc, workspace.id, profile, "signup", phone="+15550100")
        await _delivery(c, stopped, "held")
        await _delivery(c, kept, "held")

        assert (await c.post(f"/v1/journeys/{stopped}/stop")).status_code == 200
        skipped = await _delivery(c, stopped, "skipped")
        assert skipped["reason"] == "journey_stopped"

        # A request the runtime made before it heard the stop, arriving after it.
        late = request(workspace.id, route, journey_id=stopped)
        await publish(nc, late)

        async def decided() -> dict[str, Any] | None:
            return await find(c, late["activation_id"])

        found = await eventually(decided, "the late request")
        assert (found["status"], found["reason"]) == ("skipped", "journey_stopped")
        # The other journey's message still waits for the end of quiet hours.
        r = await c.get("/v1/deliveries", params={"journey_id": kept})
        assert [d["status"] for d in r.json()["items"]] == ["held"]

        # The profile's timeline shows each message's outcome on its row.
        timeline = (await c.get(f"/v1/profiles/{profile}/timeline")).json()["items"]
        shown = {
            e["journey_id"]: (e["delivery"]["status"], e["delivery"]["reason"])
            for e in timeline
            if e["kind"] == "activation"
        }
        assert shown == {stopped: ("skipped", "journey_stopped"), kept: ("held", None)}
