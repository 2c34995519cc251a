"""The journey map in headless Chromium: counts on each branch and split path, profiles
whose steps ran out shown as finished rather than on their last step, where each stage's
profiles ended, and an Entered headline that keeps counting across a migrate publish."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import Page, expect

from tests.browser.console import resources, sign_in
from tests.helpers import serving
from tests.integration.test_journey_analytics import journey
from tests.sinks import HttpSink
from tests.stack import Workspace


async def event(workspace: Workspace, profile: str, name: str, **traits: Any) -> None:
    async with workspace.client() as c:
        body = {"profile_id": profile, "name": name} | ({"traits": traits} if traits else {})
        r = await c.post("/v1/events", json=body)
        assert r.status_code == 202, r.text


async def test_the_map_counts_paths_and_ends_and_the_headline_survives_a_migrate(
    page: Page, workspace: Workspace
) -> None:
    body = journey()
    async with workspace.client() as c:
        jid = (await c.post("/v1/journeys", json=body)).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    for profile, plan in (("map-a", "pro"), ("map-b", "free"), ("map-c", "pro")):
        await event(workspace, profile, "signup", plan=plan)
    await sign_in(page, workspace.stack.url, await workspace.key("viewer"))
    await page.get_by_role("link", name=body["name"]).click()

    node = page.get_by_test_id("step-clicked")
    await expect(node.locator(".node-active-n")).to_have_text("3")
    await expect(page.get_by_test_id("path-plan-case 0")).to_contain_text("· 2 (66.67%)")
    await expect(page.get_by_test_id("path-plan-default")).to_contain_text("· 1 (33.33%)")

    await event(workspace, "map-a", "click")
    await event(workspace, "map-b", "cancel")
    # "map-a" took yes to an end: no longer on the branch, finished on the end step.
    await expect(node.locator(".node-active-n")).to_have_text("1")
    await expect(page.get_by_test_id("step-done").locator(".node-ended")).to_have_text(
        "finished here 1"
    )
    await expect(page.get_by_test_id("step-done").locator(".node-active-n")).to_have_text("0")
    await expect(page.get_by_test_id("path-clicked-yes")).to_contain_text("yes · 1 (100%)")
    await expect(page.get_by_test_id("ends-0")).to_have_text("ended: finished 1 · exited 1")
    await expect(page.get_by_test_id("in-journey")).to_have_text("2")

    async with workspace.client() as c:
        assert (await c.post(f"/v1/journeys/{jid}/versions")).status_code in (200, 201)
        assert (await c.put(f"/v1/journeys/{jid}", json=body)).status_code == 200
        moved = await c.post(f"/v1/journeys/{jid}/publish", json={"in_flight": "migrate"})
        assert moved.json()["migrated"] == 2
    await page.reload()
    await expect(page.get_by_test_id("entered")).to_have_text("3")
    await expect(page.get_by_test_id("entered-by-version")).to_have_text("v1 3 · v2 0 (2 moved in)")
    await expect(page.get_by_test_id("in-journey")).to_have_text("2")
    await page.get_by_role("link", name="Journeys", exact=True).click()
    listed = page.get_by_role("row").filter(has_text=body["name"])
    await expect(listed.get_by_test_id("active-count")).to_have_text("2")
    await expect(listed.get_by_role("cell", name="3", exact=True)).to_be_visible()


async def test_a_message_step_shows_its_funnel_on_the_map_and_in_the_table(
    page: Page, workspace: Workspace
) -> None:
    sink = HttpSink()
    async with serving(sink.app()) as sms_url, workspace.client() as c:
        connector, template = await resources(c, f"{sms_url}/send")
        body = {
            "name": f"Funnel {uuid.uuid4().hex[:4]}",
            "goal": {"criteria": {"event": "purchase"}},
            "stages": [{"name": "In", "entry": {"event": "signup"}, "steps": [
                {"id": "text", "type": "activation", "channel": "sms", "connector_id": connector,
                 "template_id": template, "to_attribute": "phone"}]}],
        }  # fmt: skip
        jid = (await c.post("/v1/journeys", json=body)).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
        for who in ("f1", "f2"):
            await event(workspace, who, "signup", phone="+15550100")
        await sign_in(page, workspace.stack.url, await workspace.key("viewer"))
        await page.get_by_role("link", name=body["name"]).click()
        node = page.get_by_test_id("step-text")
        await expect(node.locator(".node-engaged")).to_have_text(
            "sent 2 · open 0% · click 0% · goal 0%"
        )
        await event(workspace, "f1", "purchase")
        await expect(node.locator(".node-engaged")).to_have_text(
            "sent 2 · open 0% · click 0% · goal 50%"
        )
        row = page.get_by_test_id("engagement").get_by_role("row").filter(has_text="all sms")
        await expect(row).to_contain_text("1 (50%)")
