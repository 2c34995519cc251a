"""The designer through the gateway: journeys and their versions, templates, connectors,
workspace settings, and journeys.changed on the bus."""

from __future__ import annotations

import copy
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NATS

from shared import db
from tests.helpers import eventually
from tests.scenarios import load, make_concrete, scenario_names
from tests.stack import Stack, Workspace, new_workspace, service_headers


def welcome(name: str = "Welcome") -> dict[str, Any]:
    return {
        "name": name,
        "stages": [
            {
                "name": "Signed up",
                "entry": {"event": "newsletter_signup"},
                "steps": [{"id": "wait-1h", "type": "wait", "duration": "PT1H"}],
            }
        ],
    }


async def create(workspace: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    async with workspace.client() as c:
        r = await c.post("/v1/journeys", json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


@pytest.mark.parametrize("name", scenario_names())
async def test_example_journeys_are_created_and_published(workspace: Workspace, name: str) -> None:
    async with workspace.client() as c:
        body = await make_concrete(c, load(name))
        created = (await c.post("/v1/journeys", json=body)).json()
        assert created["version"] == 1
        assert created["status"] == "draft"
        published = await c.post(f"/v1/journeys/{created['id']}/publish")
        fetched = (await c.get(f"/v1/journeys/{created['id']}")).json()
    assert published.status_code == 200, published.text
    assert published.json() == {"status": "live", "version": 1}
    assert fetched["status"] == "live"
    assert fetched["stages"][0]["name"] == body["stages"][0]["name"]


async def test_live_journey_is_edited_through_a_new_version(workspace: Workspace) -> None:
    journey = await create(workspace, welcome())
    jid = journey["id"]
    async with workspace.client() as c:
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
        edited = welcome() | {"description": "changed"}
        refused = await c.put(f"/v1/journeys/{jid}", json=edited)
        draft = await c.post(f"/v1/journeys/{jid}/versions")
        second_draft = await c.post(f"/v1/journeys/{jid}/versions")
        updated = await c.put(f"/v1/journeys/{jid}", json=edited)
        published = await c.post(f"/v1/journeys/{jid}/publish", json={"in_flight": "migrate"})
        v1 = (await c.get(f"/v1/journeys/{jid}/versions/1")).json()
        v2 = (await c.get(f"/v1/journeys/{jid}/versions/2")).json()
        v1_again = await c.put(f"/v1/journeys/{jid}", json=welcome())
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert draft.status_code == 201
    assert draft.json()["version"] == 2
    assert draft.json()["status"] == "draft"
    assert second_draft.status_code == 409
    assert updated.status_code == 200
    assert published.json() == {"status": "live", "version": 2, "migrated": 0}
    assert v1.get("description", "") == ""
    assert v2["description"] == "changed"
    assert v2["live_version"] == 2
    assert v1_again.status_code == 409


async def test_publish_refuses_a_draft_template_and_names_the_step(workspace: Workspace) -> None:
    async with workspace.client() as c:
        body = await make_concrete(c, load("welcome"))
        template_id = body["stages"][0]["steps"][1]["template_id"]
        template = (await c.get(f"/v1/templates/{template_id}")).json()
        draft = {k: template[k] for k in ("name", "channel", "subject", "body")} | {
            "status": "draft"
        }
        assert (await c.put(f"/v1/templates/{template_id}", json=draft)).status_code == 200
        created = (await c.post("/v1/journeys", json=body)).json()
        refused = await c.post(f"/v1/journeys/{created['id']}/publish")
        still = (await c.get(f"/v1/journeys/{created['id']}")).json()
    assert refused.status_code == 422
    paths = [e["path"] for e in refused.json()["errors"]]
    assert paths == ["stages[0].steps[1].template_id"]
    assert still["status"] == "draft"


async def test_every_problem_is_reported_at_once_with_its_path(workspace: Workspace) -> None:
    bad = welcome()
    bad["stages"][0]["steps"] = [
        {"id": "w", "type": "wait", "duration": "soon"},
        {"id": "w", "type": "wait", "duration": "PT1H"},
    ]
    bad["stages"].append({"name": "Signed up", "steps": []})
    bad["colour"] = "blue"
    async with workspace.client() as c:
        r = await c.post("/v1/journeys", json=bad)
        v = await c.post("/v1/journeys/validate", json=welcome())
    assert r.status_code == 422
    body = r.json()
    assert body["status"] == 422
    paths = {e["path"] for e in body["errors"]}
    assert "colour" in paths
    assert "stages[0].steps[0].duration" in paths
    assert v.json() == {"valid": True}


async def test_lifecycle_transitions_and_deletion_rules(workspace: Workspace) -> None:
    jid = (await create(workspace, welcome()))["id"]
    async with workspace.client() as c:
        early_pause = await c.post(f"/v1/journeys/{jid}/pause")
        await c.post(f"/v1/journeys/{jid}/publish")
        live_delete = await c.delete(f"/v1/journeys/{jid}")
        paused = await c.post(f"/v1/journeys/{jid}/pause")
        paused_again = await c.post(f"/v1/journeys/{jid}/pause")
        resumed = await c.post(f"/v1/journeys/{jid}/resume")
        stopped = await c.post(f"/v1/journeys/{jid}/stop")
        republish = await c.post(f"/v1/journeys/{jid}/versions")
        deleted = await c.delete(f"/v1/journeys/{jid}")
        gone = await c.get(f"/v1/journeys/{jid}")
    assert early_pause.status_code == 409
    assert live_delete.status_code == 409
    assert paused.json() == {"status": "paused"}
    assert paused_again.status_code == 409
    assert resumed.json() == {"status": "live"}
    assert stopped.json() == {"status": "stopped"}
    assert republish.status_code == 409
    assert deleted.status_code == 204
    assert gone.status_code == 404


async def test_names_are_unique_per_folder(workspace: Workspace) -> None:
    async with workspace.client() as c:
        folder = (await c.post("/v1/folders", json={"name": "Retention"})).json()
        first = await c.post("/v1/journeys", json=welcome("Same"))
        clash = await c.post("/v1/journeys", json=welcome("Same"))
        elsewhere = await c.post("/v1/journeys", json=welcome("Same") | {"folder_id": folder["id"]})
        dup_folder = await c.post("/v1/folders", json={"name": "Retention"})
    assert first.status_code == 201
    assert clash.status_code == 409
    assert elsewhere.status_code == 201
    assert dup_folder.status_code == 409


async def test_list_filters_and_paginates(workspace: Workspace) -> None:
    ids = [(await create(workspace, welcome(f"J{i}")))["id"] for i in range(3)]
    async with workspace.client() as c:
        await c.post(f"/v1/journeys/{ids[1]}/publish")
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await c.get("/v1/journeys", params=params)).json()
            seen += [j["id"] for j in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        live = (await c.get("/v1/journeys", params={"status": "live"})).json()
        bad_cursor = await c.get("/v1/journeys", params={"cursor": "!!"})
        too_many = await c.get("/v1/journeys", params={"limit": 501})
    assert seen == ids
    assert [j["id"] for j in live["items"]] == [ids[1]]
    assert bad_cursor.status_code == 422
    assert too_many.status_code == 422


async def test_templates_validate_and_preview(workspace: Workspace) -> None:
    async with workspace.client() as c:
        broken = await c.post(
            "/v1/templates",
            json={"name": "b", "channel": "email", "subject": "Hi", "body": "{% for %}"},
        )
        created = await c.post(
            "/v1/templates",
            json={
                "name": "cart",
                "channel": "email",
                "subject": "Your cart, {{ profile.first_name }}",
                "body": "{% for i in event.properties['items'] %}{{ i.sku }};{% endfor %}"
                "{{ profile.nothing.here }}",
                "status": "ready",
            },
        )
        preview = await c.post(
            f"/v1/templates/{created.json()['id']}/preview",
            json={
                "profile": {"first_name": "Ada"},
                "event": {
                    "name": "cart_add",
                    "properties": {"items": [{"sku": "A"}, {"sku": "B"}]},
                },
            },
        )
    assert broken.status_code == 422
    assert broken.json()["errors"][0]["path"] == "body"
    assert created.status_code == 201
    assert preview.json() == {
        "subject": "Your cart, Ada",
        "body": "A;B;",
        "html": None,
        "title": None,
        "data": None,
    }


async def test_connector_secrets_are_never_returned(workspace: Workspace) -> None:
    config = {"host": "127.0.0.1", "port": 2525, "from": "a@b.c", "password": "hunter2",
              "username": "u"}  # fmt: skip
    async with workspace.client() as c:
        created = await c.post(
            "/v1/connectors", json={"name": "mail", "type": "smtp", "config": config}
        )
        bad = await c.post(
            "/v1/connectors",
            json={"name": "bad", "type": "smtp", "config": {"host": "h", "port": 0}},
        )
        cid = created.json()["id"]
        fetched = await c.get(f"/v1/connectors/{cid}")
        renamed = await c.put(
            f"/v1/connectors/{cid}",
            json={"name": "mail2", "type": "smtp", "config": {k: v for k, v in config.items()
                                                              if k != "password"}},
        )  # fmt: skip
        listed = await c.get("/v1/connectors")
    assert created.status_code == 201, created.text
    for answer in (created.text, fetched.text, renamed.text, listed.text):
        assert "hunter2" not in answer
    assert fetched.json()["config"]["password_set"] is True
    assert renamed.json()["config"]["password_set"] is True  # kept when left out
    assert bad.status_code == 422
    assert {"config.port", "config.from"} <= {e["path"] for e in bad.json()["errors"]}


async def test_workspace_settings_accept_a_partial_update(stack: Stack) -> None:
    workspace = await new_workspace(stack, require_event_triggers=True)  # settings untouched
    async with workspace.client() as c:
        defaults = (await c.get("/v1/workspace/settings")).json()
        changed = await c.put(
            "/v1/workspace/settings",
            json={
                "quiet_hours": {"start": "21:00", "end": "08:00"},
                "default_timezone": "Asia/Tokyo",
            },
        )
        partial = await c.put(
            "/v1/workspace/settings",
            json={"frequency_caps": [{"channel": "email", "max": 2, "per": "P1D"}]},
        )
        bad = await c.put("/v1/workspace/settings", json={"default_timezone": "Mars/Base"})
    assert defaults == {"frequency_caps": [], "quiet_hours": None, "consent_mode": "opt_out",
                        "default_timezone": "UTC", "require_event_triggers": True}  # fmt: skip
    assert changed.status_code == 200
    assert partial.json()["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert partial.json()["default_timezone"] == "Asia/Tokyo"
    assert partial.json()["frequency_caps"][0]["max"] == 2
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "default_timezone"


async def test_each_change_is_announced_exactly_once(
    workspace: Workspace, stack: Stack, nc: NATS
) -> None:
    jid = (await create(workspace, welcome()))["id"]
    js = nc.jetstream()
    sub = await js.pull_subscribe("journeys.changed", stream="JOURNEYS")
    async with workspace.client() as c:
        for action in ("publish", "pause", "resume", "stop"):
            assert (await c.post(f"/v1/journeys/{jid}/{action}")).status_code == 200
    changes: list[str] = []

    async def four_changes() -> bool:
        try:
            for msg in await sub.fetch(50, timeout=0.5):
                await msg.ack()
                payload = __import__("json").loads(msg.data)
                if payload["journey_id"] == jid:
                    changes.append(payload["change"])
        except TimeoutError:  # nats-py raises either its own subclass or the plain one
            pass
        return len(changes) >= 4

    await eventually(four_changes, "four journeys.changed messages")
    await eventually(lambda: _outbox_drained(stack), "the outbox to drain")
    await four_changes()
    await sub.unsubscribe()
    assert changes == ["published", "paused", "resumed", "stopped"]


async def _outbox_drained(stack: Stack) -> bool:
    dsn = db.asyncpg_dsn(stack.servers.database_url)
    conn = await asyncpg.connect(dsn)
    try:
        pending = await conn.fetchval(
            "SELECT count(*) FROM designer.outbox WHERE published_at IS NULL"
        )
    finally:
        await conn.close()
    return pending == 0


async def test_runtime_reads_every_published_version(workspace: Workspace, stack: Stack) -> None:
    jid = (await create(workspace, welcome()))["id"]
    async with workspace.client() as c:
        await c.post(f"/v1/journeys/{jid}/publish")
        await c.post(f"/v1/journeys/{jid}/versions")
        edited = copy.deepcopy(welcome())
        edited["description"] = "v2"
        await c.put(f"/v1/journeys/{jid}", json=edited)
        await c.post(f"/v1/journeys/{jid}/publish")
    import httpx

    async with httpx.AsyncClient(headers=service_headers()) as raw:
        items = (await raw.get(f"{stack.service_urls['designer']}/internal/journeys/live")).json()
    mine = [i for i in items["items"] if i["journey_id"] == jid]
    assert [(i["version"], i["live_version"], i["status"]) for i in mine] == [
        (1, 2, "live"), (2, 2, "live")
    ]  # fmt: skip
    assert mine[1]["body"]["description"] == "v2"


async def test_connector_test_sends_a_real_message(workspace: Workspace) -> None:
    from tests.sinks import run_mailbox

    for box in run_mailbox():
        config = {"host": "127.0.0.1", "port": box.port, "from": "shop@example.com"}
        async with workspace.client() as c:
            cid = (
                await c.post("/v1/connectors", json={"name": "m", "type": "smtp", "config": config})
            ).json()["id"]
            sent = await c.post(
                f"/v1/connectors/{cid}/test", json={"to": "ada@example.com", "subject": "Ping"}
            )
            down = config | {"port": 9}
            await c.put(f"/v1/connectors/{cid}", json={"name": "m", "type": "smtp", "config": down})
            failed = await c.post(f"/v1/connectors/{cid}/test", json={"to": "ada@example.com"})
        assert sent.status_code == 200, sent.text
        assert [m["Subject"] for m in box.messages] == ["Ping"]
        assert box.envelopes[0][1] == ["ada@example.com"]
        assert failed.status_code == 502
        assert failed.headers["content-type"] == "application/problem+json"
