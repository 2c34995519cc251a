"""Tenants' templates within their budgets, through the gateway: a preview over a budget is a
422 naming it, a message over one is a failed delivery naming it, and neither holds up the
service that renders it."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx

from tests.helpers import eventually
from tests.stack import Workspace

NESTED_LOOPS = (
    "{% for i in range(10000) %}{% for j in range(10000) %}{{ '' }}{% endfor %}{% endfor %}"
)
DOUBLING = (
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s | length }}"
)


async def template(c: httpx.AsyncClient, body: str, channel: str = "sms") -> str:
    r = await c.post(
        "/v1/templates",
        json={"name": f"t-{uuid.uuid4().hex[:6]}", "channel": channel, "body": body,
              "status": "ready"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def preview(c: httpx.AsyncClient, template_id: str) -> httpx.Response:
    return await c.post(
        f"/v1/templates/{template_id}/preview",
        json={"profile": {"first_name": "Ada"}, "event": {"name": "signup", "properties": {}}},
    )


async def pooled_renders(workspace: Workspace) -> float:
    """Renders the designer has handed to its workers so far."""
    async with httpx.AsyncClient() as scrape:
        text = (await scrape.get(f"{workspace.stack.service_urls['designer']}/metrics")).text
    found = re.search(r'^waypost_template_renders_total\{mode="pool"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_runaway_preview_is_a_422_and_the_designer_answers_meanwhile(
    workspace: Workspace,
) -> None:
    async with workspace.client() as c:
        slow = await template(c, NESTED_LOOPS)
    viewer = await workspace.key("viewer")
    before = await pooled_renders(workspace)
    async with workspace.client(viewer) as c:
        running = asyncio.create_task(preview(c, slow))

        # The render is under way in a worker...
        async def rendering() -> bool:
            return await pooled_renders(workspace) > before

        await eventually(rendering, "the preview to be rendering")
        # ...while a key the gateway has never seen is authenticated by the designer, and a
        # template read from it is answered.
        fresh = await workspace.key("viewer")
        async with workspace.client(fresh) as other:
            me = await other.get("/v1/me")
            read = await other.get(f"/v1/templates/{slow}")
        assert (me.status_code, read.status_code) == (200, 200)
        assert not running.done()
        answer = await running
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    (error,) = answer.json()["errors"]
    assert error["path"] == "template"
    assert "time limit" in error["message"]


async def test_a_preview_over_the_memory_or_output_budget_is_a_422_naming_it(
    workspace: Workspace,
) -> None:
    cases = {
        DOUBLING: "memory limit",
        "{{ 'x' | center(100000000) }}": "output limit",
        "{{ '%100000000s' | format('x') }}": "output limit",
        "{{ 'x'.rjust(100000000) }}": "output limit",
        "{{ '{:>100000000}'.format('x') }}": "output limit",
        "{{ 'ab' * 100000000 }}": "output limit",
        "{% for i in range(5000) %}{{ 'x' * 500 }}{% endfor %}": "output limit",
    }
    async with workspace.client() as c:
        for source, limit in cases.items():
            r = await preview(c, await template(c, source))
            assert r.status_code == 422, (source, r.text)
            assert limit in r.json()["errors"][0]["message"], (source, r.text)
        # The workers are still there for the next template.
        fine = await preview(
            c, await template(c, "{% for i in range(3) %}{{ profile.first_name }}{% endfor %}")
        )
    assert fine.status_code == 200, fine.text
    assert fine.json()["body"] == "AdaAdaAda"


async def test_a_message_over_a_budget_fails_naming_it(
    workspace: Workspace,
) -> None:
    async with workspace.client() as c:
        r = await c.post(
            "/v1/connectors",
            json={"name": f"c-{uuid.uuid4().hex[:6]}", "type": "sms_http",
                  "config": {"url": "http://127.0.0.1:9/never"}},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        connector = r.json()["id"]
        slow = await template(c, NESTED_LOOPS)
        journey = {
            "name": f"budget-{uuid.uuid4().hex[:6]}",
            "stages": [{
                "name": "Signed up",
                "entry": {"event": "signup"},
                "steps": [{"id": "hello", "type": "activation", "channel": "sms",
                           "connector_id": connector, "template_id": slow,
                           "to_attribute": "phone"}],
            }],
        }  # fmt: skip
        r = await c.post("/v1/journeys", json=journey)
        assert r.status_code == 201, r.text
        jid = r.json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
        r = await c.post(
            "/v1/events",
            json={"profile_id": "ada", "name": "signup", "traits": {"phone": "+15550100"}},
        )
        assert r.status_code == 202, r.text

        async def failed() -> dict[str, Any] | None:
            r = await c.get("/v1/deliveries", params={"journey_id": jid})
            items = r.json()["items"]
            return items[0] if items and items[0]["status"] == "failed" else None

        delivery = await eventually(failed, "the delivery to fail")
    assert delivery["attempts"] == 0
    assert "template error" in delivery["reason"]
    assert "time limit" in delivery["reason"]
