"""Gateway app factory: operational routes, the readiness of every service, the /v1 proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from gateway.proxy import forward
from gateway.routes import owner
from gateway.settings import GatewaySettings
from shared.app import ServiceState, create_service_app, get_state
from shared.problems import ProblemError

HTTP_CLIENT = "http"
PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _client(state: ServiceState) -> httpx.AsyncClient:
    client: httpx.AsyncClient = state.extras[HTTP_CLIENT]
    return client


def _settings(state: ServiceState) -> GatewaySettings:
    assert isinstance(state.settings, GatewaySettings)
    return state.settings


@asynccontextmanager
async def _http_client(state: ServiceState) -> AsyncIterator[None]:
    settings = _settings(state)
    limits = httpx.Limits(
        max_connections=settings.upstream_connections,
        max_keepalive_connections=settings.upstream_connections,
    )
    timeout = httpx.Timeout(settings.upstream_timeout_s, connect=2.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        state.extras[HTTP_CLIENT] = client
        yield


async def _services_ready(state: ServiceState) -> tuple[bool, str]:
    urls = _settings(state).service_urls()

    async def probe(name: str, url: str) -> str | None:
        try:
            r = await _client(state).get(f"{url}/readyz", timeout=2.0)
        except httpx.HTTPError as exc:
            return f"{name}: {type(exc).__name__}"
        return None if r.status_code == 200 else f"{name}: {r.status_code}"

    down = [d for d in await asyncio.gather(*(probe(n, u) for n, u in urls.items())) if d]
    return (not down), ("ok" if not down else "down: " + ", ".join(down))


proxy_router = APIRouter()


@proxy_router.api_route("/v1/{path:path}", methods=PROXY_METHODS, include_in_schema=False)
async def proxy(request: Request) -> Response:
    service = owner(request.url.path)
    if service is None:
        raise ProblemError(404, "Not found", f"no resource at {request.url.path}")
    state = get_state(request)
    base = _settings(state).service_urls()[service]
    return await forward(_client(state), base, service, request)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    return create_service_app(
        settings,
        title="Waypost",
        routers=[proxy_router],
        extend=_http_client,
        readiness={"services": _services_ready},
    )
