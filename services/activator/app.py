"""Activator app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from services.activator.api import router
from services.activator.settings import ActivatorSettings
from shared.app import Extension, ServiceState, create_service_app


def create_app(settings: ActivatorSettings | None = None) -> FastAPI:
    settings = settings or ActivatorSettings()
    return create_service_app(
        settings, title="Waypost activator", routers=[router], extend=_extension(settings)
    )


def _extension(settings: ActivatorSettings) -> Extension:
    @asynccontextmanager
    async def http_client(state: ServiceState) -> AsyncIterator[None]:
        # One pooled client for every HTTP connector, so connections to a provider are
        # reused across messages; each request sets its connector's own timeout.
        limits = httpx.Limits(max_connections=settings.http_max_connections)
        async with httpx.AsyncClient(limits=limits, follow_redirects=False) as client:
            state.extras["http"] = client
            try:
                yield
            finally:
                state.extras.pop("http", None)

    return http_client
