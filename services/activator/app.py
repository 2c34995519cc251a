"""Activator app factory: clients, the outbox relay, the delivery loop and the intake,
release, erasure and stop consumers run in the lifespan (and stop in the reverse order)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from services.activator import api, internal, store
from services.activator.consumers import (
    start_erasures,
    start_intake,
    start_releases,
    start_stops,
)
from services.activator.delivery import Deliverer
from services.activator.designer import Designer
from services.activator.erasures import Erasures
from services.activator.holds import Releases
from services.activator.intake import Intake
from services.activator.metrics import ActivatorMetrics
from services.activator.models import Outbox
from services.activator.ratelimit import RateLimiter
from services.activator.settings import ActivatorSettings
from services.activator.stops import Stops
from shared import bus, db, http, outbox
from shared.addresses import AddressPolicy
from shared.app import Extension, ServiceState, create_service_app
from shared.connectors import DestinationGuard
from shared.metrics import RelayMetrics
from shared.rendering import Renderer

HTTP = internal.HTTP
GUARD = internal.GUARD
DESIGNER = api.DESIGNER
DELIVERER = "deliverer"


def create_app(settings: ActivatorSettings | None = None) -> FastAPI:
    settings = settings or ActivatorSettings()
    return create_service_app(
        settings,
        title="Waypost activator",
        routers=[api.router, internal.router],
        extend=_extension(settings),
    )


def _extension(settings: ActivatorSettings) -> Extension:
    @asynccontextmanager
    async def activator(state: ServiceState) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            policy = AddressPolicy(allow_private=settings.allow_private_connectors)
            designer = await _clients(state, settings, stack, policy)
            # In every mode: the local one still refuses link-local and metadata addresses.
            guard = DestinationGuard(policy=policy)
            state.extras[GUARD] = guard
            metrics = ActivatorMetrics(state.registry)
            # The hot path: intake batches, delivery groups (each holds a connection while
            # its sends are out) and the outbox relay.
            pool = await db.create_raw_pool(settings.database_url, settings.db_pool_size + 4)
            await stack.enter_async_context(db.closing(pool))
            relay = outbox.OutboxRelay(
                state.sessions, Outbox, state.js, pool=pool, metrics=RelayMetrics(state.registry),
                keep_published_s=settings.outbox_retention_s,
            )  # fmt: skip
            await stack.enter_async_context(outbox.running(relay))
            # Send turns of rate-limited connectors, reserved apart from the delivery groups'
            # transactions (which hold their connections while they send), so a group never
            # waits for a second connection of the pool it holds one of.
            turns_pool = await db.create_raw_pool(settings.database_url, 2)
            await stack.enter_async_context(db.closing(turns_pool))
            limiter = RateLimiter(
                settings.rate_limit_wait_s, functools.partial(store.reserve_turns, turns_pool)
            )
            renderer = Renderer.from_settings(settings, state.registry)
            stack.push_async_callback(renderer.aclose)
            state.extras[internal.RENDERER] = renderer
            deliverer = Deliverer(
                state.sessions, pool, state.clock, designer, state.extras[HTTP], guard, relay,
                settings, metrics, renderer, limiter,
            )  # fmt: skip
            state.extras[DELIVERER] = deliverer
            await stack.enter_async_context(deliverer.running())

            # The relay is woken only when the intake wrote quiet-hours timers.
            intake = Intake(
                pool, designer, state.clock, settings, metrics, deliverer.submit, relay.notify
            )
            releases = Releases(state.sessions, state.clock, deliverer.notify)
            consumer_metrics = bus.ConsumerMetrics(state.registry)
            for consumer in (
                await start_intake(state.js, intake, settings, consumer_metrics),
                await start_releases(state.js, releases, settings, consumer_metrics),
                await start_erasures(
                    state.js, Erasures(state.sessions, state.clock), settings, consumer_metrics
                ),
                await start_stops(
                    state.js, Stops(state.sessions, state.clock), settings, consumer_metrics
                ),
            ):
                stack.push_async_callback(consumer.stop)
            yield

    return activator


async def _clients(
    state: ServiceState, settings: ActivatorSettings, stack: AsyncExitStack, policy: AddressPolicy
) -> Designer:
    """One pooled client for every HTTP connector, so connections to a provider are reused
    across messages (each request sets its connector's own timeout), dialling only the
    addresses ``policy`` vetted; another for the designer, with its own timeout."""
    providers = http.session(settings.http_max_connections, policy=policy)
    state.extras[HTTP] = await stack.enter_async_context(providers)
    own = http.session(timeout_s=settings.designer_timeout_s, headers=settings.service_headers())
    designer = Designer(
        await stack.enter_async_context(own), settings.designer_url, settings.lookup_cache_s
    )
    state.extras[DESIGNER] = designer
    return designer
