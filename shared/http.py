"""The HTTP client of the hot paths (deliveries to providers, the services' own lookups):
aiohttp, chosen by measurement: ``python -m bench --only http`` posts the same JSON to a
local sink through both and prints each client's CPU per request (``bench/clients.py``;
the README's performance table has the figures). The gateway's proxy, off the hot path,
stays on httpx. One pooled session per purpose keeps connections alive.

A session for connectors gets an ``AddressPolicy``: each new connection resolves its host
once, through the policy, and connects only to the addresses the policy vetted. TLS still
verifies the certificate against the host name and sends it as SNI (aiohttp keeps the
URL's host for both; only the address it dials comes from here)."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.tracing import Trace

from shared.addresses import AddressPolicy, Refused, Unresolvable, literal


class VettingResolver(AbstractResolver):
    """Names to addresses through the policy: one lookup, every answer checked, only the
    checked ones handed to aiohttp. A refused name raises ``Refused`` (not an ``OSError``:
    a refusal must not look like an outage worth retrying)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self._policy.vetted(host, port)
        except Unresolvable as exc:
            raise OSError(f"{host} does not resolve: {exc}") from None
        return [
            ResolveResult(
                hostname=host,
                host=str(ip),
                port=port,
                proto=0,
                flags=socket.AI_NUMERICHOST,
                family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
            )
            for ip in addresses
        ]

    async def close(self) -> None:
        return None


class VettingConnector(aiohttp.TCPConnector):
    """aiohttp dials a literal IP host without asking the resolver; this checks what any
    resolution path yields (literals, cached answers) before a connection is opened."""

    def __init__(self, policy: AddressPolicy, **kwargs: Any) -> None:
        super().__init__(resolver=VettingResolver(policy), **kwargs)
        self._policy = policy

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Trace] | None = None
    ) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces)
        for result in results:
            ip = literal(result["host"])
            why = (
                f"{host} resolved to {result['host']!r}, not an address"
                if ip is None
                else self._policy.refusal(host, [ip])
            )
            if why is not None:
                raise Refused(why)
        return results


def session(
    max_connections: int = 100,
    timeout_s: float | None = None,
    policy: AddressPolicy | None = None,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientSession:
    """A pooled keep-alive session; create it inside the running event loop. With a
    ``policy``, connections go only to addresses it vetted (connectors' sessions).
    ``headers`` go on every request: the service token for a session to other services,
    never for one that reaches providers."""
    limits: dict[str, Any] = {"limit": max_connections, "limit_per_host": max_connections}
    connector = (
        aiohttp.TCPConnector(**limits) if policy is None else VettingConnector(policy, **limits)
    )
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, raise_for_status=False, headers=headers
    )


class Unavailable(Exception):
    """A service did not answer, or answered 502/503/504: an outage, not a failure."""


async def get_json(
    http: aiohttp.ClientSession, url: str, params: dict[str, str] | None = None
) -> tuple[int, Any]:
    """GET ``url``: (status, JSON body or None when not JSON). Unreachable -> Unavailable."""
    try:
        async with http.get(url, params=params) as response:
            status = response.status
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise Unavailable(f"{url} unreachable: {type(exc).__name__}: {exc}") from exc
    if status in (502, 503, 504):
        raise Unavailable(f"{url} answered {status}")
    return status, body
