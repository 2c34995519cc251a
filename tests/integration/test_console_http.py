"""The console as HTTP: its pages and assets with a strict Content-Security-Policy, no
inline code, no path outside its own files; ``GET /v1/me`` for every role."""

from __future__ import annotations

import re

import pytest

from gateway.console import load_assets
from tests.stack import Stack, Workspace


async def test_the_console_page_and_its_assets_carry_a_strict_policy(stack: Stack) -> None:
    async with stack.client(None) as c:
        page = await c.get("/console")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        referenced = re.findall(r'(?:src|href)="(/console/[^"]+)"', page.text)
        assert "/console/app.js" in referenced
        assert "/console/app.css" in referenced
        for response in [page, *[await c.get(path) for path in referenced]]:
            assert response.status_code == 200, response.url
            policy = response.headers["content-security-policy"]
            assert "default-src 'self'" in policy
            assert "script-src 'self'" in policy
            assert "style-src 'self'" in policy
            assert "frame-ancestors 'none'" in policy
            assert "unsafe" not in policy
            assert response.headers["x-content-type-options"] == "nosniff"
        js = await c.get("/console/app.js")
        assert js.headers["content-type"].startswith("text/javascript")
        slash = await c.get("/console/")
        assert slash.status_code == 308
        assert slash.headers["location"] == "/console"


def test_the_pages_hold_no_inline_code_and_never_parse_text_as_html() -> None:
    assets = load_assets()
    index = assets["index.html"][0].decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", index)
    assert "<style" not in index
    assert " style=" not in index
    assert not re.search(r"\son[a-z]+=", index)
    for name, (content, _media) in assets.items():
        if name.endswith(".js"):
            text = content.decode()
            assert "innerHTML" not in text, name
            assert "eval(" not in text, name
            assert "localStorage" not in text, name  # the key lives in sessionStorage only


@pytest.mark.parametrize(
    "path", ["/console/missing.js", "/console/..%2Fapp.py", "/console/index.html/x", "/console/%00"]
)
async def test_nothing_but_the_console_files_is_served(stack: Stack, path: str) -> None:
    async with stack.client(None) as c:
        r = await c.get(path)
    assert r.status_code in (400, 404, 422), r.text  # 400: an encoded separator
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("role", ["admin", "editor", "viewer", "ingest"])
async def test_me_tells_any_key_its_role_and_workspace(workspace: Workspace, role: str) -> None:
    key = workspace.admin_key if role == "admin" else await workspace.key(role)
    async with workspace.client(key) as c:
        r = await c.get("/v1/me")
        assert r.status_code == 200, r.text
        me = r.json()
        assert me["role"] == role
        assert me["workspace_id"] == workspace.id
        assert me["folder_ids"] == []
        assert me["clock"] == "real"
        assert key not in r.text
        assert (await c.post("/v1/me")).status_code == 405


async def test_me_names_the_folder_grants_and_needs_a_key(workspace: Workspace) -> None:
    async with workspace.client() as c:
        folder = (await c.post("/v1/folders", json={"name": "Grant"})).json()["id"]
    key = await workspace.key("viewer", [folder])
    async with workspace.client(key) as c:
        assert (await c.get("/v1/me")).json()["folder_ids"] == [folder]
    async with workspace.stack.client(None) as anonymous:
        assert (await anonymous.get("/v1/me")).status_code == 401
    async with workspace.stack.client("wp_not-a-key") as forged:
        assert (await forged.get("/v1/me")).status_code == 401


async def test_me_is_in_the_openapi_document(stack: Stack) -> None:
    async with stack.client(None) as c:
        doc = (await c.get("/openapi.json")).json()
    assert "get" in doc["paths"]["/v1/me"]
    assert "Me" in doc["components"]["schemas"]
