"""Who may do what, attacked from outside and from inside: paths sent as-is past the route
table, services called directly with a weaker role or without the service token, the
bootstrap workspace's powers, folder grants on profiles and jumps, and what the gateway's
operational routes tell an anonymous caller."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.routes import match
from services.activator.app import create_app as create_activator
from services.designer.app import create_app as create_designer
from services.runtime.app import create_app as create_runtime
from shared.identity import ADMIN, READ, WRITE, Identity, Role
from tests.helpers import eventually
from tests.stack import SERVICE_TOKEN, Stack, Workspace, service_headers
from tests.unit.test_service_roles import _checked_roles, _public_routes

JOURNEY = {
    "name": "J",
    "stages": [{"name": "S", "entry": {"event": "e"}, "steps": [{"id": "w", "type": "end"}]}],
}


async def raw_request(
    base_url: str, method: str, target: str, headers: dict[str, str], body: Any = None
) -> tuple[int, dict[str, Any] | None]:
    """One HTTP/1.0 request with the target exactly as given (httpx would normalise it)."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    payload = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {target} HTTP/1.0", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, content = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        content = _dechunk(content)
    try:
        return status, json.loads(content) if content else None
    except ValueError:
        return status, None


def _dechunk(content: bytes) -> bytes:
    body = b""
    while content:
        size, _, rest = content.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            break
        body += rest[:length]
        content = rest[length + 2 :]
    return body


# Each target names an admin-only resource once the hops normalise it.
SMUGGLED = [
    ("POST", "/v1/journeys/x/../../api-keys", {"name": "stolen", "role": "admin"}),
    ("POST", "/v1/journeys/x/%2e%2e/%2E%2E/api-keys", {"name": "stolen", "role": "admin"}),
    ("POST", "/v1/journeys/x/..%2f..%2fapi-keys", {"name": "stolen", "role": "admin"}),
    ("POST", "/v1/journeys/x/%252e%252e/%252e%252e/api-keys", {"name": "stolen", "role": "admin"}),
    ("POST", "/v1/journeys/x/..\\..\\api-keys", {"name": "stolen", "role": "admin"}),
    ("POST", "/v1//api-keys", {"name": "stolen", "role": "admin"}),
    ("POST", "/v1/journeys/x/../../connectors",
     {"name": "c", "type": "sms_http", "config": {"url": "http://127.0.0.1:9"}}),
    ("POST", "/v1/journeys/x/../../webhooks/sources",
     {"name": "s", "secret": "s" * 32, "mapping": {}}),
    ("PUT", "/v1/journeys/x/../../workspace/settings", {"consent_mode": "opt_out"}),
    ("PUT", "/v1/journeys/./x/../../workspace/settings", {"consent_mode": "opt_out"}),
    ("POST", "/hooks/x/../../v1/api-keys", {"name": "stolen", "role": "admin"}),
    ("POST", "/t/o/../../v1/api-keys", {"name": "stolen", "role": "admin"}),
    ("POST", "/segment/v1/../../v1/api-keys", {"name": "stolen", "role": "admin"}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "target", "body"), SMUGGLED, ids=[t for _, t, _ in SMUGGLED])
async def test_a_folder_limited_editor_cannot_walk_past_the_route_table(
    workspace: Workspace, stack: Stack, method: str, target: str, body: Any
) -> None:
    async with workspace.client() as admin:
        folder = (await admin.post("/v1/folders", json={"name": "F"})).json()["id"]
        before = (await admin.get("/v1/api-keys")).json()["items"]
        settings = (await admin.get("/v1/workspace/settings")).json()
    editor = await workspace.key("editor", [folder])
    status, problem = await raw_request(
        stack.url, method, target, {"Authorization": f"Bearer {editor}"}, body
    )
    assert status == 400, problem
    assert problem is not None
    assert problem["status"] == 400
    async with workspace.client() as admin:
        after = (await admin.get("/v1/api-keys")).json()["items"]
        assert len(after) == len(before) + 1  # the editor's own key only
        assert (await admin.get("/v1/connectors")).json()["items"] == []
        assert (await admin.get("/v1/webhooks/sources")).json()["items"] == []
        assert (await admin.get("/v1/workspace/settings")).json() == settings


async def test_ordinary_escapes_still_reach_the_service(workspace: Workspace, stack: Stack) -> None:
    status, problem = await raw_request(
        stack.url,
        "GET",
        "/v1/journeys/no%20such",
        {"Authorization": f"Bearer {workspace.admin_key}"},
    )
    assert status == 404, problem
    assert problem is not None
    assert "no such" in problem["detail"]


# --- every service checks the role itself --------------------------------------------------

WEAKER = {ADMIN: Role.EDITOR, WRITE: Role.VIEWER, READ: Role.INGEST}


def _direct_calls() -> list[Any]:
    calls = []
    for service, app in {
        "designer": create_designer(), "runtime": create_runtime(), "activator": create_activator(),
    }.items():  # fmt: skip
        for method, path, route in _public_routes(app):
            (roles,) = _checked_roles(route.dependant)
            concrete = re.sub(r"\{[^}]+\}", "x1", path)
            calls.append(
                pytest.param(service, method, concrete, WEAKER[roles], id=f"{method} {path}")
            )
    return calls


@pytest.mark.parametrize(("service", "method", "path", "role"), _direct_calls())
async def test_a_service_called_directly_refuses_a_weaker_role(
    workspace: Workspace, stack: Stack, service: str, method: str, path: str, role: Role
) -> None:
    """As if the gateway's check were missing: the owning service says 403 on its own."""
    assert role not in match(method, path).roles  # type: ignore[union-attr]
    caller = Identity("k-direct", workspace.id, role)
    async with httpx.AsyncClient(base_url=stack.service_urls[service]) as c:
        r = await c.request(method, path, headers=service_headers(caller), json={})
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"


async def test_bootstrap_powers_need_the_admin_role(stack: Stack) -> None:
    designer = stack.service_urls["designer"]
    async with stack.client(stack.bootstrap_key) as admin:
        me = (await admin.get("/v1/me")).json()
        editor_key = (
            await admin.post("/v1/api-keys", json={"name": "boot-editor", "role": "editor"})
        ).json()["key"]
        other = (await admin.post("/v1/workspaces", json={"name": "other"})).json()["id"]
    async with stack.client(editor_key) as editor:
        through_gateway = await editor.post("/v1/workspaces", json={"name": "mine"})
        foreign_key = await editor.post(
            "/v1/api-keys", json={"name": "x", "role": "admin", "workspace_id": other}
        )
    assert through_gateway.status_code == 403
    assert foreign_key.status_code == 403
    # The designer itself, given the bootstrap flag with an editor's role.
    caller = Identity("k-boot-editor", me["workspace_id"], Role.EDITOR, bootstrap=True)
    async with httpx.AsyncClient(base_url=designer, headers=service_headers(caller)) as c:
        workspace = await c.post("/v1/workspaces", json={"name": "mine"})
        key = await c.post(
            "/v1/api-keys", json={"name": "x", "role": "admin", "workspace_id": other}
        )
    assert workspace.status_code == 403, workspace.text
    assert key.status_code == 403, key.text


# --- internal routes need the service token -------------------------------------------------

INTERNAL = [
    ("designer", "GET", "/internal/journeys/live"),
    ("designer", "GET", "/internal/auth/" + "0" * 64),
    ("designer", "GET", "/internal/workspaces/{ws}/connectors/{connector}"),
    ("designer", "GET", "/internal/webhooks/sources/x"),
    ("runtime", "POST", "/internal/journeys/x/migrate"),
    ("runtime", "POST", "/internal/journeys/x/migration-plan"),
    ("scheduler", "GET", "/internal/timers/stats"),
    ("activator", "POST", "/internal/connectors/test"),
    ("activator", "GET", "/internal/workspaces/{ws}/journeys/x/activations"),
]


@pytest.mark.parametrize(("service", "method", "path"), INTERNAL, ids=[p for *_, p in INTERNAL])
@pytest.mark.parametrize("token", [None, "wrong-token", SERVICE_TOKEN[:-1]])
async def test_internal_routes_refuse_a_caller_without_the_service_token(
    workspace: Workspace, stack: Stack, service: str, method: str, path: str, token: str | None
) -> None:
    async with workspace.client() as admin:
        connector = await admin.post(
            "/v1/connectors",
            json={"name": "c", "type": "smtp", "config": {"host": "127.0.0.1", "port": 25,
                  "from": "o@example.com", "password": "hunter2-secret"}},
        )  # fmt: skip
    assert connector.status_code == 201, connector.text
    target = path.format(ws=workspace.id, connector=connector.json()["id"])
    headers = {} if token is None else {"X-Waypost-Service-Token": token}
    async with httpx.AsyncClient(base_url=stack.service_urls[service]) as c:
        r = await c.request(method, target, headers=headers, json={})
    assert r.status_code == 401, r.text
    assert "hunter2" not in r.text
    if "connectors" in path and service == "designer":  # with the token: the secret it guards
        async with httpx.AsyncClient(base_url=stack.service_urls[service]) as c:
            r = await c.get(target, headers=service_headers())
        assert r.json()["config"]["password"] == "hunter2-secret"


@pytest.mark.parametrize("service", ["designer", "runtime", "activator"])
async def test_identity_headers_without_the_token_are_refused(
    workspace: Workspace, stack: Stack, service: str
) -> None:
    path = {"designer": "/v1/journeys", "runtime": "/v1/profiles/p1", "activator": "/v1/deliveries"}
    spoof = Identity("k-spoof", workspace.id, Role.ADMIN).headers()
    async with httpx.AsyncClient(base_url=stack.service_urls[service]) as c:
        r = await c.get(path[service], headers=spoof)
        health = await c.get("/healthz")
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert health.status_code == 200  # operational routes stay open on the private binding


async def test_a_client_cannot_send_the_token_through_the_gateway(workspace: Workspace) -> None:
    """The gateway drops every x-waypost-* header a client sends, the token included: a
    viewer's claim to be a service does not make it one."""
    viewer = await workspace.key("viewer")
    async with workspace.client(viewer) as c:
        r = await c.post(
            "/v1/journeys", json=JOURNEY,
            headers={"X-Waypost-Service-Token": SERVICE_TOKEN, "X-Waypost-Role": "admin"},
        )  # fmt: skip
    assert r.status_code == 403


# --- folder grants: a profile's journeys and jumps ------------------------------------------


async def _folders_and_journeys(workspace: Workspace) -> tuple[str, str, str, str]:
    """Folders A and B, and a live journey in each entered by the event ``e``."""
    async with workspace.client() as admin:
        a = (await admin.post("/v1/folders", json={"name": "A"})).json()["id"]
        b = (await admin.post("/v1/folders", json={"name": "B"})).json()["id"]
        ja = (await admin.post("/v1/journeys", json=JOURNEY | {"folder_id": a})).json()["id"]
        jb = (await admin.post("/v1/journeys", json=JOURNEY | {"folder_id": b})).json()["id"]
        for jid in (ja, jb):
            assert (await admin.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    return a, b, ja, jb


async def test_a_folder_limited_key_reads_a_profile_only_through_its_journeys(
    workspace: Workspace,
) -> None:
    a, _b, ja, jb = await _folders_and_journeys(workspace)
    async with workspace.client() as admin:
        r = await admin.post("/v1/events", json={"profile_id": "ada", "name": "e"})
        assert r.status_code == 202, r.text

        async def in_both() -> dict[str, Any] | None:
            r = await admin.get("/v1/profiles/ada")
            if r.status_code != 200:
                return None
            body: dict[str, Any] = r.json()
            return body if {j["journey_id"] for j in body["journeys"]} == {ja, jb} else None

        await eventually(in_both, "the profile in both journeys")
        whole = (await admin.get("/v1/profiles/ada/timeline")).json()["items"]
        explained = (await admin.get("/v1/profiles/ada/explain")).json()["items"]
    assert {e["journey_id"] for e in whole} == {ja, jb}
    assert {e["journey_id"] for e in explained} == {ja, jb}

    viewer = await workspace.key("viewer", [a])
    async with workspace.client(viewer) as c:
        profile = await c.get("/v1/profiles/ada")
        timeline = await c.get("/v1/profiles/ada/timeline")
        explain = await c.get("/v1/profiles/ada/explain")
        explain_b = await c.get("/v1/profiles/ada/explain", params={"journey_id": jb})
    assert profile.status_code == 200, profile.text
    assert [j["journey_id"] for j in profile.json()["journeys"]] == [ja]
    assert "attributes" in profile.json()  # the workspace's profile itself stays readable
    assert timeline.json()["items"]
    assert {e["journey_id"] for e in timeline.json()["items"]} == {ja}
    assert {e["journey_id"] for e in explain.json()["items"]} == {ja}
    assert explain_b.status_code == 403


def _jumping(folder: str, target: str) -> dict[str, Any]:
    return {
        "name": f"jumper-{target[:6]}",
        "folder_id": folder,
        "stages": [{"name": "S", "entry": {"event": "e"},
                    "steps": [{"id": "go", "type": "jump", "journey_id": target, "stage": "S"}]}],
    }  # fmt: skip


async def test_a_folder_limited_editor_cannot_jump_outside_its_folders(
    workspace: Workspace,
) -> None:
    a, _b, ja, jb = await _folders_and_journeys(workspace)
    editor = await workspace.key("editor", [a])
    async with workspace.client(editor) as c:
        inside = await c.post("/v1/journeys", json=_jumping(a, ja))
        outside = await c.post("/v1/journeys", json=_jumping(a, jb))
        validated = await c.post("/v1/journeys/validate", json=_jumping(a, jb))
    assert inside.status_code == 201, inside.text
    for refused in (outside, validated):
        assert refused.status_code == 422, refused.text
        assert [e["path"] for e in refused.json()["errors"]] == ["stages[0].steps[0].journey_id"]
    # A draft an admin wrote into the editor's folder: the editor still cannot publish it.
    async with workspace.client() as admin:
        draft = (await admin.post("/v1/journeys", json=_jumping(a, jb))).json()["id"]
    async with workspace.client(editor) as c:
        published = await c.post(f"/v1/journeys/{draft}/publish")
    assert published.status_code == 422, published.text
    assert published.json()["errors"][0]["path"] == "stages[0].steps[0].journey_id"
    async with workspace.client() as admin:
        assert (await admin.post(f"/v1/journeys/{draft}/publish")).status_code == 200


# --- the gateway's operational routes -------------------------------------------------------


async def test_the_gateways_readiness_detail_and_metrics_are_for_operators(
    workspace: Workspace, stack: Stack
) -> None:
    editor = await workspace.key("editor")
    async with httpx.AsyncClient(base_url=stack.url) as c:
        health = await c.get("/healthz")
        bare = await c.get("/readyz")
        anonymous = await c.get("/metrics")
        forged = await c.get("/metrics", headers={"Authorization": "Bearer wp_forged"})
        not_admin = await c.get("/metrics", headers={"Authorization": f"Bearer {editor}"})
        wrong_token = await c.get("/metrics", headers={"X-Waypost-Service-Token": "guess"})
        admin = {"Authorization": f"Bearer {workspace.admin_key}"}
        by_admin = await c.get("/metrics", headers=admin)
        by_token = await c.get("/metrics", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
        detail = await c.get("/readyz", headers=service_headers())
        admin_detail = await c.get("/readyz", headers=admin)
        editor_detail = await c.get("/readyz", headers={"Authorization": f"Bearer {editor}"})
    assert health.status_code == 200
    assert bare.status_code == 200
    assert bare.json() == {"status": "ready"}
    assert editor_detail.json() == {"status": "ready"}
    for refused, status in ((anonymous, 401), (forged, 401), (not_admin, 403), (wrong_token, 401)):
        assert refused.status_code == status, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "waypost_" not in refused.text
    for allowed in (by_admin, by_token):
        assert allowed.status_code == 200
        assert "waypost_http_requests_total" in allowed.text
    for shown in (detail, admin_detail):
        assert shown.json()["checks"]["services"]["ok"] is True


async def test_refused_paths_and_tokens_are_counted(workspace: Workspace, stack: Stack) -> None:
    await raw_request(stack.url, "GET", "/v1/journeys/x/../../api-keys", {})
    viewer = Identity("k-viewer", workspace.id, Role.VIEWER)
    async with httpx.AsyncClient(base_url=stack.service_urls["designer"]) as c:
        await c.get("/internal/journeys/live")
        await c.post("/v1/connectors", headers=service_headers(viewer), json={})
        designer_metrics = (await c.get("/metrics")).text
    async with httpx.AsyncClient(base_url=stack.url, headers=service_headers()) as c:
        gateway_metrics = (await c.get("/metrics")).text
    assert 'waypost_gateway_refused_paths_total{kind="dot_segment"}' in gateway_metrics
    assert 'waypost_service_token_refused_total{reason="missing"}' in designer_metrics
    assert 'waypost_service_role_refused_total{role="viewer"}' in designer_metrics
