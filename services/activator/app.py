"""Activator app factory."""

from __future__ import annotations

from fastapi import FastAPI

from services.activator.settings import ActivatorSettings
from shared.app import create_service_app


def create_app(settings: ActivatorSettings | None = None) -> FastAPI:
    settings = settings or ActivatorSettings()
    return create_service_app(settings, title="Waypost activator")
