"""DNS rebinding and metadata addresses: a name that answers an allowed address to the
check and another to the connection reaches nothing, over HTTP and SMTP, in both modes;
through the gateway, the connector test and a journey's webhook step refuse them."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services.activator.senders import OutgoingMessage, PermanentDeliveryError, send
from shared import addresses
from shared import http as shared_http
from shared.addresses import AddressPolicy, IPAddress
from shared.connectors import ConnectorType, DestinationGuard, parse_config
from tests.helpers import eventually, serving
from tests.sinks import HttpSink, Mailbox, run_mailbox
from tests.stack import Workspace

PUBLIC = ipaddress.ip_address("93.184.216.34")
LOOPBACK = ipaddress.ip_address("127.0.0.1")
METADATA = ipaddress.ip_address("169.254.169.254")


class Rebinder:
    """A resolver whose answer for every name changes after the first question."""

    def __init__(self, first: IPAddress, then: IPAddress) -> None:
        self.answers = [first, then]
        self.asked = 0

    async def __call__(self, host: str, port: int | None) -> list[IPAddress]:
        literal = addresses.literal(host)
        if literal is not None:
            return [literal]
        self.asked += 1
        return [self.answers[min(self.asked, 2) - 1]]


@pytest.fixture
async def sink() -> AsyncIterator[tuple[HttpSink, int]]:
    state = HttpSink()
    async with serving(state.app()) as url:
        yield state, int(url.rsplit(":", 1)[1])


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    yield from run_mailbox()


def message() -> OutgoingMessage:
    return OutgoingMessage(activation_id=f"act-{uuid.uuid4().hex[:8]}", to="ada@example.org",
                           subject="Hi", body="Hello")  # fmt: skip


@pytest.mark.parametrize(
    ("allow_private", "first", "then"),
    [(False, PUBLIC, LOOPBACK), (True, LOOPBACK, METADATA)],
    ids=["strict", "local"],
)
async def test_a_rebound_name_never_reaches_the_internal_http_sink(
    sink: tuple[HttpSink, int], allow_private: bool, first: IPAddress, then: IPAddress
) -> None:
    received, port = sink
    # In the local mode the sink itself is allowed, so its second answer must be the one
    # refused; in the strict mode the sink is the internal address the name flips to.
    resolver = Rebinder(first, then)
    policy = AddressPolicy(allow_private=allow_private, lookup=resolver)
    config = parse_config(ConnectorType.SMS_HTTP, {"url": f"http://rebind.test:{port}/send"})
    guard = DestinationGuard(policy=policy)
    async with shared_http.session(policy=policy) as http:
        with pytest.raises(PermanentDeliveryError, match=r"rebind\.test \("):
            await send(ConnectorType.SMS_HTTP, config, message(), http, guard)
    assert resolver.asked == 2  # the guard's check, then the connection's own
    assert received.received == []


@pytest.mark.parametrize(
    ("allow_private", "first", "then"),
    [(False, PUBLIC, LOOPBACK), (True, LOOPBACK, METADATA)],
    ids=["strict", "local"],
)
async def test_a_rebound_name_never_reaches_the_internal_smtp_server(
    mailbox: Mailbox, allow_private: bool, first: IPAddress, then: IPAddress
) -> None:
    resolver = Rebinder(first, then)
    policy = AddressPolicy(allow_private=allow_private, lookup=resolver)
    config = parse_config(
        ConnectorType.SMTP, {"host": "mx.rebind.test", "port": mailbox.port, "from": "s@b.example"}
    )
    async with shared_http.session() as http:
        with pytest.raises(PermanentDeliveryError, match=r"mx\.rebind\.test \("):
            await send(ConnectorType.SMTP, config, message(), http, DestinationGuard(policy=policy))
    assert mailbox.messages == []


async def test_smtp_connects_to_the_vetted_address_and_delivers(mailbox: Mailbox) -> None:
    policy = AddressPolicy(allow_private=True)
    config = parse_config(
        ConnectorType.SMTP, {"host": "localhost", "port": mailbox.port, "from": "s@shop.example"}
    )
    async with shared_http.session() as http:
        sent = await send(
            ConnectorType.SMTP, config, message(), http, DestinationGuard(policy=policy)
        )
    assert sent.message_id
    assert [m["To"] for m in mailbox.messages] == ["ada@example.org"]


# --- black box, through the gateway (the stack runs in the local mode, as `waypost up`) ---


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> dict[str, IPAddress]:
    """Every service of the stack resolves names through this table (literals as such)."""
    table: dict[str, IPAddress] = {}
    real = addresses.resolve

    async def lookup(host: str, port: int | None = None) -> list[IPAddress]:
        if host in table:
            return [table[host]]
        return await real(host, port)

    monkeypatch.setattr(addresses, "resolve", lookup)
    return table


@pytest.mark.parametrize(
    ("kind", "config", "path"),
    [
        ("sms_http", {"url": "http://169.254.169.254/latest/meta-data/"}, "config.url"),
        ("sms_http", {"url": "http://2852039166/"}, "config.url"),
        ("push_http", {"url": "http://0xa9fea9fe/"}, "config.url"),
        ("webhook", {"url": "http://[fd00:ec2::254]/", "secret": "x" * 24}, "config.url"),
        ("webhook", {"url": "http://[::ffff:169.254.169.254]/", "secret": "x" * 24}, "config.url"),
        ("smtp", {"host": "0251.0376.0251.0376", "port": 25, "from": "a@b.example"}, "config.host"),
        ("smtp", {"host": "0.0.0.0", "port": 25, "from": "a@b.example"}, "config.host"),
    ],
)
async def test_saving_a_metadata_destination_is_refused_even_in_the_local_mode(
    workspace: Workspace, kind: str, config: dict[str, Any], path: str
) -> None:
    async with workspace.client() as c:
        r = await c.post("/v1/connectors", json={"name": f"c-{uuid.uuid4().hex[:6]}",
                                                 "type": kind, "config": config})  # fmt: skip
    assert r.status_code == 422, r.text
    assert [e["path"] for e in r.json()["errors"]] == [path]


async def test_the_connector_test_refuses_a_name_rebound_to_metadata(
    workspace: Workspace, rebinding: dict[str, IPAddress], sink: tuple[HttpSink, int]
) -> None:
    received, port = sink
    rebinding["sms.partner.test"] = LOOPBACK  # what the designer sees on save
    async with workspace.client() as c:
        r = await c.post("/v1/connectors", json={
            "name": f"c-{uuid.uuid4().hex[:6]}", "type": "sms_http",
            "config": {"url": f"http://sms.partner.test:{port}/send"}})  # fmt: skip
        assert r.status_code == 201, r.text
        rebinding["sms.partner.test"] = METADATA
        test = await c.post(f"/v1/connectors/{r.json()['id']}/test", json={"to": "+4100"})
    assert test.status_code == 502, test.text
    assert "permanent failure" in test.json()["detail"]
    assert "link-local" in test.json()["detail"]
    assert received.received == []


async def test_a_webhook_step_fails_on_a_name_rebound_to_metadata(
    workspace: Workspace, rebinding: dict[str, IPAddress], sink: tuple[HttpSink, int]
) -> None:
    received, port = sink
    rebinding["hooks.partner.test"] = LOOPBACK
    async with workspace.client() as c:
        r = await c.post("/v1/connectors", json={
            "name": f"c-{uuid.uuid4().hex[:6]}", "type": "webhook",
            "config": {"url": f"http://hooks.partner.test:{port}/send",
                       "secret": "y" * 24}})  # fmt: skip
        assert r.status_code == 201, r.text
        connector_id = r.json()["id"]
        r = await c.post("/v1/templates", json={"name": f"t-{uuid.uuid4().hex[:6]}",
                         "channel": "webhook", "body": "signed up", "status": "ready"})  # fmt: skip
        assert r.status_code == 201, r.text
        journey = {
            "name": f"j-{uuid.uuid4().hex[:6]}",
            "stages": [{"name": "In", "entry": {"event": "signup"}, "steps": [
                {"id": "hook", "type": "activation", "channel": "webhook",
                 "connector_id": connector_id, "template_id": r.json()["id"],
                 "to_attribute": "crm_id"}]}],
        }  # fmt: skip
        r = await c.post("/v1/journeys", json=journey)
        assert r.status_code == 201, r.text
        assert (await c.post(f"/v1/journeys/{r.json()['id']}/publish")).status_code == 200
        rebinding["hooks.partner.test"] = METADATA
        r = await c.post("/v1/events", json={"profile_id": "ada", "name": "signup",
                                             "traits": {"crm_id": "crm-1"}})  # fmt: skip
        assert r.status_code == 202, r.text

        async def failed() -> dict[str, Any] | None:
            items = (await c.get("/v1/deliveries", params={"profile_id": "ada"})).json()["items"]
            return items[0] if items and items[0]["status"] == "failed" else None

        delivery = await eventually(failed, "the webhook delivery to fail")
    assert "link-local" in delivery["last_error"]
    assert received.received == []
