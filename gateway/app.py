"""Gateway app factory: authentication, the route table, rate limits, the /v1 proxy."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.middleware import Middleware
from starlette.responses import Response

from gateway import console, docs, erasure, guards, hooks, ingest, segment, tracking
from gateway.auth import Authenticator, DesignerUnavailable
from gateway.guards import InputGuardMiddleware
from gateway.openapi import merged_openapi
from gateway.proxy import forward
from gateway.ratelimit import OPEN_LIMITS, OpenLimits, RateLimiter, retry_after_header
from gateway.routes import MethodNotAllowed, Route, match
from gateway.settings import GatewaySettings
from shared.app import ServiceState, create_service_app, get_state
from shared.clock import VirtualClock
from shared.durations import Duration, to_timedelta
from shared.identity import INGEST, Identity, Role
from shared.problems import FieldError, ProblemError, invalid
from shared.settings import SERVICE_TOKEN_HEADER

HTTP_CLIENT = "http"
AUTH = "auth"
LIMITER = "limiter"
PROXY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def _client(state: ServiceState) -> httpx.AsyncClient:
    client: httpx.AsyncClient = state.extras[HTTP_CLIENT]
    return client


def _settings(state: ServiceState) -> GatewaySettings:
    assert isinstance(state.settings, GatewaySettings)
    return state.settings


@asynccontextmanager
async def _clients(state: ServiceState) -> AsyncIterator[None]:
    settings = _settings(state)
    limits = httpx.Limits(
        max_connections=settings.upstream_connections,
        max_keepalive_connections=settings.upstream_connections,
    )
    timeout = httpx.Timeout(settings.upstream_timeout_s, connect=2.0)
    # Every call this client makes goes to a service: each bears the service token.
    headers = settings.service_headers()
    async with httpx.AsyncClient(limits=limits, timeout=timeout, headers=headers) as client:
        state.extras[HTTP_CLIENT] = client
        state.extras[guards.METRICS] = guards.EdgeMetrics(state.registry)
        state.extras[AUTH] = Authenticator(client, settings.designer_url, settings.auth_cache_s)
        state.extras[LIMITER] = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        state.extras[OPEN_LIMITS] = _open_limits(state, settings)
        state.extras[hooks.SOURCES] = hooks.SourceCache(
            client, settings.designer_url, settings.auth_cache_s
        )
        yield


def _open_limits(state: ServiceState, settings: GatewaySettings) -> OpenLimits:
    return OpenLimits(
        state.registry,
        settings.trusted_proxies,
        per_address=RateLimiter(settings.open_rate_limit_per_s, settings.open_rate_limit_burst),
        per_token=RateLimiter(
            settings.tracking_rate_limit_per_s, settings.tracking_rate_limit_burst
        ),
        per_source=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        failures=RateLimiter(settings.auth_failure_rate_per_s, settings.auth_failure_burst),
    )


@asynccontextmanager
async def _extensions(state: ServiceState) -> AsyncIterator[None]:
    async with _clients(state), ingest.running_ingest(state), erasure.running(state):
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


def _route(request: Request) -> Route:
    # The decoded path itself: the URL built from it would cut it at a decoded "?" or "#".
    path: str = request.scope["path"]
    try:
        route = match(request.method, path)
    except MethodNotAllowed as exc:
        raise ProblemError(
            405, "Method not allowed", f"{request.method} is not allowed here",
            headers={"Allow": ", ".join(sorted(exc.allowed))},
        ) from None  # fmt: skip
    if route is None:
        raise ProblemError(404, "Not found", f"no resource at {path}")
    return route


async def _identify(request: Request, state: ServiceState) -> Identity:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ProblemError(
            401, "Unauthorized", "send 'Authorization: Bearer <api key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    return await _known(state, key.strip(), "Bearer", request)


async def _known(state: ServiceState, key: str, scheme: str, request: Request) -> Identity:
    """The key's identity. A client with too many failed keys gets 429 before this one is
    looked up; an unknown key counts as a failure."""
    limits: OpenLimits = state.extras[OPEN_LIMITS]
    limits.refuse_if_failing(request)
    authenticator: Authenticator = state.extras[AUTH]
    try:
        identity = await authenticator.identify(key)
    except DesignerUnavailable as exc:
        raise ProblemError(503, "Service unavailable", "designer is not reachable") from exc
    if identity is None:
        limits.failure(request, "api_key")
        raise ProblemError(
            401, "Unauthorized", "unknown or revoked API key",
            headers={"WWW-Authenticate": scheme},
        )  # fmt: skip
    return identity


def _limit(state: ServiceState, identity: Identity) -> None:
    wait = state.extras[LIMITER].take(identity.key_id)
    if wait > 0:
        raise ProblemError(
            429, "Too many requests", "this key is over its request rate",
            headers={"Retry-After": retry_after_header(wait)},
        )  # fmt: skip


async def operator(request: Request) -> None:
    """Who may read the gateway's /metrics and readiness detail: a caller showing the
    service token (``X-Waypost-Service-Token``, or as the bearer token, which is what a
    Prometheus scrape config sends), or an admin key. The rest of the world learns only
    whether the gateway is ready."""
    token = _settings(get_state(request)).service_token
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    bearer = credential.strip() if scheme.lower() == "bearer" else ""
    if token is not None:
        expected = token.get_secret_value().encode()
        for shown in (request.headers.get(SERVICE_TOKEN_HEADER, ""), bearer):
            if shown and hmac.compare_digest(shown.encode(), expected):
                return
    if not bearer:
        raise ProblemError(
            401, "Unauthorized", "send an admin key or the service token as a bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    identity = await _known(get_state(request), bearer, "Bearer", request)
    if identity.role is not Role.ADMIN:
        raise ProblemError(403, "Forbidden", f"a {identity.role.value} key may not read this")


async def authorize(request: Request) -> tuple[Route, Identity]:
    """Route, key, role and rate limit: checked here, once, for every /v1 request."""
    route = _route(request)
    # Metrics label the request by its route's pattern, never by the raw path.
    request.scope[ROUTE_LABEL] = route.label
    state = get_state(request)
    identity = await _identify(request, state)
    if identity.role not in route.roles:
        raise ProblemError(
            403, "Forbidden", f"a {identity.role.value} key may not {request.method} this"
        )
    _limit(state, identity)
    return route, identity


ROUTE_LABEL = "waypost.route"

Authorized = Annotated[tuple[Route, Identity], Depends(authorize)]


async def caller(auth: Authorized) -> Identity:
    """The authorised caller, for routes the gateway answers itself."""
    return auth[1]


async def segment_caller(request: Request) -> Identity:
    """A Segment write key: HTTP Basic with an ingest key as the user and no password."""
    basic = 'Basic realm="segment"'
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, ValueError):
        decoded = ""
    key = decoded.partition(":")[0].strip()
    state = get_state(request)
    if scheme.lower() != "basic" or not key:
        limits: OpenLimits = state.extras[OPEN_LIMITS]
        limits.refuse_if_failing(request)
        limits.failure(request, "write_key")
        raise ProblemError(
            401, "Unauthorized", "send HTTP Basic auth with an ingest key as the user",
            headers={"WWW-Authenticate": basic},
        )  # fmt: skip
    identity = await _known(state, key, basic, request)
    if identity.role not in INGEST:
        raise ProblemError(403, "Forbidden", f"a {identity.role.value} key may not send events")
    _limit(state, identity)
    return identity


me_router = APIRouter(prefix="/v1", tags=["api keys"])


class Me(BaseModel):
    key_id: str
    workspace_id: str
    role: Role
    folder_ids: list[str] = Field(description="Empty: the whole workspace.")
    clock: Literal["real", "virtual"]


@me_router.get("/me", summary="The calling key: its workspace, role and folder grants")
async def me(request: Request, who: Annotated[Identity, Depends(caller)]) -> Me:
    """Any valid key may ask who it is; a console uses it to show what the role may do."""
    virtual = isinstance(get_state(request).clock, VirtualClock)
    return Me(
        key_id=who.key_id,
        workspace_id=who.workspace_id,
        role=who.role,
        folder_ids=list(who.folder_ids),
        clock="virtual" if virtual else "real",
    )


clock_router = APIRouter(prefix="/v1/admin", tags=["test clock"])


class ClockChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    advance: Duration | None = None
    set: datetime | None = None

    @model_validator(mode="after")
    def _one(self) -> ClockChange:
        if (self.advance is None) == (self.set is None):
            raise ValueError("give exactly one of 'advance' or 'set'")
        if self.set is not None and self.set.tzinfo is None:
            raise ValueError("'set' needs a UTC offset")
        return self


def _virtual(request: Request) -> VirtualClock:
    clock = get_state(request).clock
    if not isinstance(clock, VirtualClock):
        raise ProblemError(404, "Not found", "the clock is real; start with --clock virtual")
    return clock


@clock_router.get("/clock")
async def get_clock(request: Request, _auth: Authorized) -> dict[str, datetime]:
    return {"now": _virtual(request).now()}


@clock_router.post("/clock")
async def change_clock(
    request: Request, _auth: Authorized, body: ClockChange
) -> dict[str, datetime]:
    clock = _virtual(request)
    if body.advance is not None:
        delta = to_timedelta(body.advance)
        if delta.total_seconds() < 0:
            raise invalid([FieldError("advance", "the clock only moves forward")])
        return {"now": await clock.advance(delta)}
    assert body.set is not None
    return {"now": await clock.set(body.set)}


proxy_router = APIRouter()


@proxy_router.api_route("/v1/{path:path}", methods=PROXY_METHODS, include_in_schema=False)
async def proxy(request: Request, auth: Authorized) -> Response:
    route, identity = auth
    if route.service == "gateway":  # answered above when the method exists; never forwarded
        raise ProblemError(405, "Method not allowed", f"{request.method} is not allowed here")
    state = get_state(request)
    base = _settings(state).service_urls()[route.service]
    return await forward(_client(state), base, route.service, request, identity.headers())


metrics_router = APIRouter(include_in_schema=False)


@metrics_router.get("/metrics/{service}")
async def service_metrics(request: Request, service: str) -> Response:
    """Another service's /metrics, for the same operators as the gateway's own: under
    ``waypost up`` the services listen on ports picked at start, so one scrape target (the
    gateway, with ``/metrics/runtime`` and the like) reaches them all."""
    await operator(request)
    state = get_state(request)
    urls = _settings(state).service_urls()
    if service not in urls:
        raise ProblemError(404, "Not found", f"no service {service!r}: one of {', '.join(urls)}")
    try:
        r = await _client(state).get(f"{urls[service]}/metrics", timeout=5.0)
    except httpx.HTTPError as exc:
        raise ProblemError(
            503, "Service unavailable", f"{service} is not reachable: {type(exc).__name__}"
        ) from None
    if r.status_code != 200:
        raise ProblemError(503, "Service unavailable", f"{service} answered {r.status_code}")
    return Response(r.content, media_type=r.headers.get("content-type", "text/plain"))


docs_router = APIRouter(include_in_schema=False)


@docs_router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    app: FastAPI = request.app
    cached = getattr(app.state, "merged_openapi", None)
    if cached is None:
        state = get_state(request)
        try:
            own = app.openapi()
            cached = _keep_own_operations(
                await merged_openapi(_client(state), _settings(state).service_urls(), own), own
            )
        except httpx.HTTPError as exc:
            raise ProblemError(
                503, "Service unavailable", "a service's API is unreachable"
            ) from exc
        app.state.merged_openapi = cached
    return JSONResponse(cached)


def _keep_own_operations(merged: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A path the gateway shares with a service (its PUT /v1/profiles/{id} beside the
    runtime's GET and DELETE) lists the operations of both."""
    for path, item in own.get("paths", {}).items():
        if path.startswith("/v1/"):
            merged["paths"].setdefault(path, {}).update(item)
    return merged


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    return create_service_app(
        settings,
        title="Waypost",
        routers=[
            me_router,
            clock_router,
            ingest.router(caller),
            segment.router(segment_caller),
            hooks.router,
            tracking.router,
            proxy_router,
            metrics_router,
            docs_router,
            docs.router(),
            console.router(),
        ],
        extend=_extensions,
        readiness={"services": _services_ready},
        openapi_url=None,
        middleware=[Middleware(InputGuardMiddleware, max_bytes=settings.max_body_bytes)],
        private=False,
        operator=operator,
    )
