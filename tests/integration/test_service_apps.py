"""Every service app: health, readiness of its database and NATS, metrics, problem+json."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from services.activator.app import create_app as create_activator
from services.activator.settings import ActivatorSettings
from services.designer.app import create_app as create_designer
from services.designer.secrets import SecretBox
from services.designer.settings import DesignerSettings
from services.runtime.app import create_app as create_runtime
from services.runtime.settings import RuntimeSettings
from services.scheduler.app import create_app as create_scheduler
from services.scheduler.settings import SchedulerSettings
from shared.settings import ServiceSettings
from tests.conftest import Servers
from tests.helpers import serving
from tests.stack import SERVICE_TOKEN, service_headers
from waypost.embedded import free_port

FACTORIES = [
    (create_designer, DesignerSettings),
    (create_runtime, RuntimeSettings),
    (create_scheduler, SchedulerSettings),
    (create_activator, ActivatorSettings),
]


def settings_for(cls: type[ServiceSettings], servers: Servers, **extra: object) -> ServiceSettings:
    if cls is DesignerSettings:
        extra.setdefault("secrets_key", SecretBox.new_key())
    extra = {"database_url": servers.database_url, "nats_url": servers.nats_url, **extra}
    return cls(**extra)


@pytest.mark.parametrize(("factory", "settings_cls"), FACTORIES)
async def test_service_is_healthy_ready_and_measured(
    servers: Servers, factory: object, settings_cls: type[ServiceSettings]
) -> None:
    app = factory(settings_for(settings_cls, servers))  # type: ignore[operator]
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"]["ok"]
        assert ready.json()["checks"]["nats"]["ok"]
        missing = await client.get("/no-such-thing", headers={"X-Request-ID": "req-42"})
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.headers["x-request-id"] == "req-42"
        metrics = (await client.get("/metrics")).text
    assert 'waypost_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in metrics


async def test_readyz_names_the_database_when_it_is_down(servers: Servers) -> None:
    dead_db = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/waypost"
    settings = settings_for(DesignerSettings, servers, database_url=dead_db)
    async with serving(create_designer(settings)) as url, httpx.AsyncClient() as client:
        ready = await client.get(f"{url}/readyz")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert not checks["database"]["ok"]
    assert checks["nats"]["ok"]


async def test_gateway_answers_503_problem_when_a_service_is_down(servers: Servers) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    gateway = create_gateway(
        GatewaySettings(
            database_url=servers.database_url,
            nats_url=servers.nats_url,
            designer_url=down,
            runtime_url=down,
            scheduler_url=down,
            activator_url=down,
            service_token=SERVICE_TOKEN,
        )
    )
    async with serving(gateway) as url, httpx.AsyncClient(base_url=url) as client:
        headers = {"Authorization": "Bearer wp_anything"}
        routed = await client.post("/v1/events", json={"name": "x"}, headers=headers)
        ready = await client.get("/readyz", headers=service_headers())
    assert routed.status_code == 503
    assert routed.headers["content-type"] == "application/problem+json"
    assert routed.json()["detail"] == "designer is not reachable"
    assert ready.status_code == 503
    detail = ready.json()["checks"]["services"]["detail"]
    for name in ("designer", "runtime", "scheduler", "activator"):
        assert name in detail
