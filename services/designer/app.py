"""Designer app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi

from services.designer import api, internal
from services.designer.context import HTTP, RELAY, RENDERER, SECRETS
from services.designer.models import Outbox
from services.designer.secrets import SecretBox
from services.designer.settings import DesignerSettings
from shared import beacon, outbox
from shared.app import ServiceState, create_service_app, get_state
from shared.journey import JourneyBody
from shared.logging import get_logger
from shared.metrics import RelayMetrics
from shared.rendering import Renderer

log = get_logger(__name__)


@asynccontextmanager
async def _clients(state: ServiceState) -> AsyncIterator[None]:
    settings = state.settings
    assert isinstance(settings, DesignerSettings)
    if not settings.secrets_key:
        raise RuntimeError("WAYPOST_SECRETS_KEY is required (a Fernet key; `waypost up` makes one)")
    state.extras[SECRETS] = SecretBox(settings.secrets_key)
    relay = outbox.OutboxRelay(
        state.sessions, Outbox, state.js, metrics=RelayMetrics(state.registry)
    )
    state.extras[RELAY] = relay
    await beacon.ensure(state.js, settings.stream_replicas)
    headers = settings.service_headers()  # the client calls only the other services
    renderer = Renderer.from_settings(settings, state.registry)
    state.extras[RENDERER] = renderer
    async with (
        httpx.AsyncClient(timeout=30, headers=headers) as client,
        outbox.running(relay),
        aclosing(renderer),
    ):
        state.extras[HTTP] = client
        yield


def create_app(settings: DesignerSettings | None = None) -> FastAPI:
    settings = settings or DesignerSettings()
    app = create_service_app(
        settings, title="Waypost designer", routers=[api.router, internal.router], extend=_clients
    )
    _document_journey_body(app)
    app.middleware("http")(_signal_changes)
    return app


async def _signal_changes(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """After a change is committed and before it is answered, the change beacon moves: the
    runtime then reloads before it applies any event accepted after this answer."""
    response = await call_next(request)
    if request.method not in ("GET", "HEAD", "OPTIONS") and response.status_code < 400:
        try:
            await beacon.signal(get_state(request).js)
        except Exception as exc:
            # Committed all the same; the runtime's periodic check finds it.
            log.warning("designer.beacon_failed", error=f"{type(exc).__name__}: {exc}")
    return response


def _document_journey_body(app: FastAPI) -> None:
    """Journey routes take a raw body (validated in full by the service); show its schema."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            body = JourneyBody.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            components["JourneyBody"] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
