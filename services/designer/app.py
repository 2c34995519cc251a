"""Designer app factory."""

from __future__ import annotations

from fastapi import FastAPI

from services.designer.settings import DesignerSettings
from shared.app import create_service_app


def create_app(settings: DesignerSettings | None = None) -> FastAPI:
    settings = settings or DesignerSettings()
    return create_service_app(settings, title="Waypost designer")
