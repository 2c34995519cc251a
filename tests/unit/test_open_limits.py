"""Who the client is (the socket peer, or what a trusted proxy says) and the buckets of
the open routes."""

from __future__ import annotations

import ipaddress

import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from gateway.ratelimit import OpenLimits, RateLimiter, client_address
from shared.problems import ProblemError

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "client": (peer, 5555), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("198.51.100.7", [], "198.51.100.7"),
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),  # not from a proxy: ignored
        ("10.1.2.3", [], "10.1.2.3"),
        ("10.1.2.3", ["203.0.113.9"], "203.0.113.9"),
        ("10.1.2.3", ["1.2.3.4, 203.0.113.9"], "203.0.113.9"),  # the client wrote 1.2.3.4
        ("10.1.2.3", ["203.0.113.9, 10.9.9.9"], "203.0.113.9"),  # two proxies
        ("10.1.2.3", ["1.2.3.4", "203.0.113.9, 10.9.9.9"], "203.0.113.9"),  # two headers
        ("10.1.2.3", ["10.4.4.4, 10.9.9.9"], "10.1.2.3"),  # only proxies: the peer
        ("10.1.2.3", ["1.2.3.4, garbage"], "10.1.2.3"),  # unreadable: never a made-up one
        ("10.1.2.3", ["2001:db8::5"], "2001:db8::5"),
        ("fd00::1", ["203.0.113.9"], "203.0.113.9"),
    ],
)
def test_the_client_is_the_peer_or_the_first_untrusted_hop_from_the_right(
    peer: str, forwarded: list[str], client: str
) -> None:
    assert client_address(request(peer, *forwarded), PROXIES) == client


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert client_address(request("127.0.0.1", "203.0.113.9"), []) == "127.0.0.1"


def test_wait_spends_nothing_and_take_does() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=2)
    assert limiter.wait("k", now=0.0) == 0.0
    assert limiter.wait("k", now=0.0) == 0.0
    assert limiter.take("k", now=0.0) == 0.0
    assert limiter.take("k", now=0.0) == 0.0
    assert limiter.wait("k", now=0.0) == pytest.approx(1.0)
    assert limiter.take("k", now=0.0) == pytest.approx(1.0)
    assert limiter.wait("k", now=1.0) == 0.0


def limits() -> OpenLimits:
    return OpenLimits(
        CollectorRegistry(), PROXIES,
        per_address=RateLimiter(0.001, 4), per_token=RateLimiter(0.001, 2),
        per_source=RateLimiter(0.001, 3), failures=RateLimiter(0.001, 2),
    )  # fmt: skip


def test_a_token_and_a_client_each_have_a_budget() -> None:
    open_limits = limits()
    ada, bob = request("10.0.0.1", "203.0.113.1"), request("10.0.0.1", "203.0.113.2")
    assert [open_limits.hit(ada, "t", "tok-1") > 0 for _ in range(3)] == [False, False, True]
    assert open_limits.hit(bob, "t", "tok-1") > 0  # the token is spent, whoever asks
    assert open_limits.hit(bob, "t", "tok-2") == 0
    # The client's budget for webhooks is its own: tracking hits did not spend it.
    hooks = [open_limits.hit(ada, "hooks", f"src-{i}") > 0 for i in range(5)]
    assert hooks == [False, False, False, False, True]


def test_a_source_has_its_own_budget_over_every_client() -> None:
    open_limits = limits()
    hits = [
        open_limits.hit(request("10.0.0.1", f"203.0.113.{i}"), "hooks", "src") for i in range(4)
    ]
    assert [wait > 0 for wait in hits] == [False, False, False, True]


def test_failures_are_counted_per_client() -> None:
    open_limits = limits()
    eve, ada = request("10.0.0.1", "203.0.113.66"), request("10.0.0.1", "203.0.113.1")
    for _ in range(2):
        open_limits.refuse_if_failing(eve)
        open_limits.failure(eve, "api_key")
    with pytest.raises(ProblemError, match="too many failed") as caught:
        open_limits.refuse_if_failing(eve)
    assert caught.value.status == 429
    assert int(caught.value.headers["Retry-After"]) >= 1
    open_limits.refuse_if_failing(ada)


def test_trusted_proxies_come_from_the_environment_as_a_json_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.settings import GatewaySettings

    assert GatewaySettings().trusted_proxies == []
    monkeypatch.setenv("WAYPOST_TRUSTED_PROXIES", '["10.0.0.0/8", "192.0.2.7", "fd00::/8"]')
    trusted = GatewaySettings().trusted_proxies
    assert [str(n) for n in trusted] == ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]
    assert client_address(request("192.0.2.7", "203.0.113.5"), trusted) == "203.0.113.5"
