"""Scheduler app factory."""

from __future__ import annotations

from fastapi import FastAPI

from services.scheduler.settings import SchedulerSettings
from shared.app import create_service_app


def create_app(settings: SchedulerSettings | None = None) -> FastAPI:
    settings = settings or SchedulerSettings()
    return create_service_app(settings, title="Waypost scheduler")
