"""The simulator tells what the live system would do: the same journey, profiles and
events run live (through the gateway, delivered to a local provider) and simulated give
each message the same status and reason, and the simulation shows each one rendered."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from services.activator import policy
from services.activator.schemas import QuietHours
from services.activator.settings import ActivatorSettings
from tests.helpers import eventually, serving
from tests.stack import Workspace, service_headers

TOKYO = ZoneInfo("Asia/Tokyo")
SPREAD_S = ActivatorSettings.model_fields["quiet_hours_spread_s"].default


@pytest.fixture
async def sms_provider() -> AsyncIterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []
    app = FastAPI()

    @app.post("/sms")
    async def sms(request: Request) -> Response:
        received.append(await request.body())
        return Response(b"{}", 202, media_type="application/json")

    async with serving(app) as url:
        yield f"{url}/sms", received


# Profile id -> (attributes, consent). Each is asked for two SMS in a row; the workspace
# allows one a day, quiet hours are on in Tokyo now, and "refuses" said no to SMS.
PROFILES: dict[str, tuple[dict[str, Any], dict[str, bool]]] = {
    "ok": ({"first_name": "Ada", "phone": "+15550100"}, {}),
    "refuses": ({"first_name": "Bo", "phone": "+15550101"}, {"sms": False}),
    "nophone": ({"first_name": "Cy"}, {}),
    "night": ({"first_name": "Di", "phone": "+15550102", "timezone": "Asia/Tokyo"}, {}),
}
EXPECTED = {
    ("ok", "sms-1"): ("sent", None),
    ("ok", "sms-2"): ("skipped", "frequency_cap"),
    ("refuses", "sms-1"): ("skipped", "no_consent"),
    ("refuses", "sms-2"): ("skipped", "no_consent"),
    ("nophone", "sms-1"): ("skipped", "no_recipient"),
    ("nophone", "sms-2"): ("skipped", "no_recipient"),
    ("night", "sms-1"): ("held", None),
    ("night", "sms-2"): ("skipped", "frequency_cap"),  # the held one holds the day's place
}


async def _journey(c: httpx.AsyncClient, provider_url: str) -> dict[str, Any]:
    name = uuid.uuid4().hex[:6]
    r = await c.post("/v1/connectors", json={
        "name": f"sms-{name}", "type": "sms_http", "config": {"url": provider_url}})  # fmt: skip
    assert r.status_code == 201, r.text
    connector = r.json()["id"]
    r = await c.post("/v1/templates", json={
        "name": f"t-{name}", "channel": "sms", "status": "ready",
        "body": "Hi {{ profile.first_name }}, your {{ event.properties.item }} is waiting",
    })  # fmt: skip
    assert r.status_code == 201, r.text
    template = r.json()["id"]

    def sms(step_id: str) -> dict[str, Any]:
        return {"id": step_id, "type": "activation", "channel": "sms", "to_attribute": "phone",
                "connector_id": connector, "template_id": template}  # fmt: skip

    stage = {"name": "Cart", "entry": {"event": "cart"}, "steps": [sms("sms-1"), sms("sms-2")]}
    return {"name": f"truth-{name}", "stages": [stage]}


async def test_the_simulation_decides_each_message_as_the_live_system_does(
    workspace: Workspace, sms_provider: tuple[str, list[bytes]]
) -> None:
    provider_url, received = sms_provider
    local = datetime.now(UTC).astimezone(TOKYO)
    quiet = QuietHours(
        start=(local - timedelta(hours=1)).strftime("%H:%M"),
        end=(local + timedelta(hours=2)).strftime("%H:%M"),
    )
    async with workspace.client() as c:
        r = await c.put("/v1/workspace/settings", json={
            "quiet_hours": quiet.model_dump(),
            "frequency_caps": [{"channel": "sms", "max": 1, "per": "P1D"}]})  # fmt: skip
        assert r.status_code == 200, r.text
        body = await _journey(c, provider_url)

        # Simulated first: nothing it does may be stored or sent.
        now = datetime.now(UTC)
        r = await c.post("/v1/journeys/simulate", json={
            "journey": body,
            "profiles": [{"profile_id": p, "attributes": a, "consent": k}
                         for p, (a, k) in PROFILES.items()],
            "events": [{"profile_id": p, "name": "cart", "timestamp": now.isoformat(),
                        "properties": {"item": "teapot"}} for p in PROFILES]})  # fmt: skip
        assert r.status_code == 200, r.text
        simulated = {(a["profile_id"], a["step_id"]): a for a in r.json()["activations"]}
        assert received == []

        # Then live, with the same profiles and events.
        r = await c.post("/v1/journeys", json=body)
        assert r.status_code == 201, r.text
        journey_id = r.json()["id"]
        assert (await c.post(f"/v1/journeys/{journey_id}/publish")).status_code == 200
        for profile_id, (attributes, consent) in PROFILES.items():
            r = await c.put(
                f"/v1/profiles/{profile_id}", json={"attributes": attributes, "consent": consent}
            )
            assert r.status_code in (200, 202), r.text
        for profile_id in PROFILES:
            event = {"profile_id": profile_id, "name": "cart", "properties": {"item": "teapot"}}
            r = await c.post("/v1/events", json=event)
            assert r.status_code == 202, r.text

        async def settled() -> dict[tuple[str, str], dict[str, Any]] | None:
            r = await c.get("/v1/deliveries", params={"journey_id": journey_id, "limit": "100"})
            found = {(d["profile_id"], d["step_id"]): d for d in r.json()["items"]}
            done = len(found) == len(EXPECTED) and all(
                d["status"] not in ("pending",) for d in found.values()
            )
            return found if done else None

        live = await eventually(settled, "every live delivery settled")

    assert {k: (d["status"], d["reason"]) for k, d in live.items()} == EXPECTED
    assert {k: (a["status"], a.get("reason")) for k, a in simulated.items()} == EXPECTED
    assert len(received) == 1

    opening = policy.window_opening(now, quiet, TOKYO)
    assert opening is not None
    window = (opening, opening + timedelta(seconds=SPREAD_S))
    held_live = datetime.fromisoformat(live[("night", "sms-1")]["next_attempt_at"])
    held_simulated = datetime.fromisoformat(simulated[("night", "sms-1")]["held_until"])
    for held in (held_live, held_simulated):
        assert window[0] <= held < window[1]

    sent = simulated[("ok", "sms-1")]
    assert sent["rendered"]["body"] == "Hi Ada, your teapot is waiting"
    assert sent["recipient"] == "+15550100"
    assert simulated[("refuses", "sms-1")]["rendered"]["body"] == "Hi Bo, your teapot is waiting"


async def test_the_activator_previews_only_for_services_and_only_what_it_can_decide(
    workspace: Workspace,
) -> None:
    url = f"{workspace.stack.service_urls['activator']}/internal/workspaces/{workspace.id}/previews"
    request = {
        "activation_id": "act_x", "workspace_id": workspace.id, "profile_id": "p",
        "journey_id": "simulated", "version": 1, "step_id": "s", "channel": "sms",
        "connector_id": "c", "template_id": "t", "to": "+15550100",
        "requested_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    async with httpx.AsyncClient(timeout=30) as anyone:
        r = await anyone.post(url, json={"requests": [request]})
        assert r.status_code == 401, r.text
    async with httpx.AsyncClient(headers=service_headers(), timeout=30) as service:
        elsewhere = {**request, "workspace_id": "another"}
        undated = {k: v for k, v in request.items() if k != "requested_at"}
        r = await service.post(url, json={"requests": [request, elsewhere, undated]})
        assert r.status_code == 422, r.text
        assert [e["path"] for e in r.json()["errors"]] == ["requests[1]", "requests[2]"]

        r = await service.post(url, json={"requests": [request]})
        assert r.status_code == 200, r.text
        (item,) = r.json()["items"]
    # Neither the connector nor the template exists: live, it would fail with that.
    assert (item["status"], item["error"]) == ("failed", "connector c does not exist")
