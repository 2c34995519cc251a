"""Marking a template ready with a partial update, and deleting a template or connector:
refused (409, naming them) while a live or paused journey uses it, allowed once none does."""

from __future__ import annotations

import uuid

import httpx

from tests.integration.test_activator import connector, template
from tests.stack import Workspace


async def _journey(c: httpx.AsyncClient, connector_id: str, template_id: str) -> tuple[str, str]:
    name = f"Uses them {uuid.uuid4().hex[:6]}"
    body = {
        "name": name,
        "stages": [{
            "name": "Signed up",
            "entry": {"event": "signup"},
            "steps": [{"id": "hello", "type": "activation", "channel": "sms",
                       "connector_id": connector_id, "template_id": template_id,
                       "to_attribute": "phone"}],
        }],
    }  # fmt: skip
    created = await c.post("/v1/journeys", json=body)
    assert created.status_code == 201, created.text
    return created.json()["id"], name


async def test_patch_changes_only_the_fields_given_and_checks_the_whole(
    workspace: Workspace,
) -> None:
    async with workspace.client(await workspace.key("editor")) as c:
        created = await c.post("/v1/templates", json={
            "name": f"t-{uuid.uuid4().hex[:6]}", "channel": "email", "subject": "Hi",
            "body": "Hello {{ profile.first_name }}",
        })  # fmt: skip
        assert created.status_code == 201, created.text
        tid = created.json()["id"]
        assert created.json()["status"] == "draft"

        r = await c.patch(f"/v1/templates/{tid}", json={"status": "ready"})
        assert r.status_code == 200, r.text
        assert {k: r.json()[k] for k in ("status", "subject", "body")} == {
            "status": "ready", "subject": "Hi", "body": "Hello {{ profile.first_name }}",
        }  # fmt: skip
        assert (await c.get(f"/v1/templates/{tid}")).json()["status"] == "ready"

        # The result is checked as a whole: an email without a subject, a broken body.
        refused = (
            ({"subject": None}, "subject"), ({"body": "{{ oops"}, "body"),
            ({"status": "done"}, "status"), ({"colour": "red"}, "colour"),
        )  # fmt: skip
        for patch, path in refused:
            r = await c.patch(f"/v1/templates/{tid}", json=patch)
            assert r.status_code == 422, (patch, r.text)
            assert path in [e["path"] for e in r.json()["errors"]], r.text
        assert (await c.patch("/v1/templates/nope", json={"status": "ready"})).status_code == 404
    async with workspace.client(await workspace.key("viewer")) as c:
        assert (await c.patch(f"/v1/templates/{tid}", json={"status": "draft"})).status_code == 403


async def test_a_template_or_connector_in_use_is_not_deleted(workspace: Workspace) -> None:
    async with workspace.client() as c:
        cid = await connector(c, "sms_http", {"url": "http://127.0.0.1:9/sms"})
        tid = await template(c, "sms", "Hi")
        jid, name = await _journey(c, cid, tid)

        # A draft does not hold them; a live journey does, and so does a paused one.
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
        for path in (f"/v1/templates/{tid}", f"/v1/connectors/{cid}"):
            r = await c.delete(path)
            assert r.status_code == 409, r.text
            assert jid in r.json()["detail"]
            assert name in r.json()["detail"]
        assert (await c.post(f"/v1/journeys/{jid}/pause")).status_code == 200
        assert (await c.delete(f"/v1/templates/{tid}")).status_code == 409
        assert (await c.get(f"/v1/templates/{tid}")).status_code == 200

        assert (await c.post(f"/v1/journeys/{jid}/stop")).status_code == 200
        assert (await c.delete(f"/v1/templates/{tid}")).status_code == 204
        assert (await c.get(f"/v1/templates/{tid}")).status_code == 404
        assert (await c.delete(f"/v1/templates/{tid}")).status_code == 404
        assert (await c.delete(f"/v1/connectors/{cid}")).status_code == 204
        assert (await c.get(f"/v1/connectors/{cid}")).status_code == 404


async def test_deleting_a_connector_takes_an_admin(workspace: Workspace) -> None:
    async with workspace.client() as c:
        cid = await connector(c, "sms_http", {"url": "http://127.0.0.1:9/sms"})
    async with workspace.client(await workspace.key("editor")) as c:
        assert (await c.delete(f"/v1/connectors/{cid}")).status_code == 403
