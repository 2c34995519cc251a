"""The console's profile page as an operator uses it: found by an attribute, times in the
profile's own zone too, and explanations that lead with the criterion that failed."""

from __future__ import annotations

import uuid

from playwright.async_api import Page, expect

from tests.browser.console import sign_in
from tests.browser.test_console import live
from tests.helpers import eventually
from tests.stack import Workspace


async def test_a_profile_is_found_by_email_and_explains_what_failed(
    page: Page, workspace: Workspace
) -> None:
    await live(workspace)  # enters on cart_add
    profile = f"zoned-{uuid.uuid4().hex[:6]}"
    email = f"{profile}@example.com"
    async with workspace.client() as c:
        attributes = {"email": email, "timezone": "Asia/Tokyo"}
        r = await c.put(f"/v1/profiles/{profile}", json={"attributes": attributes})
        assert r.status_code == 200, r.text
        r = await c.post("/v1/events", json={"profile_id": profile, "name": "browse"})
        assert r.status_code == 202, r.text

        async def explained() -> bool:
            r = await c.get(f"/v1/profiles/{profile}/explain", params={"all": "true"})
            return bool(r.json()["items"])

        await eventually(explained, "the event's explanation")
        r = await c.post("/v1/events", json={"profile_id": profile, "name": "cart_add",
                                             "properties": {"total": 42}})  # fmt: skip
        assert r.status_code == 202, r.text

        async def entered() -> bool:
            r = await c.get(f"/v1/profiles/{profile}/timeline")
            return any(e["kind"] == "entered" for e in r.json()["items"])

        await eventually(entered, "the entry")

    await sign_in(page, workspace.stack.url, await workspace.key("viewer"))
    await page.get_by_role("link", name="Profiles").click()
    await page.get_by_label("Profile id").fill(f"email={email}")
    await page.get_by_role("button", name="Look up").click()
    await page.get_by_role("link", name=profile).click()

    await expect(page.get_by_test_id("profile-id")).to_have_text(profile)
    entered_row = page.get_by_test_id("timeline").locator(".tl-entered")
    await expect(entered_row).to_contain_text("Asia/Tokyo")

    await page.get_by_label("Journey to explain").select_option(label="all journeys")
    await expect(page.get_by_text("waiting for other events are not shown")).to_be_visible()
    await page.get_by_label("also journeys waiting for other events").check()
    await expect(page.get_by_test_id("failed-criterion").first).to_have_text(
        "event name is 'browse', not 'cart_add'"
    )
