"""Rate limits of the gateway, on the wall clock (also under the virtual clock: a rate limit
protects real resources in real time).

Per API key for /v1 (``RateLimiter`` in ``authorize``), and on what anyone may call without
a key (``OpenLimits``): the tracking routes ``/t/*`` and partner webhooks ``/hooks/*`` per
client address and per token or source, and failed authentications (unknown API keys,
bad Segment write keys, unknown webhook sources and bad signatures) per client address.
An address over its failure budget is refused before its next key is
even looked up, so guessing keys costs the designer nothing.

The client address is the socket peer. ``X-Forwarded-For`` is read only when the peer is
one of ``trusted_proxies``: walking it from the right (the entry the nearest proxy
appended), the first address that is not a trusted proxy is the client; entries further
left were written by the client itself and are never believed. No trusted proxies (the
default): the header is ignored.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request

from shared.problems import ProblemError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
OPEN_LIMITS = "open_limits"


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one token; returns 0 if allowed, else seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens = self._tokens(key, now)
        if tokens >= 1:
            self._store(key, tokens - 1, now)
            return 0.0
        self._store(key, tokens, now)
        return (1 - tokens) / self._rate

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` has a token, spending none (0: it has one now)."""
        now = time.monotonic() if now is None else now
        tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1 else (1 - tokens) / self._rate

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self._burst, now))
        return min(self._burst, tokens + (now - at) * self._rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            self._buckets.clear()  # bounded memory; a reset only grants a fresh burst
        self._buckets[key] = (tokens, now)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def too_many(detail: str, wait: float) -> ProblemError:
    return ProblemError(
        429, "Too many requests", detail, headers={"Retry-After": retry_after_header(wait)}
    )


def client_address(request: Request, trusted: Sequence[Network]) -> str:
    """Who is calling: the socket peer, or the client a trusted proxy names (see above)."""
    peer = request.client.host if request.client else ""
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _is_address(hop):
            return peer  # a hop we cannot read: count the proxy, never a made-up client
        if not _trusted(hop, trusted):
            return hop
    return peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


class OpenLimits:
    """The limits of the routes reachable without an API key, and of failed keys."""

    def __init__(
        self,
        registry: CollectorRegistry,
        trusted_proxies: Sequence[Network],
        per_address: RateLimiter,
        per_token: RateLimiter,
        per_source: RateLimiter,
        failures: RateLimiter,
    ) -> None:
        self._trusted = tuple(trusted_proxies)
        self._per_address = per_address
        self._per_token = per_token
        self._per_source = per_source
        self._failures = failures
        self.limited = Counter(
            "waypost_gateway_rate_limited_total",
            "Requests refused (or pixels not recorded) by a rate limit, by limit",
            ["limit"],
            registry=registry,
        )
        self.failed = Counter(
            "waypost_gateway_auth_failures_total",
            "Failed authentications (unknown keys, bad write keys, unknown sources, bad "
            "signatures), by kind",
            ["kind"],
            registry=registry,
        )

    def client(self, request: Request) -> str:
        return client_address(request, self._trusted)

    def hit(self, request: Request, prefix: str, token: str) -> float:
        """One request to an open route (``prefix`` "t" or "hooks") for ``token`` (the
        tracking token, the source id): 0 when allowed, else seconds to wait. Both the
        client's budget and the token's are spent, so neither one address nor one token
        can flood."""
        by_client = self._per_address.take(f"{prefix}:{self.client(request)}")
        limiter = self._per_source if prefix == "hooks" else self._per_token
        by_token = limiter.take(f"{prefix}:{token}")
        wait = max(by_client, by_token)
        if wait > 0:
            by_what = "webhook_source" if prefix == "hooks" else "tracking_token"
            self.limited.labels("client" if by_client > 0 else by_what).inc()
        return wait

    def refuse_if_failing(self, request: Request) -> None:
        """429 when the client has no failed attempts left. Failures count per client only:
        counting them per webhook source or per key would let anyone who knows a source id
        lock its partner out with bad signatures (and a signature cannot be guessed)."""
        wait = self._failures.wait(f"client:{self.client(request)}")
        if wait > 0:
            self.limited.labels("auth_failures").inc()
            raise too_many("too many failed authentications; try again later", wait)

    def failure(self, request: Request, kind: str) -> None:
        """Counts one failed authentication against the client."""
        self.failed.labels(kind).inc()
        self._failures.take(f"client:{self.client(request)}")
