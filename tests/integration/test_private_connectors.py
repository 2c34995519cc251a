"""With ``allow_private_connectors`` off (the container default), connectors reach public
addresses only: the designer refuses to save a private destination, naming the field, and
the activator refuses to send to one, whatever a name resolves to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.activator.app import create_app as create_activator
from services.activator.senders import OutgoingMessage, PermanentDeliveryError, send
from services.activator.settings import ActivatorSettings
from services.designer.app import create_app as create_designer
from services.designer.secrets import SecretBox
from services.designer.settings import DesignerSettings
from shared import http as shared_http
from shared.connectors import ConnectorType, DestinationGuard, parse_config
from shared.identity import Identity, Role
from tests.conftest import Servers
from tests.helpers import serving
from tests.sinks import HttpSink
from tests.stack import SERVICE_TOKEN, Workspace, service_headers

PUBLIC_URL = "https://93.184.216.34/send"  # a literal: no name lookup in the test


@pytest.fixture
async def designer(servers: Servers, workspace: Workspace) -> AsyncIterator[httpx.AsyncClient]:
    """A designer with the setting off, called as the gateway would for the admin key."""
    settings = DesignerSettings(
        database_url=servers.database_url, nats_url=servers.nats_url,
        secrets_key=SecretBox.new_key(), allow_private_connectors=False,
        service_token=SERVICE_TOKEN,
    )  # fmt: skip
    caller = Identity("k-test", workspace.id, Role.ADMIN)
    async with (
        serving(create_designer(settings)) as url,
        httpx.AsyncClient(base_url=url, headers=service_headers(caller)) as client,
    ):
        yield client


@pytest.fixture
async def guarded_activator(servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    settings = ActivatorSettings(
        database_url=servers.database_url, nats_url=servers.nats_url,
        consumer_durable="activator-private-test", allow_private_connectors=False,
        service_token=SERVICE_TOKEN,
    )  # fmt: skip
    async with (
        serving(create_activator(settings)) as url,
        httpx.AsyncClient(base_url=url, headers=service_headers()) as c,
    ):
        yield c


@pytest.fixture
async def sink() -> AsyncIterator[tuple[HttpSink, str]]:
    state = HttpSink()
    async with serving(state.app()) as url:
        yield state, f"{url}/send"


def connector(kind: str, config: dict[str, object]) -> dict[str, object]:
    return {"name": f"c-{kind}", "type": kind, "config": config}


@pytest.mark.parametrize(
    ("kind", "config", "path"),
    [
        ("sms_http", {"url": "http://127.0.0.1:9/send"}, "config.url"),
        ("push_http", {"url": "http://[::ffff:10.0.0.1]/push"}, "config.url"),
        ("webhook", {"url": "http://169.254.169.254/latest", "secret": "s"}, "config.url"),
        ("smtp", {"host": "localhost", "port": 25, "from": "a@example.com"}, "config.host"),
    ],
)
async def test_saving_a_private_destination_is_refused_with_its_path(
    designer: httpx.AsyncClient, kind: str, config: dict[str, object], path: str
) -> None:
    r = await designer.post("/v1/connectors", json=connector(kind, config))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    (error,) = r.json()["errors"]
    assert error["path"] == path
    assert "is not a public address" in error["message"]


async def test_a_public_destination_is_saved_and_an_update_to_a_private_one_refused(
    designer: httpx.AsyncClient,
) -> None:
    r = await designer.post("/v1/connectors", json=connector("sms_http", {"url": PUBLIC_URL}))
    assert r.status_code == 201, r.text
    connector_id = r.json()["id"]
    moved = connector("sms_http", {"url": "http://localhost:8080/send"})
    r = await designer.put(f"/v1/connectors/{connector_id}", json=moved)
    assert r.status_code == 422, r.text
    assert [e["path"] for e in r.json()["errors"]] == ["config.url"]
    assert (await designer.get(f"/v1/connectors/{connector_id}")).json()["config"]["url"] == (
        PUBLIC_URL
    )


async def test_a_send_to_a_loopback_provider_fails_permanently_and_sends_nothing(
    sink: tuple[HttpSink, str],
) -> None:
    received, url = sink
    message = OutgoingMessage(activation_id="act-1", to="+4100", subject=None, body="Hi")
    config = parse_config(ConnectorType.SMS_HTTP, {"url": url})
    async with shared_http.session() as http:
        with pytest.raises(PermanentDeliveryError, match=r"not a public address \(loopback\)"):
            await send(ConnectorType.SMS_HTTP, config, message, http, DestinationGuard())
        await send(ConnectorType.SMS_HTTP, config, message, http, None)  # allowed: it arrives
    assert [r["activation_id"] for r in received.received] == ["act-1"]


async def test_the_activators_connector_test_refuses_a_name_resolving_to_loopback(
    guarded_activator: httpx.AsyncClient,
) -> None:
    answer = await guarded_activator.post(
        "/internal/connectors/test",
        json={"type": "smtp", "config": {"host": "localhost", "port": 25, "from": "o@example.com"},
              "to": "admin@example.org"},
    )  # fmt: skip
    assert answer.status_code == 502, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("permanent failure: localhost (")
    assert "not a public address (loopback)" in detail
