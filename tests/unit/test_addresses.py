"""Which addresses connectors may reach: public unicast only, IPv4 and IPv6 alike."""

from __future__ import annotations

import ipaddress

import pytest

from shared.addresses import literal, non_public, refusal, resolve
from shared.connectors import (
    ConnectorType,
    Destination,
    DestinationGuard,
    destination,
    parse_config,
)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # carrier-grade NAT
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved, which Python files under private
        ("255.255.255.255", "private"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
    ],
)
def test_non_public_addresses_are_named(address: str, why: str) -> None:
    assert non_public(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert non_public(ipaddress.ip_address(address)) is None


def test_literals_are_recognised_with_or_without_brackets() -> None:
    assert literal("[::1]") == ipaddress.ip_address("::1")
    assert literal("10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert literal("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert literal("example.com") is None


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    found = await resolve("localhost", 80)
    assert found
    assert all(non_public(ip) == "loopback" for ip in found)
    why = refusal("localhost", found) or ""
    assert why.startswith("localhost (")
    assert "(loopback)" in why
    mixed = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.7")]
    assert refusal("shop.example", mixed) == (
        "shop.example (10.0.0.7) is not a public address (private); "
        "connectors reach public ones only"
    )
    assert refusal("shop.example", mixed[:1]) is None


async def test_a_host_written_as_a_number_is_resolved_like_any_name() -> None:
    # 2130706433 is 127.0.0.1: the resolver, not a string check, says where it points.
    (found,) = await resolve("2130706433", 80)
    assert non_public(found) == "loopback"


def test_each_connector_type_names_its_destination_field() -> None:
    smtp = parse_config(ConnectorType.SMTP, {"host": "mx.example", "port": 587, "from": "a@b.c"})
    hook = parse_config(ConnectorType.WEBHOOK, {"url": "https://[::1]/h", "secret": "s"})
    sms = parse_config(ConnectorType.SMS_HTTP, {"url": "http://sms.example:8080/send"})
    assert destination(smtp) == Destination("host", "mx.example", 587)
    assert destination(hook) == Destination("url", "::1", 443)
    assert destination(sms) == Destination("url", "sms.example", 8080)


async def test_the_guard_refuses_private_destinations_and_remembers_answers() -> None:
    now = [0.0]
    guard = DestinationGuard(cache_s=5.0, now=lambda: now[0])
    loopback = parse_config(ConnectorType.SMS_HTTP, {"url": "http://127.0.0.1:9/send"})
    public = parse_config(ConnectorType.SMS_HTTP, {"url": "https://93.184.216.34/send"})
    why = await guard.refusal(loopback)
    assert why == "127.0.0.1 is not a public address (loopback); connectors reach public ones only"
    assert await guard.refusal(public) is None
    now[0] = 10.0
    assert await guard.refusal(public) is None  # looked up again after cache_s


def test_a_url_with_a_bad_port_is_a_validation_error() -> None:
    with pytest.raises(ValueError, match="invalid port"):
        parse_config(ConnectorType.SMS_HTTP, {"url": "http://sms.example:99999/send"})
