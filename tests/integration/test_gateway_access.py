"""Who may do what, enforced at the gateway and in the owning service: keys, roles,
folder subtrees, workspaces, revocation, rate and size limits, the test clock."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Servers
from tests.helpers import eventually
from tests.stack import Stack, Workspace, running_stack

JOURNEY = {
    "name": "J",
    "stages": [{"name": "S", "entry": {"event": "e"}, "steps": [{"id": "w", "type": "end"}]}],
}

# (method, path, body) of one call per endpoint family; {j} is a journey of the workspace.
FAMILIES: dict[str, tuple[str, str, Any]] = {
    "read journeys": ("GET", "/v1/journeys", None),
    "write journeys": ("POST", "/v1/journeys", JOURNEY | {"name": "from-matrix"}),
    "read templates": ("GET", "/v1/templates", None),
    "write templates": ("POST", "/v1/templates", {"name": "t", "channel": "sms", "body": "x"}),
    "read connectors": ("GET", "/v1/connectors", None),
    "write connectors": ("POST", "/v1/connectors", {"name": "c", "type": "sms_http",
                                                    "config": {"url": "http://127.0.0.1:9"}}),
    "api keys": ("GET", "/v1/api-keys", None),
    "read settings": ("GET", "/v1/workspace/settings", None),
    "write settings": ("PUT", "/v1/workspace/settings", {"consent_mode": "opt_in"}),
    "read folders": ("GET", "/v1/folders", None),
}  # fmt: skip
ALLOWED = {
    "admin": set(FAMILIES),
    "editor": {"read journeys", "write journeys", "read templates", "write templates",
               "read connectors", "read settings", "read folders"},
    "viewer": {"read journeys", "read templates", "read connectors", "read settings",
               "read folders"},
    "ingest": set(),
}  # fmt: skip


@pytest.mark.parametrize("role", sorted(ALLOWED))
async def test_each_role_reaches_exactly_its_endpoint_families(
    workspace: Workspace, role: str
) -> None:
    key = workspace.admin_key if role == "admin" else await workspace.key(role)
    outcomes = {}
    async with workspace.client(key) as c:
        for family, (method, path, body) in FAMILIES.items():
            r = await c.request(method, path, json=body)
            outcomes[family] = r.status_code
    allowed = {f for f, status in outcomes.items() if status != 403}
    assert allowed == ALLOWED[role], outcomes
    assert all(s < 500 for s in outcomes.values()), outcomes


async def test_keys_are_required_and_checked(workspace: Workspace, stack: Stack) -> None:
    async with stack.client(None) as anonymous, stack.client("wp_not-a-key") as forged:
        missing = await anonymous.get("/v1/journeys")
        wrong = await forged.get("/v1/journeys")
        basic = await anonymous.get("/v1/journeys", headers={"Authorization": "Basic eDp5"})
    for r in (missing, wrong, basic):
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"] == "Bearer"


async def test_a_revoked_key_stops_working(workspace: Workspace) -> None:
    key = await workspace.key("viewer")
    async with workspace.client() as admin, workspace.client(key) as viewer:
        assert (await viewer.get("/v1/journeys")).status_code == 200
        keys = (await admin.get("/v1/api-keys")).json()["items"]
        key_id = next(k["id"] for k in keys if k["role"] == "viewer")
        assert "key" not in keys[0]
        assert (await admin.delete(f"/v1/api-keys/{key_id}")).status_code == 204

        async def refused() -> bool:
            return (await viewer.get("/v1/journeys")).status_code == 401

        await eventually(refused, "the revoked key to be refused", within_s=5)


async def test_spoofed_identity_headers_are_ignored(workspace: Workspace) -> None:
    key = await workspace.key("ingest")
    spoof = {"X-Waypost-Role": "admin", "X-Waypost-Workspace": workspace.id}
    async with workspace.client(key) as c:
        r = await c.get("/v1/journeys", headers=spoof)
    assert r.status_code == 403


async def test_folder_grants_cover_the_subtree_only(workspace: Workspace) -> None:
    async with workspace.client() as admin:
        a = (await admin.post("/v1/folders", json={"name": "A"})).json()["id"]
        child = (await admin.post("/v1/folders", json={"name": "A1", "parent_id": a})).json()["id"]
        b = (await admin.post("/v1/folders", json={"name": "B"})).json()["id"]
        in_b = (await admin.post("/v1/journeys", json=JOURNEY | {"folder_id": b})).json()["id"]
    editor = await workspace.key("editor", [a])
    async with workspace.client(editor) as c:
        in_child = await c.post("/v1/journeys", json=JOURNEY | {"folder_id": child})
        in_other = await c.post("/v1/journeys", json=JOURNEY | {"folder_id": b, "name": "x"})
        at_root = await c.post("/v1/journeys", json=JOURNEY | {"name": "root"})
        read_b = await c.get(f"/v1/journeys/{in_b}")
        listed = (await c.get("/v1/journeys")).json()["items"]
        folders = {f["id"] for f in (await c.get("/v1/folders")).json()["items"]}
    assert in_child.status_code == 201, in_child.text
    assert in_other.status_code == 403
    assert at_root.status_code == 403
    assert read_b.status_code == 403  # the workspace's, outside the grants
    assert [j["id"] for j in listed] == [in_child.json()["id"]]
    assert folders == {a, child}


async def test_outside_the_folder_grants_is_403_and_only_other_workspaces_are_404(
    workspace: Workspace, stack: Stack
) -> None:
    from tests.stack import new_workspace

    async with workspace.client() as admin:
        f = (await admin.post("/v1/folders", json={"name": "F"})).json()["id"]
        g = (await admin.post("/v1/folders", json={"name": "G"})).json()["id"]
        ids = {}
        for name, folder in (("in F", f), ("in G", g), ("at root", None)):
            r = await admin.post("/v1/journeys", json=JOURNEY | {"name": name, "folder_id": folder})
            ids[name] = r.json()["id"]
            assert (await admin.post(f"/v1/journeys/{ids[name]}/publish")).status_code == 200
        template = await admin.post("/v1/templates", json={"name": "t", "channel": "sms",
                                                           "body": "x"})  # fmt: skip
    other = await new_workspace(stack)
    async with other.client() as c:
        foreign = (await c.post("/v1/journeys", json=JOURNEY)).json()["id"]
    viewer, editor = await workspace.key("viewer", [f]), await workspace.key("editor", [f])
    jf, jg, jr = ids["in F"], ids["in G"], ids["at root"]
    reads = {
        "journey": f"/v1/journeys/{jg}", "version": f"/v1/journeys/{jg}/versions/1",
        "analytics": f"/v1/journeys/{jg}/analytics", "root journey": f"/v1/journeys/{jr}",
        "listed folder": f"/v1/journeys?folder_id={g}",
    }  # fmt: skip
    writes = {
        "edit": ("PUT", f"/v1/journeys/{jg}", JOURNEY),
        "publish": ("POST", f"/v1/journeys/{jg}/publish", None),
        "new version": ("POST", f"/v1/journeys/{jg}/versions", None),
        "pause": ("POST", f"/v1/journeys/{jg}/pause", None),
        "delete": ("DELETE", f"/v1/journeys/{jg}", None),
        "members": ("GET", f"/v1/journeys/{jg}/profiles", None),
        "subfolder": ("POST", "/v1/folders", {"name": "sub", "parent_id": g}),
    }  # fmt: skip
    async with workspace.client(viewer) as v, workspace.client(editor) as e:
        read = {name: (await v.get(path)).status_code for name, path in reads.items()}
        wrote = {
            name: (await e.request(method, path, json=body)).status_code
            for name, (method, path, body) in writes.items()
        }
        mine = (f"/v1/journeys/{jf}", f"/v1/journeys/{jf}/analytics", f"/v1/journeys?folder_id={f}")
        own = [(await v.get(p)).status_code for p in mine]
        absent = [(await v.get(p)).status_code for p in
                  (f"/v1/journeys/{foreign}", f"/v1/journeys/{foreign}/analytics",
                   "/v1/journeys/nope", "/v1/journeys/nope/analytics")]  # fmt: skip
        shared = await v.get(f"/v1/templates/{template.json()['id']}")
        problem = await v.get(f"/v1/journeys/{jg}")
    assert read == dict.fromkeys(reads, 403), read
    assert wrote == dict.fromkeys(writes, 403), wrote
    assert own == [200, 200, 200]
    assert absent == [404, 404, 404, 404]
    assert shared.status_code == 200  # templates belong to the workspace, not to a folder
    assert problem.headers["content-type"] == "application/problem+json"


async def test_nothing_is_visible_across_workspaces(stack: Stack) -> None:
    from tests.stack import new_workspace

    one, two = await new_workspace(stack), await new_workspace(stack)
    async with one.client() as c:
        jid = (await c.post("/v1/journeys", json=JOURNEY)).json()["id"]
        tid = await c.post("/v1/templates", json={"name": "t", "channel": "sms", "body": "x"})
    async with two.client() as other:
        journey = await other.get(f"/v1/journeys/{jid}")
        publish = await other.post(f"/v1/journeys/{jid}/publish")
        template = await other.get(f"/v1/templates/{tid.json()['id']}")
        listed = (await other.get("/v1/journeys")).json()["items"]
        workspace = await other.post("/v1/workspaces", json={"name": "mine"})
        foreign_key = await other.post(
            "/v1/api-keys", json={"name": "k", "role": "admin", "workspace_id": one.id}
        )
    assert journey.status_code == 404
    assert publish.status_code == 404
    assert template.status_code == 404
    assert listed == []
    assert workspace.status_code == 403  # only the bootstrap workspace's admins
    assert foreign_key.status_code == 404


async def test_bad_input_gets_a_problem_never_a_500(workspace: Workspace) -> None:
    async with workspace.client() as c:
        malformed = await c.post(
            "/v1/journeys", content=b"{not json", headers={"content-type": "application/json"}
        )
        wrong_type = await c.post("/v1/folders", json={"name": 7})
        unknown = await c.post("/v1/folders", json={"name": "x", "colour": "red"})
        huge = await c.post("/v1/journeys", content=b"[" + b"1," * 700_000 + b"1]")
        nul = await c.post("/v1/folders", json={"name": "a\u0000b"})
        nul_path = await c.get("/v1/journeys/a%00b")
        control = await c.get("/v1/journeys/%F4%8C%BE%A8%C2%90%17/profiles")
        nowhere = await c.get("/v1/nowhere")
        method = await c.delete("/v1/folders")
    assert malformed.status_code == 422
    assert wrong_type.status_code == 422
    assert wrong_type.json()["errors"][0]["path"] == "name"
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["path"] == "colour"
    assert huge.status_code == 413
    assert nul.status_code == 422
    assert nul_path.status_code == 422
    assert control.status_code == 404
    assert nowhere.status_code == 404
    assert method.status_code == 405
    for r in (malformed, wrong_type, unknown, huge, nul, nul_path, nowhere, method):
        assert r.headers["content-type"] == "application/problem+json"


async def test_request_id_is_echoed_through_the_services(workspace: Workspace) -> None:
    async with workspace.client() as c:
        r = await c.get("/v1/journeys", headers={"X-Request-ID": "trace-me-123"})
        fresh = await c.get("/v1/journeys")
    assert r.headers.get_list("x-request-id") == ["trace-me-123"]
    assert len(fresh.headers["x-request-id"]) == 32


async def test_a_key_over_its_rate_gets_429_with_retry_after(servers: Servers) -> None:
    async with running_stack(servers, rate_limit_per_s=0.5, rate_limit_burst=2) as limited:
        from tests.stack import new_workspace

        ws = await new_workspace(limited, require_event_triggers=True)  # no settings call
        viewer = await ws.key("viewer")
        async with ws.client(viewer) as c:
            statuses = [(await c.get("/v1/folders")).status_code for _ in range(3)]
            refused = await c.get("/v1/folders")
        async with ws.client() as admin:  # another key keeps its own budget
            other = await admin.get("/v1/folders")
    assert statuses[:2] == [200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert other.status_code == 200


async def test_test_clock_is_absent_on_a_real_clock(workspace: Workspace) -> None:
    async with workspace.client() as c:
        r = await c.get("/v1/admin/clock")
    assert r.status_code == 404


async def test_virtual_clock_moves_for_admins_only(servers: Servers) -> None:
    from shared.settings import ClockMode
    from tests.stack import new_workspace

    async with running_stack(servers, clock=ClockMode.VIRTUAL) as virtual:
        ws = await new_workspace(virtual)
        viewer = await ws.key("viewer")
        async with ws.client() as admin, ws.client(viewer) as v:
            before = (await admin.get("/v1/admin/clock")).json()["now"]
            moved = (await admin.post("/v1/admin/clock", json={"advance": "PT1H"})).json()["now"]
            refused = await v.post("/v1/admin/clock", json={"advance": "PT1H"})
            bad = await admin.post("/v1/admin/clock", json={"advance": "PT1H", "set": before})
    from datetime import datetime, timedelta

    assert datetime.fromisoformat(moved) - datetime.fromisoformat(before) == timedelta(hours=1)
    assert refused.status_code == 403
    assert bad.status_code == 422


async def test_openapi_document_covers_the_public_api(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as c:
        doc = (await c.get("/openapi.json")).json()
        docs = await c.get("/docs")
    paths = set(doc["paths"])
    assert {"/v1/journeys", "/v1/journeys/{journey_id}/publish", "/v1/templates",
            "/v1/connectors", "/v1/api-keys", "/v1/admin/clock"} <= paths  # fmt: skip
    assert not any(p.startswith("/internal") for p in paths)
    assert "JourneyBody" in doc["components"]["schemas"]
    assert docs.status_code == 200
