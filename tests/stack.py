"""The whole system in the test process: every service app on a real loopback port, the
gateway in front, a bootstrap admin key, and a fresh workspace per test. Connectors may
reach private addresses, as under ``waypost up``: the tests' providers are on loopback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from services.activator.app import create_app as create_activator
from services.activator.settings import ActivatorSettings
from services.designer.app import create_app as create_designer
from services.designer.bootstrap import ensure_bootstrap
from services.designer.secrets import SecretBox
from services.designer.settings import DesignerSettings
from services.runtime.app import create_app as create_runtime
from services.runtime.settings import RuntimeSettings
from services.scheduler.app import create_app as create_scheduler
from services.scheduler.settings import SchedulerSettings
from shared import db
from shared.identity import Identity
from shared.settings import SERVICE_TOKEN_HEADER, ClockMode
from tests.conftest import Servers
from tests.helpers import serving
from waypost.embedded import free_port

BOOTSTRAP_KEY = "wp_test-bootstrap-admin-key"
TRACKING_SECRET = "test-tracking-secret"
# What the services show each other; a test that calls a service directly shows it too.
SERVICE_TOKEN = "test-service-token"


def service_headers(identity: Identity | None = None) -> dict[str, str]:
    """Headers of a call from another service: the token, and a caller when given."""
    return {SERVICE_TOKEN_HEADER: SERVICE_TOKEN, **(identity.headers() if identity else {})}


@dataclass
class Stack:
    url: str
    bootstrap_key: str
    servers: Servers
    service_urls: dict[str, str]
    # Stops the runtime and starts a new one with the same settings on the same port.
    restart_runtime: Callable[[], Awaitable[None]] | None = None

    def client(self, key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


async def _bootstrap(database_url: str) -> None:
    engine = db.create_engine(database_url, pool_size=1)
    try:
        async with db.transaction(db.make_sessionmaker(engine)) as session:
            await ensure_bootstrap(session, BOOTSTRAP_KEY)
    finally:
        await engine.dispose()


@asynccontextmanager
async def running_stack(
    servers: Servers, clock: ClockMode = ClockMode.REAL, **gateway_overrides: Any
) -> AsyncIterator[Stack]:
    """Every service on ``clock``: with the virtual clock one advance moves them all."""
    await _bootstrap(servers.database_url)
    common = {
        "database_url": servers.database_url,
        "nats_url": servers.nats_url,
        "clock": clock,
        "service_token": SERVICE_TOKEN,
    }
    ports = {name: free_port() for name in ("designer", "runtime", "scheduler", "activator")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    gateway_port = free_port()
    runtime_settings = RuntimeSettings(
        **common, designer_url=urls["designer"], activator_url=urls["activator"]
    )
    apps = {
        "designer": create_designer(
            DesignerSettings(
                **common,
                secrets_key=SecretBox.new_key(),
                allow_private_connectors=True,
                runtime_url=urls["runtime"],
                activator_url=urls["activator"],
            )
        ),
        "runtime": create_runtime(runtime_settings),
        "scheduler": create_scheduler(SchedulerSettings(**common)),
        "activator": create_activator(
            ActivatorSettings(
                **common,
                designer_url=urls["designer"],
                allow_private_connectors=True,
                tracking_secret=TRACKING_SECRET,
                public_url=f"http://127.0.0.1:{gateway_port}",
            )
        ),
    }
    async with AsyncExitStack() as stack:
        services: dict[str, AsyncExitStack] = {}
        for name, app in apps.items():
            services[name] = await stack.enter_async_context(AsyncExitStack())
            await services[name].enter_async_context(serving(app, ports[name]))

        async def restart_runtime() -> None:
            await services["runtime"].aclose()
            fresh = create_runtime(runtime_settings)
            await services["runtime"].enter_async_context(serving(fresh, ports["runtime"]))

        gateway = create_gateway(
            GatewaySettings(
                **common,
                designer_url=urls["designer"],
                runtime_url=urls["runtime"],
                scheduler_url=urls["scheduler"],
                activator_url=urls["activator"],
                tracking_secret=TRACKING_SECRET,
                # Every test here calls from 127.0.0.1: the suite's many refused keys must
                # not use up one client's failed-authentication budget (the limit's own
                # tests set small budgets).
                **{"auth_failure_burst": 1_000_000, **gateway_overrides},
            )
        )
        url = await stack.enter_async_context(serving(gateway, gateway_port))
        yield Stack(url, BOOTSTRAP_KEY, servers, urls, restart_runtime)


@dataclass
class Workspace:
    id: str
    admin_key: str
    stack: Stack

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        return self.stack.client(key or self.admin_key)

    async def key(self, role: str, folder_ids: list[str] | None = None) -> str:
        async with self.client() as c:
            r = await c.post(
                "/v1/api-keys",
                json={"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role,
                      "folder_ids": folder_ids or []},
            )  # fmt: skip
        assert r.status_code == 201, r.text
        key: str = r.json()["key"]
        return key


async def new_workspace(stack: Stack, *, require_event_triggers: bool = False) -> Workspace:
    """A fresh workspace and its admin key. Most tests publish journeys on events they make
    up, so the workspace is set up as one made before event triggers existed (publishing
    does not ask for them); the tests of triggers ask for the new workspaces' default."""
    async with stack.client(stack.bootstrap_key) as c:
        r = await c.post("/v1/workspaces", json={"name": f"ws-{uuid.uuid4().hex[:8]}"})
        assert r.status_code == 201, r.text
        workspace_id = r.json()["id"]
        r = await c.post(
            "/v1/api-keys", json={"name": "admin", "role": "admin", "workspace_id": workspace_id}
        )
        assert r.status_code == 201, r.text
    workspace = Workspace(workspace_id, r.json()["key"], stack)
    if not require_event_triggers:
        async with workspace.client() as admin:
            r = await admin.put("/v1/workspace/settings", json={"require_event_triggers": False})
            assert r.status_code == 200, r.text
    return workspace
