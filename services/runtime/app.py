"""Runtime app factory: the catalog, the processor and the consumers in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from services.runtime import api, internal
from services.runtime.catalog import CatalogCache
from services.runtime.consumers import journey_consumer, partition_consumer, timer_consumer
from services.runtime.erasures import Tombstones
from services.runtime.experiments import Decider, DeciderMetrics, deciding
from services.runtime.models import Outbox
from services.runtime.needs import TemplateNeeds
from services.runtime.partitions import PartitionLeases
from services.runtime.processor import Processor
from services.runtime.settings import RuntimeSettings
from services.runtime.simulate import ActivatorPreview, SimLimits, Simulator
from services.runtime.triggers import TriggerSchemas
from shared import beacon, bus, db, outbox
from shared import http as shared_http
from shared.app import ServiceState, create_service_app
from shared.metrics import RelayMetrics
from shared.workers import WorkerPool

PROCESSOR = "processor"
HTTP = "http"
SIMULATOR = api.SIMULATOR


@asynccontextmanager
async def _runtime(state: ServiceState) -> AsyncIterator[None]:
    settings = state.settings
    assert isinstance(settings, RuntimeSettings)
    pool = await db.create_raw_pool(settings.database_url, settings.event_partitions + 4)
    # Both clients call only the other services: each request bears the service token.
    headers = settings.service_headers()
    designer = shared_http.session(timeout_s=30, headers=headers)
    http_client = httpx.AsyncClient(timeout=30, headers=headers)
    async with http_client as http, designer, db.closing(pool):
        state.extras[HTTP] = http
        await beacon.ensure(state.js, settings.stream_replicas)
        catalogs = CatalogCache(designer, settings.designer_url, state.js)
        relay = outbox.OutboxRelay(
            state.sessions, Outbox, state.js, keep_published_s=settings.outbox_retention_s,
            pool=pool, metrics=RelayMetrics(state.registry),
        )  # fmt: skip
        triggers = TriggerSchemas(designer, settings.designer_url)
        needs = TemplateNeeds(designer, settings.designer_url)
        processor = Processor(
            pool, catalogs, relay, state.clock, triggers,
            max_profile_bytes=settings.max_profile_bytes, needs=needs,
            tombstones=Tombstones(state.registry),
        )  # fmt: skip
        state.extras[PROCESSOR] = processor
        simulator = state.extras[SIMULATOR] = _simulator(state, settings)
        async with outbox.running(relay), contextlib.aclosing(simulator):
            if not settings.consumers:
                yield
                return
            decider = Decider(
                pool, catalogs, state.clock, DeciderMetrics(state.registry),
                settings.experiment_check_s,
            )  # fmt: skip
            async with _consuming(state, processor, settings), deciding(decider):
                yield


def _simulator(state: ServiceState, settings: RuntimeSettings) -> Simulator:
    pool = WorkerPool(
        workers=settings.simulate_workers,
        time_limit_s=settings.simulate_time_limit_s,
        memory_limit_mib=settings.simulate_memory_mib,
        preload=["services.runtime.simulate"],
    )
    limits = SimLimits(
        max_event_steps=settings.simulate_max_event_steps,
        max_timers=settings.simulate_max_timers,
        max_answer_entries=settings.simulate_max_answer_entries,
        max_messages=settings.simulate_max_messages,
    )
    preview = ActivatorPreview(state.extras[HTTP], settings.activator_url)
    return Simulator(pool, limits, state.registry, preview)


@asynccontextmanager
async def _consuming(
    state: ServiceState, processor: Processor, settings: RuntimeSettings
) -> AsyncIterator[None]:
    async def consumer_for(partition: int) -> bus.Consumer:
        return await partition_consumer(state.js, processor, partition, settings.event_batch)

    leases = PartitionLeases(
        state.engine, state.sessions, settings.event_partitions, uuid.uuid4().hex, consumer_for
    )
    others = [
        await timer_consumer(state.js, processor),
        await journey_consumer(state.js, processor),
    ]
    task = asyncio.create_task(leases.run(), name="partition-leases")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for consumer in others:
            await consumer.stop()


def create_app(settings: RuntimeSettings | None = None) -> FastAPI:
    settings = settings or RuntimeSettings()
    return create_service_app(
        settings, title="Waypost runtime", routers=[api.router, internal.router], extend=_runtime
    )
