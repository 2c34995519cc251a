"""Designer app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.designer import api, internal
from services.designer.context import HTTP, RELAY, SECRETS
from services.designer.models import Outbox
from services.designer.secrets import SecretBox
from services.designer.settings import DesignerSettings
from shared import outbox
from shared.app import ServiceState, create_service_app
from shared.journey import JourneyBody


@asynccontextmanager
async def _clients(state: ServiceState) -> AsyncIterator[None]:
    settings = state.settings
    assert isinstance(settings, DesignerSettings)
    if not settings.secrets_key:
        raise RuntimeError("WAYPOST_SECRETS_KEY is required (a Fernet key; `waypost up` makes one)")
    state.extras[SECRETS] = SecretBox(settings.secrets_key)
    relay = outbox.OutboxRelay(state.sessions, Outbox, state.js)
    state.extras[RELAY] = relay
    async with httpx.AsyncClient(timeout=30) as client, outbox.running(relay):
        state.extras[HTTP] = client
        yield


def create_app(settings: DesignerSettings | None = None) -> FastAPI:
    settings = settings or DesignerSettings()
    app = create_service_app(
        settings, title="Waypost designer", routers=[api.router, internal.router], extend=_clients
    )
    _document_journey_body(app)
    return app


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
