"""The operator console in headless Chromium against the whole system: signing in with a
key, publishing, live counts on the journey map, a profile's timeline, deliveries with
their reasons, a simulation, and what a viewer's key does not show."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page, Request, expect

from tests.browser.console import cart_journey, resources, sign_in
from tests.stack import Workspace

SMS_URL = "http://127.0.0.1:9/send"  # nothing listens; every profile here has no phone


async def draft(workspace: Workspace) -> dict[str, Any]:
    async with workspace.client() as c:
        connector, template = await resources(c, SMS_URL)
        r = await c.post("/v1/journeys", json=cart_journey(connector, template))
        assert r.status_code == 201, r.text
        journey: dict[str, Any] = r.json()
    return journey


async def live(workspace: Workspace) -> dict[str, Any]:
    journey = await draft(workspace)
    async with workspace.client() as c:
        r = await c.post(f"/v1/journeys/{journey['id']}/publish")
        assert r.status_code == 200, r.text
    return journey


async def cart_add(workspace: Workspace, profile_id: str, event_id: str | None = None) -> None:
    event = {"profile_id": profile_id, "name": "cart_add", "properties": {"total": 42}}
    async with workspace.client() as c:
        r = await c.post("/v1/events", json=event | ({"event_id": event_id} if event_id else {}))
        assert r.status_code == 202, r.text


def step_count(page: Page, step_id: str) -> Any:
    return page.get_by_test_id(f"step-{step_id}").locator(".node-active-n")


async def test_publish_then_events_move_the_counts_on_the_map(
    page: Page, workspace: Workspace
) -> None:
    journey = await draft(workspace)
    editor = await workspace.key("editor")
    urls: list[str] = []

    def seen(request: Request) -> None:
        urls.append(request.url)

    page.on("request", seen)
    await sign_in(page, workspace.stack.url, editor)
    await expect(page.locator("#who-role")).to_have_text("editor")
    row = page.get_by_role("row").filter(has_text=journey["name"])
    await expect(row.get_by_text("draft").first).to_be_visible()
    await row.get_by_role("link", name=journey["name"]).click()

    await page.get_by_role("button", name="Publish").click()
    await expect(page.get_by_test_id("status")).to_have_text("live")
    await expect(page.get_by_role("button", name="Pause")).to_be_visible()
    await expect(page.get_by_test_id("entered")).to_have_text("0")
    await expect(step_count(page, "clicked")).to_have_text("0")

    await cart_add(workspace, "console-1")
    await expect(page.get_by_test_id("entered")).to_have_text("1")
    await expect(step_count(page, "clicked")).to_have_text("1")
    await expect(page.get_by_test_id("in-journey")).to_have_text("1")
    await cart_add(workspace, "console-2")
    await expect(step_count(page, "clicked")).to_have_text("2")
    await expect(page.get_by_test_id("step-sms-1").locator(".node-counts")).to_have_text(
        "entered 2 · done 2"
    )
    await expect(page.get_by_role("cell", name="console-2")).to_be_visible()

    await page.get_by_role("link", name="Journeys", exact=True).click()
    listed = page.get_by_role("row").filter(has_text=journey["name"])
    await expect(listed.get_by_test_id("active-count")).to_have_text("2")

    await page.get_by_role("link", name="Deliveries").click()
    await page.get_by_label("Status").select_option("skipped")
    await page.get_by_role("button", name="Show").click()
    await expect(page.get_by_test_id("reason").first).to_contain_text("no_recipient")

    assert urls
    assert not [u for u in urls if editor in u], "the key must never be in a URL"
    assert await page.evaluate("sessionStorage.getItem('waypost.console.key')") == editor


async def test_a_profile_lookup_shows_its_timeline_with_causes(
    page: Page, workspace: Workspace
) -> None:
    journey = await live(workspace)
    await cart_add(workspace, "timeline-1", event_id="evt-console-1")
    viewer = await workspace.key("viewer")
    await sign_in(page, workspace.stack.url, viewer)
    await page.get_by_role("link", name="Profiles").click()
    await page.get_by_label("Profile id").fill("timeline-1")
    await page.get_by_role("button", name="Look up").click()

    await expect(page.get_by_test_id("profile-id")).to_have_text("timeline-1")
    timeline = page.get_by_test_id("timeline")
    await expect(timeline.locator(".tl-entered")).to_contain_text(journey["name"])
    await expect(timeline.locator(".tl-entered")).to_contain_text("cause: event evt-console-1")
    await expect(timeline.locator(".tl-waiting").first).to_contain_text("clicked")
    await expect(page.get_by_role("cell", name="entered", exact=True)).to_be_visible()

    await page.get_by_label("Profile id").fill("nobody-here")
    await page.get_by_role("button", name="Look up").click()
    await expect(page.get_by_text('No profile "nobody-here"')).to_be_visible()


async def test_a_viewer_sees_no_publish_button_and_the_403_is_explained(
    page: Page, workspace: Workspace
) -> None:
    journey = await draft(workspace)
    viewer = await workspace.key("viewer")
    await sign_in(page, workspace.stack.url, viewer)
    await expect(page.locator("#who-role")).to_have_text("viewer")
    await page.get_by_role("link", name=journey["name"]).click()

    await expect(page.get_by_test_id("read-only-note")).to_be_visible()
    await expect(page.get_by_test_id("step-sms-1")).to_be_visible()
    await expect(page.get_by_test_id("exits-0")).to_have_text("exits: cart_emptied → leave")
    await expect(page.get_by_test_id("exits-1")).to_have_text("exits: stale after 3 d")
    for action in ("Publish", "Pause", "Resume", "Stop", "New version"):
        await expect(page.get_by_role("button", name=action)).to_have_count(0)
    await expect(page.get_by_text("Not allowed for this key")).to_be_visible()
    await expect(page.get_by_text("A viewer key may not list the profiles")).to_be_visible()

    await page.get_by_role("link", name="Simulate", exact=True).first.click()
    await expect(page.get_by_test_id("simulate-note")).to_be_visible()
    await expect(page.get_by_role("button", name="Run simulation")).to_be_disabled()


async def test_a_simulation_shows_the_path_taken(page: Page, workspace: Workspace) -> None:
    journey = await live(workspace)
    await sign_in(page, workspace.stack.url, workspace.admin_key)
    await page.goto(f"{workspace.stack.url}/console#/simulate/{journey['id']}")
    await expect(page.locator("#sim-events")).to_have_value(
        # the sample events start the journey with its own entry event
        re.compile(r'"name": "cart_add"')
    )
    await page.get_by_role("button", name="Run simulation").click()
    first = page.locator(".sim-profile").first
    await expect(first).to_contain_text("sim-1")
    await expect(first.locator(".tl-branch_taken").first).to_contain_text("path: no")
    await expect(page.locator(".journey-map .node.visited")).not_to_have_count(0)
    # Each message as the live rules decide it, rendered: sim-2 has no phone for the SMS.
    outcomes = page.get_by_test_id("sim-outcome")
    await expect(outcomes.filter(has_text="skipped: no_recipient").first).to_be_visible()
    await expect(outcomes.filter(has_text="sent").first).to_be_visible()
    await expect(page.get_by_text("Your cart is waiting").first).to_be_visible()

    await page.locator("#sim-events").fill("[not json")
    await page.get_by_role("button", name="Run simulation").click()
    await expect(page.get_by_text("Events: not valid JSON")).to_be_visible()


async def test_a_wrong_key_is_refused_at_sign_in(page: Page, workspace: Workspace) -> None:
    await page.goto(f"{workspace.stack.url}/console")
    await page.get_by_label("API key").fill("wp_not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#sign-in-error")).to_have_text(
        "This key is unknown or has been revoked."
    )
    assert await page.evaluate("sessionStorage.length") == 0


async def test_pause_resume_a_new_version_and_a_refused_publish(
    page: Page, workspace: Workspace
) -> None:
    journey = await live(workspace)
    await sign_in(page, workspace.stack.url, workspace.admin_key)
    await page.goto(f"{workspace.stack.url}/console#/journeys/{journey['id']}")
    badge = page.get_by_test_id("status")
    await page.get_by_role("button", name="Pause").click()
    await expect(badge).to_have_text("paused")
    await page.get_by_role("button", name="Resume").click()
    await expect(badge).to_have_text("live")
    await page.get_by_role("button", name="New version").click()
    await expect(page.get_by_role("button", name="Publish v2")).to_be_visible()
    await expect(page.get_by_label("Profiles already inside")).to_be_visible()
    await expect(page.get_by_role("button", name="New version")).to_have_count(0)
    await expect(page.get_by_text("draft v2 pending")).to_be_visible()
    await page.get_by_role("button", name="Publish v2").click()
    await expect(page.get_by_label("Version")).to_contain_text("version 2 (live)")
    await page.get_by_role("button", name="Stop").click()
    await page.get_by_role("button", name="Stop journey").click()
    await expect(badge).to_have_text("stopped")
    await expect(page.get_by_test_id("no-step-counts")).to_be_visible()

    async with workspace.client() as c:
        connector, template = await resources(c, SMS_URL)
        r = await c.put(f"/v1/templates/{template}",
                        json={"name": "not ready", "channel": "sms", "body": "x",
                              "status": "draft"})  # fmt: skip
        assert r.status_code == 200, r.text
        r = await c.post("/v1/journeys", json=cart_journey(connector, template))
        refused = r.json()["id"]
    await page.goto(f"{workspace.stack.url}/console#/journeys/{refused}")
    await page.get_by_role("button", name="Publish").click()
    problem = page.locator(".problem-422")
    await expect(problem).to_be_visible()
    await expect(problem.locator(".field-errors li").first).to_contain_text(
        "stages[0].steps[0].template_id"
    )
    await expect(page.get_by_test_id("status")).to_have_text("draft")


async def test_an_ingest_key_is_told_what_the_pages_need(page: Page, workspace: Workspace) -> None:
    ingest = await workspace.key("ingest")
    await sign_in(page, workspace.stack.url, ingest)
    await expect(page.get_by_text("Not available to an ingest key")).to_be_visible()
    await page.get_by_role("link", name="Deliveries").click()
    await expect(page.get_by_text("to see deliveries sign in with a viewer")).to_be_visible()
