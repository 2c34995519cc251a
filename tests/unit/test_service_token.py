"""The service token: made once per data dir by ``waypost up`` and given to every child;
a service refuses its private routes without it, and with no token configured at all."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shared.app import ServiceTokenMiddleware
from shared.settings import SERVICE_TOKEN_HEADER, ClockMode, ServiceSettings
from waypost.cli import child_specs


def test_up_gives_every_child_one_token_kept_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("WAYPOST_SERVICE_TOKEN", raising=False)
    specs = child_specs(tmp_path, 8080, ClockMode.REAL, "postgresql+asyncpg://x/y", "nats://n")
    tokens = {s.env["WAYPOST_SERVICE_TOKEN"] for s in specs}
    assert len(tokens) == 1
    (token,) = tokens
    assert len(token) >= 32
    kept = tmp_path / "service.token"
    assert kept.read_text() == token
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    again = child_specs(tmp_path, 8080, ClockMode.REAL, "postgresql+asyncpg://x/y", "nats://n")
    assert {s.env["WAYPOST_SERVICE_TOKEN"] for s in again} == {token}
    assert {s.env.get("WAYPOST_HOST", "127.0.0.1") for s in specs} == {"127.0.0.1"}


def test_services_listen_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAYPOST_HOST", raising=False)
    monkeypatch.delenv("WAYPOST_SERVICE_TOKEN", raising=False)
    settings = ServiceSettings()
    assert settings.host == "127.0.0.1"
    assert settings.service_token is None
    assert settings.service_headers() == {}


def _client(token: str | None) -> httpx.AsyncClient:
    async def ok(_request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route(p, ok) for p in ("/internal/x", "/v1/x", "/healthz")])
    app.add_middleware(ServiceTokenMiddleware, settings=ServiceSettings(service_token=token))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://service")


@pytest.mark.parametrize(
    ("token", "path", "headers", "status"),
    [
        ("s3cret", "/internal/x", {}, 401),
        ("s3cret", "/internal/x", {SERVICE_TOKEN_HEADER: "s3cre"}, 401),
        ("s3cret", "/internal/x", {SERVICE_TOKEN_HEADER: "s3cret"}, 200),
        ("s3cret", "/v1/x", {}, 401),
        ("s3cret", "/healthz", {}, 200),
        ("s3cret", "/healthz", {"x-waypost-role": "admin"}, 401),  # identity headers: token
        (None, "/internal/x", {SERVICE_TOKEN_HEADER: ""}, 401),  # none configured: refuse all
        (None, "/healthz", {}, 200),
    ],
)
async def test_private_routes_and_identity_headers_need_the_token(
    token: str | None, path: str, headers: dict[str, str], status: int
) -> None:
    async with _client(token) as client:
        r = await client.get(path, headers=headers)
    assert r.status_code == status, r.text
    if status == 401:
        assert r.headers["content-type"] == "application/problem+json"
