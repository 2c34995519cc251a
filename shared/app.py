"""The app factory every service uses: clients in a lifespan, health, readiness, metrics.

A service passes its settings, its routers and an optional ``extend`` context manager that
starts what only it runs (consumers, loops) on top of the common clients and stops them
first on the way out.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import bus, db
from shared.clock import Clock, RealClock, VirtualClock
from shared.logging import REQUEST_ID_HEADER, bind_correlation, configure_logging, get_logger
from shared.metrics import CONTENT_TYPE, BoundaryMetrics, HttpMetrics, render
from shared.problems import ProblemError, install_problem_handlers, problem_response
from shared.settings import SERVICE_TOKEN_HEADER, ClockMode, ServiceSettings

log = get_logger(__name__)

ReadinessCheck = Callable[["ServiceState"], Awaitable[tuple[bool, str]]]
Operator = Callable[[Request], Awaitable[None]]


@dataclass
class ServiceState:
    """Every client a service process holds, created and closed by the lifespan."""

    settings: ServiceSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    nc: NATS
    js: JetStreamContext
    clock: Clock
    registry: CollectorRegistry
    extras: dict[str, Any] = field(default_factory=dict)


Extension = Callable[[ServiceState], AbstractAsyncContextManager[None]]


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.svc
    return state


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one transaction: committed before the answer is sent, else rolled back."""
    async with db.transaction(get_state(request).sessions) as session:
        yield session


RequestSession = Annotated[AsyncSession, Depends(request_session, scope="function")]


async def open_clock(settings: ServiceSettings, js: JetStreamContext) -> Clock:
    if settings.clock is ClockMode.VIRTUAL:
        return await VirtualClock.open(js, settings.stream_replicas)
    return RealClock()


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter] = (),
    extend: Extension | None = None,
    readiness: dict[str, ReadinessCheck] | None = None,
    openapi_url: str | None = "/openapi.json",
    middleware: Sequence[Middleware] = (),
    private: bool = True,
    operator: Operator | None = None,
) -> FastAPI:
    """``private``: only the other services call this one, so its /internal and /v1 routes
    and any identity header need the service token (the gateway, public, passes False).

    ``operator``: for a public app, checks that a request may see operational detail
    (raises ProblemError when not): /metrics needs it, /readyz shows only its status
    without it. None: both are open, as on a service's private binding."""
    checks: dict[str, ReadinessCheck] = {
        "database": _check_database,
        "nats": _check_nats,
        **(readiness or {}),
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.service_name, settings.log_level, settings.log_format)
        async with AsyncExitStack() as stack:
            state = await _open_state(settings, stack)
            app.state.svc = state
            app.state.http_metrics = HttpMetrics(state.registry)
            app.state.boundary_metrics = BoundaryMetrics(state.registry)
            if extend is not None:
                await stack.enter_async_context(extend(state))
            log.info("service.started", port=settings.port, clock=settings.clock.value)
            yield
            log.info("service.stopping")

    app = FastAPI(title=title, lifespan=lifespan, openapi_url=openapi_url)
    app.state.settings = settings
    install_problem_handlers(app)
    for layer in middleware:
        app.add_middleware(layer.cls, *layer.args, **layer.kwargs)
    if private:
        app.add_middleware(ServiceTokenMiddleware, settings=settings)
    app.add_middleware(CorrelationMiddleware)  # outermost: every answer carries the id
    _add_operational_routes(app, checks, operator)
    for router in routers:
        app.include_router(router)
    return app


async def _open_state(settings: ServiceSettings, stack: AsyncExitStack) -> ServiceState:
    engine = db.create_engine(settings.database_url, settings.db_pool_size)
    stack.push_async_callback(engine.dispose)
    nc = await bus.connect(settings.nats_url, f"waypost-{settings.service_name}")
    stack.push_async_callback(nc.drain)
    js = nc.jetstream()
    await bus.ensure_streams(js, replicas=settings.stream_replicas)
    clock = await open_clock(settings, js)
    if isinstance(clock, VirtualClock):
        stack.push_async_callback(clock.close)
    return ServiceState(
        settings=settings,
        engine=engine,
        sessions=db.make_sessionmaker(engine),
        nc=nc,
        js=js,
        clock=clock,
        registry=CollectorRegistry(),
    )


async def _check_database(state: ServiceState) -> tuple[bool, str]:
    await asyncio.wait_for(db.ping(state.engine), timeout=2.0)
    return True, "ok"


async def _check_nats(state: ServiceState) -> tuple[bool, str]:
    if not state.nc.is_connected:
        return False, "not connected"
    await state.nc.flush(timeout=2)
    return True, "ok"


def _add_operational_routes(
    app: FastAPI, checks: dict[str, ReadinessCheck], operator: Operator | None
) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        state = getattr(request.app.state, "svc", None)
        if state is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        results = await asyncio.gather(*(_run_check(c, state) for c in checks.values()))
        report = dict(zip(checks, results, strict=True))
        ready = all(ok for ok, _ in results)
        body: dict[str, Any] = {"status": "ready" if ready else "unavailable"}
        if await _may_see_detail(operator, request):
            body["checks"] = {k: {"ok": ok, "detail": d} for k, (ok, d) in report.items()}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if operator is not None:
            await operator(request)
        return Response(render(get_state(request).registry), media_type=CONTENT_TYPE)


async def _may_see_detail(operator: Operator | None, request: Request) -> bool:
    """Readiness detail (which dependency is down, and why) for an operator only; anyone
    else, a load balancer included, gets the status alone."""
    if operator is None:
        return True
    try:
        await operator(request)
    except ProblemError:
        return False
    return True


async def _run_check(check: ReadinessCheck, state: ServiceState) -> tuple[bool, str]:
    try:
        return await check(state)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


class CorrelationMiddleware:
    """Binds request/trace ids to logs, echoes ``X-Request-ID``, records HTTP metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        ids = bind_correlation(headers)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                raw = list(message.get("headers", []))
                name = REQUEST_ID_HEADER.lower().encode()
                if all(k.lower() != name for k, _ in raw):
                    raw.append((name, ids["request_id"].encode()))
                message["headers"] = raw
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    @staticmethod
    def _observe(scope: Scope, status: int, seconds: float) -> None:
        app = scope.get("app")
        metrics: HttpMetrics | None = getattr(getattr(app, "state", None), "http_metrics", None)
        if metrics is None:
            return
        # An app routing many paths through one route (the gateway's proxy) names the
        # pattern it matched in the scope, so metrics count by it.
        route = scope.get("waypost.route") or getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        metrics.requests.labels(method, route, str(status)).inc()
        metrics.latency.labels(method, route).observe(seconds)


# Paths only another service may call. Health, readiness, metrics and the API description
# stay open on the service's private binding.
PRIVATE_PREFIXES = ("/internal/", "/v1/")


class ServiceTokenMiddleware:
    """401 for a call to a private path, or one carrying identity headers, that does not
    bear this deployment's service token: reaching a service's port is not enough to act
    as a caller or to read connector secrets."""

    def __init__(self, app: ASGIApp, settings: ServiceSettings) -> None:
        self.app = app
        token = settings.service_token
        self.token = token.get_secret_value().encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        claims = scope["path"].startswith(PRIVATE_PREFIXES) or any(
            k.lower().startswith(b"x-waypost-") for k, _ in headers
        )
        reason = self._refusal(headers) if claims else None
        if reason is None:
            await self.app(scope, receive, send)
            return
        metrics = getattr(getattr(scope.get("app"), "state", None), "boundary_metrics", None)
        if isinstance(metrics, BoundaryMetrics):
            metrics.token_refused.labels(reason).inc()
        log.warning("service.token_refused", reason=reason, path=scope["path"])
        detail = (
            "this service has no service token configured (WAYPOST_SERVICE_TOKEN)"
            if reason == "unconfigured"
            else "only the other Waypost services may call this"
        )
        await problem_response(401, "Unauthorized", detail)(scope, receive, send)

    def _refusal(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        if self.token is None:
            return "unconfigured"
        name = SERVICE_TOKEN_HEADER.encode()
        sent = next((v for k, v in headers if k.lower() == name), None)
        if sent is None:
            return "missing"
        return None if hmac.compare_digest(sent, self.token) else "wrong"
