"""An experiment on the console: its state above the split's node of the map, and a results
panel with each path's counts, rate and lift; the decision shows once it is made."""

from __future__ import annotations

from playwright.async_api import Page, expect

from services.runtime.engine.engine import bucket
from tests.browser.console import sign_in
from tests.integration.test_experiments import experiment_journey
from tests.stack import Workspace


async def test_an_experiment_shows_on_its_node_and_in_a_results_panel(
    page: Page, workspace: Workspace
) -> None:
    async with workspace.client() as c:
        r = await c.post(
            "/v1/journeys",
            json=experiment_journey(
                # Short enough on the real clock for the windows to close during the test.
                window="PT5S",
                min_per_path=20,
            ),
        )
        assert r.status_code == 201, r.text
        jid = r.json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    viewer = await workspace.key("viewer")
    await sign_in(page, workspace.stack.url, viewer)
    await page.goto(f"{workspace.stack.url}/console#/journeys/{jid}")
    await expect(page.get_by_test_id("experiment-x1")).to_have_text("collecting · 0 assigned")
    await expect(page.get_by_test_id("step-x1")).to_contain_text("experiment: A / B")

    # Profiles on path B buy right after they sign up; those on A never do.
    profiles = [f"buyer-{i}" for i in range(60)]
    events = []
    for p in profiles:
        events.append({"profile_id": p, "name": "signup"})
        if bucket(p, jid, "x1") >= 50:
            events.append({"profile_id": p, "name": "purchase"})
    async with workspace.client() as c:
        r = await c.post("/v1/events/batch", json={"events": events})
        assert r.status_code == 202, r.text

    panel = page.get_by_test_id("experiment-panel-x1")
    await expect(panel).to_contain_text("Lift vs control")
    # The windows close five seconds after the purchases, then the panel's next refresh.
    decided = page.get_by_test_id("experiment-x1")
    await expect(decided).to_have_text("decided: B", timeout=60_000)
    await expect(panel).to_contain_text("B wins")
    await expect(panel.get_by_role("row").filter(has_text="(control)")).to_contain_text("0.0%")
