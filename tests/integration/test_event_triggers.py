"""Event triggers through the gateway: the catalog of events, the check at publish, and what
the runtime counts of each trigger's event."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx

from tests.helpers import eventually
from tests.stack import Stack, Workspace, new_workspace

CART_ADD = {
    "name": "cart_add",
    "description": "A product went into the cart",
    "properties": {
        "cart": {"type": "object", "properties": {"total": {"type": "number"},
                 "items": {"type": "array", "items": {"type": "string"}}},
                 "required": ["total"]},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "at": {"type": "string", "format": "date-time"},
    },
    "required": ["cart"],
    "status": "published",
}  # fmt: skip


def trigger(name: str, status: str = "published", **properties: Any) -> dict[str, Any]:
    return {"name": name, "properties": properties, "status": status}


async def strict_workspace(stack: Stack) -> Workspace:
    """A workspace as new ones are: publishing needs the triggers."""
    return await new_workspace(stack, require_event_triggers=True)


async def test_triggers_are_created_read_changed_and_deleted(stack: Stack) -> None:
    ws = await strict_workspace(stack)
    async with ws.client() as c:
        created = await c.post("/v1/event-triggers", json=CART_ADD)
        again = await c.post("/v1/event-triggers", json=CART_ADD)
        other = await c.post("/v1/event-triggers", json=trigger("signup", "draft"))
        fetched = await c.get("/v1/event-triggers/cart_add")
        listed = (await c.get("/v1/event-triggers")).json()
        drafts = (await c.get("/v1/event-triggers", params={"status": "draft"})).json()
        first = (await c.get("/v1/event-triggers", params={"limit": 1})).json()
        second = await c.get(
            "/v1/event-triggers", params={"limit": 1, "cursor": first["next_cursor"]}
        )
        changed = await c.put(
            "/v1/event-triggers/signup", json=trigger("signup", plan={"type": "string"})
        )
        renamed = await c.put("/v1/event-triggers/signup", json=trigger("cart_add"))
        deleted = await c.delete("/v1/event-triggers/signup")
        gone = await c.get("/v1/event-triggers/signup")
        missing = await c.put("/v1/event-triggers/nope", json=trigger("nope"))
    assert created.status_code == 201, created.text
    assert created.json()["properties"] == CART_ADD["properties"]
    assert created.json()["required"] == ["cart"]
    assert again.status_code == 409
    assert other.status_code == 201
    body = fetched.json()
    assert fetched.status_code == 200
    assert body["description"] == CART_ADD["description"]
    assert (body["received_total"], body["schema_violations"]) == (0, 0)
    assert body["last_received_at"] is None
    assert body["violation_samples"] == []
    assert [t["name"] for t in listed["items"]] == ["cart_add", "signup"]
    assert "received_total" not in listed["items"][0]
    assert [t["name"] for t in drafts["items"]] == ["signup"]
    assert [t["name"] for t in first["items"]] == ["cart_add"]
    assert [t["name"] for t in second.json()["items"]] == ["signup"]
    assert changed.status_code == 200
    assert changed.json()["status"] == "published"
    assert changed.json()["properties"] == {"plan": {"type": "string"}}
    assert renamed.status_code == 409
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert missing.status_code == 404


async def test_a_bad_declaration_names_every_problem_with_its_path(workspace: Workspace) -> None:
    body = {
        "name": "checkout",
        "properties": {
            "total": {"type": "money"},
            "currency": {"type": "string", "enum": ["EUR", 3]},
            "at": {"type": "integer", "format": "date-time"},
            "cart": {"type": "object", "properties": {"id": {"type": "string", "minLength": 1}}},
        },
        "required": ["total", "nope"],
        "status": "published",
    }
    async with workspace.client() as c:
        bad = await c.post("/v1/event-triggers", json=body)
        builtin = await c.post("/v1/event-triggers", json=trigger("message_sent"))
        wrong = {"name": "", "properties": [], "status": "live", "colour": 1}
        shape = await c.post("/v1/event-triggers", json=wrong)
        slash = await c.post("/v1/event-triggers", json=trigger("a/b"))
        listed = (await c.get("/v1/event-triggers")).json()["items"]
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert {e["path"] for e in bad.json()["errors"]} == {
        "properties.total.type", "properties.currency.enum[1]", "properties.at.format",
        "properties.cart.properties.id.minLength", "required[1]",
    }  # fmt: skip
    assert builtin.status_code == 422
    assert builtin.json()["errors"][0]["path"] == "name"
    assert shape.status_code == 422
    assert {e["path"] for e in shape.json()["errors"]} == {"name", "properties", "status", "colour"}
    assert slash.status_code == 422
    assert listed == []


async def test_viewers_read_triggers_editors_write_them(workspace: Workspace) -> None:
    async with workspace.client() as admin:
        folder = (await admin.post("/v1/folders", json={"name": "F"})).json()["id"]
        assert (await admin.post("/v1/event-triggers", json=trigger("signup"))).status_code == 201
    viewer = await workspace.key("viewer", [folder])
    editor = await workspace.key("editor", [folder])
    ingest = await workspace.key("ingest")
    async with workspace.client(viewer) as v, workspace.client(editor) as e:
        read = await v.get("/v1/event-triggers/signup")
        listed = await v.get("/v1/event-triggers")
        refused = await v.post("/v1/event-triggers", json=trigger("x"))
        refused_delete = await v.delete("/v1/event-triggers/signup")
        written = await e.post("/v1/event-triggers", json=trigger("purchase"))
        changed = await e.put("/v1/event-triggers/purchase", json=trigger("purchase", "draft"))
    async with workspace.client(ingest) as i:
        ingest_read = await i.get("/v1/event-triggers")
    assert read.status_code == 200
    assert len(listed.json()["items"]) == 1
    assert refused.status_code == 403
    assert refused_delete.status_code == 403
    assert written.status_code == 201
    assert changed.status_code == 200
    assert ingest_read.status_code == 403


async def test_triggers_are_not_visible_from_another_workspace(stack: Stack) -> None:
    one, two = await new_workspace(stack), await new_workspace(stack)
    async with one.client() as c:
        assert (await c.post("/v1/event-triggers", json=trigger("signup"))).status_code == 201
    async with two.client() as other:
        read = await other.get("/v1/event-triggers/signup")
        changed = await other.put("/v1/event-triggers/signup", json=trigger("signup"))
        listed = (await other.get("/v1/event-triggers")).json()["items"]
        own = await other.post("/v1/event-triggers", json=trigger("signup"))
    assert read.status_code == 404
    assert changed.status_code == 404
    assert listed == []
    assert own.status_code == 201  # names are unique per workspace


# -- the check at publish -------------------------------------------------------------------

EVERYWHERE = {
    "name": "Everywhere",
    "goal": {"criteria": {"event": "purchase"}},
    "exit_criteria": [{"criteria": {"any": [{"event": "unsubscribe"},
                                            {"event": "message_failed"}]}}],
    "stages": [
        {"name": "Cart",
         "entry": {"event": "cart_add", "where": [
             {"property": "cart.total", "op": "gt", "value": 50},
             {"property": "cart.totl", "op": "exists"},
             {"property": "currency", "op": "eq", "value": 3}]},
         "milestone": {"not": {"event": "checkout"}},
         "steps": [{"id": "b", "type": "branch", "timeout": "P1D",
                    "criteria": {"event": "email_opened"}, "yes": [],
                    "no": [{"id": "w", "type": "branch", "timeout": "P1D",
                            "criteria": {"all": [{"event": "page_view"}]}, "yes": [], "no": []}]}]},
        {"name": "Checkout", "steps": [{"id": "done", "type": "end"}],
         "exit_criteria": [{"criteria": {"event": "refund"}}]},
    ],
}  # fmt: skip


async def test_publish_names_every_event_without_a_published_trigger(stack: Stack) -> None:
    ws = await strict_workspace(stack)
    async with ws.client() as c:
        await c.post("/v1/event-triggers", json=CART_ADD)
        await c.post("/v1/event-triggers", json=trigger("checkout", "draft"))
        jid = (await c.post("/v1/journeys", json=EVERYWHERE)).json()["id"]
        refused = await c.post(f"/v1/journeys/{jid}/publish")
        validated = await c.post("/v1/journeys/validate", json=EVERYWHERE)
        fetched = (await c.get(f"/v1/journeys/{jid}")).json()
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    errors = {e["path"]: e["message"] for e in refused.json()["errors"]}
    assert set(errors) == {
        "goal.criteria.event",
        "exit_criteria[0].criteria.any[0].event",
        "stages[0].entry.where[1].property",
        "stages[0].entry.where[2].value",
        "stages[0].milestone.not.event",
        "stages[0].steps[0].no[0].criteria.all[0].event",
        "stages[1].exit_criteria[0].criteria.event",
    }, errors
    assert "no published event trigger 'purchase'" in errors["goal.criteria.event"]
    assert "declares no property 'cart.totl'" in errors["stages[0].entry.where[1].property"]
    assert "type string" in errors["stages[0].entry.where[2].value"]
    assert validated.status_code == 422
    assert len(validated.json()["errors"]) == len(errors)
    assert fetched["status"] == "draft"


async def test_publish_goes_through_once_every_event_is_published(stack: Stack) -> None:
    ws = await strict_workspace(stack)
    body = EVERYWHERE | {"name": "Fixed"}
    body["stages"] = [dict(body["stages"][0]), body["stages"][1]]
    body["stages"][0]["entry"] = {
        "event": "cart_add",
        "where": [{"property": "cart.total", "op": "gt", "value": 50},
                  {"property": "currency", "op": "in", "value": ["EUR", "USD"]},
                  {"property": "cart.items", "op": "contains", "value": "sku-1"}],
    }  # fmt: skip
    async with ws.client() as c:
        await c.post("/v1/event-triggers", json=CART_ADD)
        for name in ("purchase", "unsubscribe", "checkout", "page_view", "refund"):
            r = await c.post("/v1/event-triggers", json=trigger(name))
            assert r.status_code == 201, r.text
        jid = (await c.post("/v1/journeys", json=body)).json()["id"]
        published = await c.post(f"/v1/journeys/{jid}/publish")
    assert published.status_code == 200, published.text


async def test_workspaces_that_do_not_require_triggers_publish_as_before(stack: Stack) -> None:
    ws = await strict_workspace(stack)
    async with ws.client() as c:
        defaults = (await c.get("/v1/workspace/settings")).json()
        jid = (await c.post("/v1/journeys", json=EVERYWHERE)).json()["id"]
        refused = await c.post(f"/v1/journeys/{jid}/publish")
        off = await c.put("/v1/workspace/settings", json={"require_event_triggers": False})
        published = await c.post(f"/v1/journeys/{jid}/publish")
    assert defaults["require_event_triggers"] is True
    assert refused.status_code == 422
    assert off.json()["require_event_triggers"] is False
    assert published.status_code == 200, published.text


# -- what the runtime counts ----------------------------------------------------------------


async def test_the_runtime_counts_each_triggers_events_and_their_violations(
    workspace: Workspace,
) -> None:
    async with workspace.client() as c:
        created = await c.post("/v1/event-triggers", json=CART_ADD | {"status": "draft"})
        assert created.status_code == 201, created.text
        good = {"cart": {"total": 12.5, "items": ["a"]}, "currency": "EUR",
                "at": "2026-12-02T10:00:00+01:00"}  # fmt: skip
        events = [
            {"event_id": "e1", "profile_id": "ada", "name": "cart_add", "properties": good},
            {"event_id": "e2", "profile_id": "bob", "name": "cart_add",
             "properties": {"cart": {"total": "12"}, "currency": "GBP"}},
            {"event_id": "e3", "profile_id": "cy", "name": "cart_add", "properties": {}},
            {"event_id": "e4", "profile_id": "ada", "name": "page_view"},
            {"event_id": "e1", "profile_id": "ada", "name": "cart_add", "properties": good},
        ]  # fmt: skip
        accepted = await c.post("/v1/events/batch", json={"events": events})
        one = {"event_id": "e5", "profile_id": "dee", "name": "cart_add", "properties": good}
        single = await c.post("/v1/events", json=one)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json() == {"accepted": 5, "rejected": []}
        assert single.status_code == 202

        # Counts are written with the events they count: once every profile is there, so are they.
        await applied(c, ["ada", "bob", "cy", "dee"])
        stats = (await c.get("/v1/event-triggers/cart_add")).json()
    assert stats["received_total"] == 4  # e1 once, e2, e3, e5; page_view is no trigger's
    assert stats["schema_violations"] == 2
    assert datetime.fromisoformat(stats["last_received_at"]).tzinfo is not None
    samples = {s["event_id"]: s["paths"] for s in stats["violation_samples"]}
    assert samples == {
        "e2": ["properties.cart.total: expected number, found string",
               "properties.currency: not one of the enum values"],
        "e3": ["properties.cart: required"],
    }  # fmt: skip


async def test_counts_start_with_the_trigger_and_keep_the_first_violations(
    workspace: Workspace,
) -> None:
    name = f"ping_{uuid.uuid4().hex[:6]}"
    async with workspace.client() as c:
        before = await c.post("/v1/events", json={"profile_id": "p0", "name": name})
        assert before.status_code == 202
        await applied(c, ["p0"])  # applied before the trigger existed: not counted
        declared = trigger(name, "draft", n={"type": "integer"})
        assert (await c.post("/v1/event-triggers", json=declared)).status_code == 201
        batch = [{"event_id": f"bad-{i}", "profile_id": f"p{i}", "name": name,
                  "properties": {"n": f"x{i}"}} for i in range(1, 9)]  # fmt: skip
        assert (await c.post("/v1/events/batch", json={"events": batch})).status_code == 202

        await applied(c, [f"p{i}" for i in range(1, 9)])
        stats = (await c.get(f"/v1/event-triggers/{name}")).json()
    assert stats["received_total"] == 8
    assert stats["schema_violations"] == 8
    samples = stats["violation_samples"]
    assert len(samples) == 5  # the first few are kept, not all
    assert {s["event_id"] for s in samples} <= {f"bad-{i}" for i in range(1, 9)}
    assert samples[0]["paths"][0].startswith("properties.n: expected integer, found string")


async def applied(c: httpx.AsyncClient, profiles: list[str]) -> None:
    """Wait until the runtime has applied an event of each profile."""

    async def all_there() -> bool:
        for profile in profiles:
            if (await c.get(f"/v1/profiles/{profile}")).status_code != 200:
                return False
        return True

    await eventually(all_there, f"events of {profiles} to be applied", within_s=30)


async def test_the_openapi_document_describes_triggers(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as c:
        doc = (await c.get("/openapi.json")).json()
    assert {"/v1/event-triggers", "/v1/event-triggers/{name}"} <= set(doc["paths"])
    operations = doc["paths"]["/v1/event-triggers/{name}"]
    assert {"get", "put", "delete"} <= set(operations)
    detail = doc["components"]["schemas"]["EventTriggerDetail"]["properties"]
    assert {"received_total", "last_received_at", "schema_violations"} <= set(detail)
    settings = doc["components"]["schemas"]["WorkspaceSettingsBody"]["properties"]
    assert "require_event_triggers" in settings
