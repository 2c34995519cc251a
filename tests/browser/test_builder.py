"""The journey builder in headless Chromium: a journey built from an empty canvas by clicking
and typing only, problems shown where they are and blocking Publish, an API journey that
round-trips unchanged, and what a viewer and an editor of another folder are shown."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.async_api import Page, expect

from tests.browser.console import cart_journey, resources, sign_in
from tests.helpers import eventually
from tests.stack import Workspace

SINK = "http://127.0.0.1:9/send"  # nothing listens; the profiles here have no address anyway


async def channels(workspace: Workspace) -> dict[str, str]:
    """One connector and one ready template per channel, and the two events declared."""
    made: dict[str, str] = {}
    async with workspace.client() as c:
        smtp = {"host": "127.0.0.1", "port": 9, "from": "a@b.test"}
        connectors = {
            "email": {"type": "smtp", "config": smtp},
            "sms": {"type": "sms_http", "config": {"url": SINK}},
            "push": {"type": "push_http", "config": {"url": SINK}},
        }
        for channel, body in connectors.items():
            name = f"{channel}-{uuid.uuid4().hex[:4]}"
            r = await c.post("/v1/connectors", json={"name": name, **body})
            assert r.status_code == 201, r.text
            made[f"{channel}-connector"] = r.json()["id"]
            template = {"name": f"cart {channel}", "channel": channel, "body": "Your cart waits",
                        "status": "ready"}  # fmt: skip
            if channel == "email":
                template["subject"] = "Your cart"
            r = await c.post("/v1/templates", json=template)
            assert r.status_code == 201, r.text
            made[f"{channel}-template"] = r.json()["id"]
        currency = {"type": "string", "enum": ["EUR", "USD"]}
        for name, properties in (
            ("cart_add", {"total": {"type": "number"}, "currency": currency}),
            ("purchase", {"total": {"type": "number"}}),
        ):
            trigger = {"name": name, "properties": properties, "status": "published"}
            r = await c.post("/v1/event-triggers", json=trigger)
            assert r.status_code in (200, 201), r.text
    return made


async def journeys(workspace: Workspace) -> list[dict[str, Any]]:
    async with workspace.client() as c:
        r = await c.get("/v1/journeys")
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
    return items


async def add_step(page: Page, where: str, kind: str) -> None:
    await page.get_by_test_id(f"insert-{where}").click()
    await page.get_by_role("menuitem", name=kind, exact=True).click()


async def cart_made(c: Any, live: bool = False) -> dict[str, Any]:
    """The cart journey made through the API with its connector and template (published
    when ``live``): what most tests here start from."""
    connector, template = await resources(c, SINK)
    r = await c.post("/v1/journeys", json=cart_journey(connector, template))
    assert r.status_code == 201, r.text
    if live:
        assert (await c.post(f"/v1/journeys/{r.json()['id']}/publish")).status_code == 200
    journey: dict[str, Any] = r.json()
    return journey


async def test_the_abandoned_cart_journey_is_built_by_clicking_published_and_counted(
    page: Page, workspace: Workspace
) -> None:
    await channels(workspace)
    editor = await workspace.key("editor")
    await sign_in(page, workspace.stack.url, editor)
    await page.get_by_test_id("new-journey").click()

    # Settings: name, goal purchase 50 %, leave on purchase.
    await page.get_by_label("Name").fill("Abandoned cart, built")
    await page.get_by_label("This journey has a goal").check()
    await page.get_by_label("Goal: event").select_option("purchase")
    await page.get_by_label("Target %").fill("50")
    await page.get_by_role("button", name="Add exit rule").click()
    await page.get_by_label("Exit rule 1: event").select_option("purchase")

    # Stage 1 is entered on cart_add.
    await page.get_by_test_id("stage-0").click()
    await page.get_by_label("Name").fill("Cart")
    await page.get_by_label("Entry: event").select_option("cart_add")

    # email -> branch on that email opened within 1 day -> no: SMS -> wait 1 day -> push.
    await add_step(page, "stages[0].steps[0]", "Email")
    await expect(page.get_by_test_id("step-email-1")).to_be_visible()
    await add_step(page, "stages[0].steps[1]", "Branch")
    await page.get_by_label("Branch on: event").select_option("email_opened")
    await page.get_by_role("button", name="Add property condition").click()
    await page.get_by_label("Branch on: property 1").fill("step_id")
    await page.get_by_label("Branch on: value 1").fill("email-1")
    await expect(page.get_by_label("Within")).to_have_value("P1D")
    await add_step(page, "stages[0].steps[1].no[0]", "SMS")
    await add_step(page, "stages[0].steps[1].no[1]", "Wait")
    await add_step(page, "stages[0].steps[1].no[2]", "Push")

    await expect(page.get_by_test_id("no-problems")).to_be_visible()
    publish = page.get_by_role("button", name="Publish…")
    await expect(publish).to_be_enabled()
    await publish.click()
    await page.locator("[data-action=confirm-publish]").click()
    await expect(page.get_by_test_id("status")).to_have_text("live")

    (made,) = [j for j in await journeys(workspace) if j["name"] == "Abandoned cart, built"]
    assert made["goal"]["criteria"]["event"] == "purchase"
    assert made["goal"]["target_percent"] == 50
    assert [rule["criteria"]["event"] for rule in made["exit_criteria"]] == ["purchase"]
    steps = made["stages"][0]["steps"]
    assert [s["type"] for s in steps] == ["activation", "branch"]
    assert steps[1]["criteria"]["event"] == "email_opened"
    opened = {"property": "step_id", "op": "eq", "value": "email-1"}
    assert steps[1]["criteria"]["where"] == [opened]
    assert [s["id"] for s in steps[1]["no"]] == ["sms-1", "wait-1", "push-1"]

    async with workspace.client() as c:
        for n in range(2):
            r = await c.post("/v1/events", json={"profile_id": f"built-{n}", "name": "cart_add",
                                                 "properties": {"total": 10}})  # fmt: skip
            assert r.status_code == 202, r.text
    await expect(page.get_by_test_id("entered")).to_have_text("2")
    await expect(page.get_by_test_id("step-branch-1").locator(".node-active-n")).to_have_text("2")


async def test_a_problem_shows_on_its_node_and_blocks_publish_until_fixed(
    page: Page, workspace: Workspace
) -> None:
    await channels(workspace)
    async with workspace.client() as c:
        r = await c.put("/v1/workspace/settings", json={"require_event_triggers": True})
        assert r.status_code == 200, r.text
    await sign_in(page, workspace.stack.url, workspace.admin_key)
    await page.goto(f"{workspace.stack.url}/console#/edit")
    await page.get_by_test_id("stage-0").click()
    await page.get_by_label("Entry: event").select_option("cart_add")
    await add_step(page, "stages[0].steps[0]", "Wait")
    publish = page.get_by_role("button", name="Publish…")
    await expect(page.get_by_test_id("no-problems")).to_be_visible()
    await expect(publish).to_be_enabled()

    # A duration that is none.
    await page.get_by_label("Duration").fill("one day")
    node = page.get_by_test_id("step-wait-1")
    await expect(node).to_have_class(_has_problem())
    await expect(publish).to_be_disabled()
    await expect(page.get_by_test_id("field-problem")).to_be_visible()
    await page.get_by_label("Duration").fill("PT2H")
    await expect(node).not_to_have_class(_has_problem())
    await expect(publish).to_be_enabled()

    # A property the trigger does not declare, chosen on the stage's entry.
    await page.get_by_test_id("stage-0").click()
    await page.get_by_role("button", name="Add property condition").click()
    await page.get_by_label("Entry: value 1").fill("12")
    await expect(publish).to_be_enabled()  # `total`, declared, is offered first
    await page.get_by_role("button", name="JSON", exact=True).click()
    text = await page.get_by_label("Journey JSON").input_value()
    await page.get_by_label("Journey JSON").fill(text.replace('"total"', '"colour"'))
    await page.get_by_role("button", name="Apply JSON").click()
    stage = page.get_by_test_id("stage-0")
    await expect(stage).to_have_class(_has_problem())
    await expect(publish).to_be_disabled()
    problems = page.get_by_test_id("problem-list")
    await expect(problems).to_contain_text("stages[0].entry.where[0].property")
    await problems.get_by_role("button").first.click()
    await page.get_by_label("Entry: property 1").select_option("total")
    await expect(stage).not_to_have_class(_has_problem())
    await expect(publish).to_be_enabled()

    # Undo brings the problem back, redo takes it away again.
    await page.get_by_role("button", name="Undo").click()
    await expect(publish).to_be_disabled()
    await page.get_by_role("button", name="Redo").click()
    await expect(publish).to_be_enabled()


def _has_problem() -> Any:
    return re.compile(r"\bhas-problem\b")


async def test_a_journey_made_through_the_api_round_trips_unchanged(
    page: Page, workspace: Workspace
) -> None:
    async with workspace.client() as c:
        before = await cart_made(c)
    await sign_in(page, workspace.stack.url, workspace.admin_key)
    await page.goto(f"{workspace.stack.url}/console#/journeys/{before['id']}")
    await page.locator("[data-action=edit]").click()
    await expect(page.get_by_test_id("step-holdout")).to_be_visible()
    await page.get_by_role("button", name="Save draft").click()
    await expect(page.get_by_test_id("saved")).to_be_visible()
    async with workspace.client() as c:
        r = await c.get(f"/v1/journeys/{before['id']}")
        after = r.json()
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }

    # The JSON view shows the same body, and applying it unchanged changes nothing.
    await page.get_by_role("button", name="JSON", exact=True).click()
    await page.get_by_role("button", name="Apply JSON").click()
    await expect(page.get_by_test_id("unsaved")).to_have_count(0)


async def test_a_viewer_sees_no_editing_control(page: Page, workspace: Workspace) -> None:
    async with workspace.client() as c:
        journey = await cart_made(c)
    viewer = await workspace.key("viewer")
    await sign_in(page, workspace.stack.url, viewer)
    await expect(page.get_by_test_id("new-journey")).to_have_count(0)
    await page.goto(f"{workspace.stack.url}/console#/edit/{journey['id']}")
    await expect(page.get_by_test_id("step-sms-1")).to_be_visible()
    await expect(page.get_by_test_id("read-only-note")).to_be_visible()
    await page.get_by_test_id("step-sms-1").click()
    for name in ("Save draft", "Publish…", "Undo", "Delete step", "Move up"):
        await expect(page.get_by_role("button", name=name)).to_have_count(0)
    await expect(page.locator("button.insert")).to_have_count(0)
    editable = page.locator(".inspector input:enabled, .inspector select:enabled")
    await expect(editable).to_have_count(0)


async def test_an_editor_outside_the_folder_gets_the_403_explained(
    page: Page, workspace: Workspace
) -> None:
    async with workspace.client() as c:
        r = await c.post("/v1/folders", json={"name": "Retention"})
        assert r.status_code == 201, r.text
        theirs = r.json()["id"]
        r = await c.post("/v1/folders", json={"name": "Acquisition"})
        mine = r.json()["id"]
        connector, template = await resources(c, SINK)
        r = await c.post("/v1/journeys", json=cart_journey(connector, template, folder_id=theirs))
        journey = r.json()
    editor = await workspace.key("editor", folder_ids=[mine])
    await sign_in(page, workspace.stack.url, editor)
    await page.goto(f"{workspace.stack.url}/console#/edit/{journey['id']}")
    await expect(page.get_by_text("Not allowed for this key")).to_be_visible()
    await expect(page.get_by_test_id("folder-explained")).to_be_visible()


async def test_the_migrate_preview_counts_match_what_the_publish_does(
    page: Page, workspace: Workspace
) -> None:
    async with workspace.client() as c:
        journey = await cart_made(c, live=True)
        # Two wait at the branch in Cart; a gold one who clicked waits two hours in Checkout.
        for profile, tier in (("stay-a", "basic"), ("stay-b", "basic"), ("gold", "gold")):
            event = {"profile_id": profile, "name": "cart_add", "traits": {"tier": tier}}
            r = await c.post("/v1/events", json=event)
            assert r.status_code == 202, r.text
        await eventually_inside(c, journey["id"], 3)
        r = await c.post("/v1/events", json={"profile_id": "gold", "name": "link_clicked"})
        assert r.status_code == 202, r.text
        await eventually_at(c, journey["id"], "gold", "wait-2h")

    editor = await workspace.key("editor")
    await sign_in(page, workspace.stack.url, editor)
    await page.goto(f"{workspace.stack.url}/console#/edit/{journey['id']}")
    await page.get_by_role("button", name="New version").click()
    await page.get_by_test_id("step-wait-2h").click()
    await page.get_by_role("button", name="Delete step").click()
    await page.get_by_test_id("confirm-delete").get_by_role("button", name="Delete").click()
    await expect(page.get_by_test_id("step-wait-2h")).to_have_count(0)
    await expect(page.get_by_test_id("no-problems")).to_be_visible()
    await page.get_by_role("button", name="Publish…").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_test_id("diff-removed")).to_contain_text("wait-2h")
    await dialog.get_by_label("move to this version (migrate)").check()
    await expect(dialog.get_by_test_id("migrate-total")).to_have_text(
        "2 of 3 profile(s) inside would move to this version; 1 would stay."
    )
    await expect(dialog.locator("tr[data-step=wait-2h]")).to_contain_text("not in stage")

    async with workspace.client() as c:  # the preview changed nothing
        r = await c.get(f"/v1/journeys/{journey['id']}/profiles", params={"state": "active"})
        assert {m["version"] for m in r.json()["items"]} == {1}

    await dialog.locator("[data-action=confirm-publish]").click()
    await expect(page.get_by_test_id("status")).to_have_text("live")
    async with workspace.client() as c:
        r = await c.get(f"/v1/journeys/{journey['id']}")
        assert (r.json()["status"], r.json()["version"]) == ("live", 2)
    # The move itself (two profiles to version 2, the gold one staying) is checked against
    # the same preview through the API in tests/integration/test_migration_preview.py.


async def eventually_inside(c: Any, journey_id: str, n: int) -> None:
    async def probe() -> bool:
        r = await c.get(f"/v1/journeys/{journey_id}/profiles", params={"state": "active"})
        return r.status_code == 200 and len(r.json()["items"]) == n  # 429: asked too often

    await eventually(probe, f"{n} profiles inside")


async def eventually_at(c: Any, journey_id: str, profile_id: str, step: str) -> None:
    async def probe() -> bool:
        r = await c.get(f"/v1/journeys/{journey_id}/profiles", params={"state": "active"})
        if r.status_code != 200:
            return False  # 429: asked too often
        at = {m["profile_id"]: m["step"] for m in r.json()["items"]}
        return at.get(profile_id) == step

    await eventually(probe, f"{profile_id} at {step}")


async def test_a_stopped_journey_keeps_its_last_counts_and_jumps_are_arrows(
    page: Page, workspace: Workspace
) -> None:
    async with workspace.client() as c:
        journey = await cart_made(c, live=True)
        for n in range(2):
            r = await c.post("/v1/events", json={"profile_id": f"last-{n}", "name": "cart_add"})
            assert r.status_code == 202, r.text
        await eventually_inside(c, journey["id"], 2)
        assert (await c.post(f"/v1/journeys/{journey['id']}/stop")).status_code == 200
    await sign_in(page, workspace.stack.url, workspace.admin_key)
    await page.goto(f"{workspace.stack.url}/console#/journeys/{journey['id']}")
    await expect(page.get_by_test_id("status")).to_have_text("stopped")
    await expect(page.get_by_test_id("step-sms-1").locator(".node-counts")).to_have_text(
        "entered 2 · done 2"
    )
    await expect(page.get_by_test_id("step-clicked").locator(".node-active-n")).to_have_text("0")
    await expect(page.get_by_test_id("no-step-counts")).to_contain_text("last counts")
    await expect(page.locator("path.jump-link[data-jump=to-checkout]")).to_have_count(1)


async def test_the_draft_is_simulated_from_the_editor_and_its_path_outlined(
    page: Page, workspace: Workspace
) -> None:
    async with workspace.client() as c:
        journey = await cart_made(c)
    await sign_in(page, workspace.stack.url, workspace.admin_key)
    await page.goto(f"{workspace.stack.url}/console#/edit/{journey['id']}")
    await page.get_by_role("button", name="Simulate").click()
    simulation = page.get_by_test_id("editor-simulation")
    await expect(simulation.get_by_role("button", name="sim-1", exact=False)).to_be_visible()
    await expect(page.get_by_test_id("step-sms-1")).to_have_class(re.compile(r"\bvisited\b"))
    await expect(page.get_by_test_id("step-clicked")).to_have_class(re.compile(r"\bvisited\b"))
    await expect(page.get_by_test_id("step-done")).not_to_have_class(re.compile(r"\bvisited\b"))


async def test_leaving_with_unsaved_changes_asks_first(page: Page, workspace: Workspace) -> None:
    await sign_in(page, workspace.stack.url, workspace.admin_key)
    await page.goto(f"{workspace.stack.url}/console#/edit")
    await page.get_by_label("Name").fill("Not saved yet")
    await expect(page.get_by_test_id("unsaved")).to_be_visible()
    asked: list[str] = []

    async def decline(dialog: Any) -> None:
        asked.append(dialog.message)
        await dialog.dismiss()

    page.once("dialog", decline)
    await page.get_by_role("link", name="Journeys", exact=True).click()
    await expect(page.get_by_label("Name")).to_have_value("Not saved yet")
    assert len(asked) == 1
    assert "unsaved" in asked[0]
    assert page.url.endswith("#/edit")

    async def accept(dialog: Any) -> None:
        await dialog.accept()

    page.once("dialog", accept)
    await page.get_by_role("link", name="Journeys", exact=True).click()
    await expect(page.get_by_role("heading", name="Journeys")).to_be_visible()
    assert not [j for j in await journeys(workspace) if j["name"] == "Not saved yet"]


async def test_the_builder_fits_both_screens_and_works_from_the_keyboard(
    page: Page, workspace: Workspace
) -> None:
    await sign_in(page, workspace.stack.url, workspace.admin_key)
    for width, height in ((1280, 800), (1920, 1080)):
        await page.set_viewport_size({"width": width, "height": height})
        await page.goto(f"{workspace.stack.url}/console#/edit")
        await expect(page.get_by_test_id("stage-0")).to_be_visible()
        assert await page.evaluate("document.documentElement.scrollWidth") <= width
        for control in ("Publish…", "Save draft", "Undo"):
            button = page.get_by_role("button", name=control, exact=True)
            await expect(button).to_be_visible()
            box = await button.bounding_box()
            assert box is not None, control
            assert box["x"] + box["width"] <= width
            assert box["y"] + box["height"] <= height
        await expect(page.get_by_label("Name")).to_be_in_viewport()

    # Insert a step, open it and undo it without the mouse.
    await page.get_by_test_id("insert-stages[0].steps[0]").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("menuitem", name="Wait")).to_be_focused()
    await page.keyboard.press("Enter")
    node = page.get_by_test_id("step-wait-1")
    await expect(node).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("Duration")).to_have_value("P1D")
    await node.focus()
    await page.keyboard.press("Control+z")
    await expect(node).to_have_count(0)
    await page.keyboard.press("Control+Shift+z")
    await expect(page.get_by_test_id("step-wait-1")).to_be_visible()


async def test_steps_move_and_delete_with_their_paths_and_a_renamed_stage_keeps_its_jumps(
    page: Page, workspace: Workspace
) -> None:
    await channels(workspace)
    async with workspace.client() as c:
        journey = await cart_made(c)
    await sign_in(page, workspace.stack.url, workspace.admin_key)
    await page.goto(f"{workspace.stack.url}/console#/edit/{journey['id']}")

    # Deleting the branch names the three steps on its paths; cancelled here.
    await page.get_by_test_id("step-clicked").click()
    await page.get_by_role("button", name="Delete step").click()
    confirm = page.get_by_test_id("confirm-delete")
    await expect(confirm).to_contain_text("Delete clicked and the 3 steps on its paths?")
    await confirm.get_by_role("button", name="Cancel").click()

    # The no path's wait moves to the head of Checkout.
    await page.get_by_test_id("step-wait-1d").click()
    await page.get_by_role("button", name="Move to…").click()
    await page.get_by_test_id("insert-stages[1].steps[0]").click()

    # Renaming Checkout renames the jump that leads there.
    await page.get_by_test_id("stage-1").click()
    await page.get_by_label("Name").fill("Payment")

    # An enum property is a choice of its values.
    await page.get_by_test_id("stage-0").click()
    await page.get_by_label("Entry: event").select_option("cart_add")
    await page.get_by_role("button", name="Add property condition to Entry").click()
    await page.get_by_label("Entry: property 1").select_option("currency")
    await page.get_by_label("Entry: value 1").select_option("USD")
    await page.get_by_label("Entry: operator 1").select_option("neq")

    await expect(page.get_by_test_id("no-problems")).to_be_visible()
    await page.get_by_role("button", name="Save draft").click()
    await expect(page.get_by_test_id("saved")).to_be_visible()
    async with workspace.client() as c:
        body = (await c.get(f"/v1/journeys/{journey['id']}")).json()
    cart, payment = body["stages"]
    assert payment["name"] == "Payment"
    assert [s["id"] for s in payment["steps"]] == ["wait-1d", "wait-2h", "sms-3", "done"]
    assert cart["steps"][1]["no"] == []
    jump = cart["steps"][1]["yes"][0]["cases"][0]["steps"][0]
    assert jump == {"id": "to-checkout", "type": "jump", "stage": "Payment"}
    where = cart["entry"]["where"]
    assert where == [{"property": "currency", "op": "neq", "value": "USD"}]
