"""The HTTP client of the hot paths (deliveries to providers, the services' own lookups):
aiohttp, chosen by measurement: ``python -m bench --only http`` posts the same JSON to a
local sink through both and prints each client's CPU per request (``bench/clients.py``;
the README's performance table has the figures). The gateway's proxy, off the hot path,
stays on httpx. One pooled session per purpose keeps connections alive."""

from __future__ import annotations

from typing import Any

import aiohttp


def session(
    max_connections: int = 100,
    timeout_s: float | None = None,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientSession:
    """A pooled keep-alive session; create it inside the running event loop. ``headers``
    go on every request: the service token for a session to other services, never for
    one that reaches providers."""
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections)
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
