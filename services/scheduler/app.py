"""Scheduler app factory: command consumers, the release loop and housekeeping run in the
lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from services.scheduler import api
from services.scheduler.consumers import CommandStore, start_consumers
from services.scheduler.context import RELEASER
from services.scheduler.housekeeping import Housekeeper
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.release import Releaser
from services.scheduler.settings import SchedulerSettings
from shared import bus
from shared.app import ServiceState, create_service_app


@asynccontextmanager
async def _scheduler(state: ServiceState) -> AsyncIterator[None]:
    settings = state.settings
    assert isinstance(settings, SchedulerSettings)
    metrics = SchedulerMetrics(state.registry)
    # A context of its own, so its in-flight bound is the release loop's alone.
    js = state.nc.jetstream(publish_async_max_pending=settings.max_in_flight)
    releaser = Releaser(state.sessions, js, state.clock, settings, metrics)
    state.extras[RELEASER] = releaser
    housekeeper = Housekeeper(state.sessions, state.clock, settings, metrics)
    store = CommandStore(state.sessions, state.clock, releaser.notify)
    async with _background(releaser.run(), housekeeper.run()):
        consumers = await start_consumers(
            state.js, store, settings, bus.ConsumerMetrics(state.registry)
        )
        try:
            yield
        finally:
            for consumer in consumers:
                await consumer.stop()


@asynccontextmanager
async def _background(*loops: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def create_app(settings: SchedulerSettings | None = None) -> FastAPI:
    settings = settings or SchedulerSettings()
    return create_service_app(
        settings, title="Waypost scheduler", routers=[api.router], extend=_scheduler
    )
