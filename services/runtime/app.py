"""Runtime app factory."""

from __future__ import annotations

from fastapi import FastAPI

from services.runtime import api, internal
from services.runtime.settings import RuntimeSettings
from shared.app import create_service_app


def create_app(settings: RuntimeSettings | None = None) -> FastAPI:
    settings = settings or RuntimeSettings()
    return create_service_app(
        settings, title="Waypost runtime", routers=[api.router, internal.router]
    )
