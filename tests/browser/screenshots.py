"""The console's screenshots in docs/: ``python -m tests.browser.screenshots [DIR]``.

Starts the whole system in this process on embedded PostgreSQL and NATS, fills a workspace
with folders, journeys, profiles and deliveries, and captures each page in headless Chromium.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser.console import VIEWPORT, cart_journey, chromium, resources, sign_in
from tests.conftest import Servers
from tests.helpers import eventually, serving
from tests.sinks import HttpSink
from tests.stack import Workspace, new_workspace, running_stack
from waypost.cli import migrate_all
from waypost.embedded import EmbeddedNats, EmbeddedPostgres

PROFILES = [
    (
        "ada",
        {"first_name": "Ada", "phone": "+15550100", "tier": "gold", "email": "ada@example.com"},
    ),
    ("grace", {"first_name": "Grace", "phone": "+15550101", "email": "grace@example.com"}),
    ("linus", {"first_name": "Linus", "email": "linus@example.com"}),
    ("margaret", {"first_name": "Margaret", "phone": "+15550103"}),
    ("ken", {"first_name": "Ken", "phone": "+15550104"}),
]


async def _seed(workspace: Workspace, sms_url: str) -> tuple[str, str]:
    """Folders, a live journey with people in it, a draft, and deliveries. The live id and
    the name of a profile with a rich timeline."""
    async with workspace.client() as c:
        marketing = (await c.post("/v1/folders", json={"name": "Lifecycle"})).json()["id"]
        cart = (await c.post("/v1/folders", json={"name": "Cart", "parent_id": marketing})).json()[
            "id"
        ]
        connector, template = await resources(c, sms_url, "Cart reminder")
        journey = cart_journey(connector, template, cart) | {"name": "Cart recovery"}
        live = (await c.post("/v1/journeys", json=journey)).json()["id"]
        assert (await c.post(f"/v1/journeys/{live}/publish")).status_code == 200
        welcome = {
            "name": "Welcome series", "folder_id": marketing, "purpose": "welcome",
            "stages": [{"name": "Welcome", "entry": {"event": "signed_up"},
                        "steps": [{"id": "wait-1h", "type": "wait", "duration": "PT1H"},
                                  {"id": "hello", "type": "activation", "channel": "sms",
                                   "connector_id": connector, "template_id": template,
                                   "to_attribute": "phone"}]}],
        }  # fmt: skip
        assert (await c.post("/v1/journeys", json=welcome)).status_code == 201
        draft = cart_journey(connector, template) | {"name": "Win-back (draft)"}
        assert (await c.post("/v1/journeys", json=draft)).status_code == 201
        now = datetime.now(UTC)
        for i, (pid, attributes) in enumerate(PROFILES):
            upsert = {"attributes": attributes, "consent": {"sms": pid != "ken"}}
            await c.put(f"/v1/profiles/{pid}", json=upsert)
            at = (now - timedelta(minutes=30 - i)).isoformat()
            event = {"profile_id": pid, "name": "cart_add", "timestamp": at,
                     "properties": {"total": 40 + i}}  # fmt: skip
            await c.post("/v1/events", json=event)
        for pid, name in (("ada", "link_clicked"), ("grace", "link_clicked"),
                          ("margaret", "purchase_completed")):  # fmt: skip
            await c.post("/v1/events", json={"profile_id": pid, "name": name})

        async def settled() -> bool:
            r = await c.get("/v1/deliveries", params={"journey_id": live})
            return len(r.json()["items"]) >= 6

        await eventually(settled, "the deliveries of the seeded journey")
    return live, "ada"


SIMULATED = [
    {"profile_id": "sim-1", "name": "cart_add", "timestamp": "2026-12-01T09:00:00Z"},
    {"profile_id": "sim-1", "name": "link_clicked", "timestamp": "2026-12-01T09:20:00Z"},
]
MAX_HEIGHT = 1500  # px: a picture of the page's top, kept small


async def _shoot(page: Page, path: Path, max_height: int = MAX_HEIGHT) -> None:
    await page.wait_for_timeout(300)  # let the last refresh paint; a picture, not a test
    height = min(max_height, await page.evaluate("document.documentElement.scrollHeight"))
    clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height}
    await page.screenshot(path=str(path), full_page=True, clip=clip)  # type: ignore[arg-type]
    print(f"wrote {path}")


async def capture(out: Path, servers: Servers) -> None:
    sink = HttpSink()
    async with running_stack(servers) as stack, serving(sink.app()) as sink_url:
        workspace = await new_workspace(stack)
        live, profile = await _seed(workspace, f"{sink_url}/send")
        viewer = await workspace.key("viewer")
        with tempfile.TemporaryDirectory() as profile_dir:
            async with chromium(Path(profile_dir)) as browser:
                page = await browser.new_page()
                await sign_in(page, stack.url, workspace.admin_key)
                await expect(page.get_by_text("Cart recovery")).to_be_visible()
                await expect(page.get_by_test_id("active-count").first).not_to_have_text("…")
                await _shoot(page, out / "console-journeys.png")
                await page.goto(f"{stack.url}/console#/journeys/{live}")
                await expect(page.get_by_test_id("entered")).to_have_text("5")
                await _shoot(page, out / "console-journey.png")
                await page.goto(f"{stack.url}/console#/profiles/{profile}")
                await expect(page.get_by_test_id("timeline")).to_be_visible()
                await _shoot(page, out / "console-profile.png")
                await page.goto(f"{stack.url}/console#/deliveries?journey_id={live}")
                await expect(page.get_by_role("cell", name="skipped").first).to_be_visible()
                await _shoot(page, out / "console-deliveries.png")
                await page.goto(f"{stack.url}/console#/simulate/{live}")
                await expect(page.locator("#sim-events")).not_to_have_value("")
                await page.locator("#sim-events").fill(json.dumps(SIMULATED, indent=2))
                await page.get_by_role("button", name="Run simulation").click()
                await expect(page.locator(".sim-profile").first).to_be_visible()
                await _shoot(page, out / "console-simulate.png", 2300)
                await page.get_by_role("button", name="Sign out").click()
                await sign_in(page, stack.url, viewer)
                await page.goto(f"{stack.url}/console#/journeys/{live}")
                await expect(page.get_by_test_id("read-only-note")).to_be_visible()
                await _shoot(page, out / "console-viewer.png")
                await page.get_by_role("button", name="Sign out").click()
                await sign_in(page, stack.url, workspace.admin_key)
                await _editor(page, stack.url, live, out)


async def _editor(page: Page, url: str, live: str, out: Path) -> None:
    """The builder: an empty canvas, a step being configured, a problem, the publish dialog
    with the migrate preview of the profiles inside the live journey (not published)."""
    await page.goto(f"{url}/console#/edit")
    await expect(page.get_by_test_id("stage-0")).to_be_visible()
    await _shoot(page, out / "console-editor-empty.png")
    await page.goto(f"{url}/console#/edit/{live}")
    await page.get_by_role("button", name="New version").click()
    await page.get_by_test_id("step-clicked").click()
    await expect(page.get_by_label("Branch on: event")).to_be_visible()
    await _shoot(page, out / "console-editor-step.png")
    await page.get_by_test_id("step-wait-2h").click()
    await page.get_by_label("Duration").fill("two hours")
    await expect(page.get_by_test_id("problem-list")).to_be_visible()
    await _shoot(page, out / "console-editor-problem.png")
    await page.get_by_label("Duration").fill("PT2H")
    await page.get_by_role("button", name="Delete step").click()
    await page.get_by_test_id("confirm-delete").get_by_role("button", name="Delete").click()
    await expect(page.get_by_test_id("no-problems")).to_be_visible()
    await page.get_by_role("button", name="Publish…").click()
    await page.get_by_label("move to this version (migrate)").check()
    await expect(page.get_by_test_id("migrate-total")).to_be_visible()
    await _shoot(page, out / "console-editor-publish.png")


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as root:
        pg, nats = EmbeddedPostgres(Path(root) / "pg"), EmbeddedNats(Path(root) / "nats")
        out.mkdir(parents=True, exist_ok=True)
        try:
            servers = Servers(pg.start(), nats.start())
            migrate_all(servers.database_url)  # before the loop: migrations run their own
            asyncio.run(capture(out, servers))
        finally:
            nats.stop()
            pg.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
