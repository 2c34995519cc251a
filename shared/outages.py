"""Telling an outage of a dependency (the database, NATS, another service cannot be
reached) from a failure of the work itself: an outage is waited out (a message is retried
however long it lasts, a request is answered 503), a failure is not."""

from __future__ import annotations

import aiohttp
import asyncpg
import httpx
import nats.errors
import nats.js.errors
import sqlalchemy.exc

from shared import http

# What a dependency that cannot be reached raises (TimeoutError and ConnectionError are
# OSErrors); a chain of causes is searched, since libraries wrap them.
_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,
    httpx.TransportError,
    aiohttp.ClientConnectionError,
    http.Unavailable,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    sqlalchemy.exc.DisconnectionError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.TimeoutError,
    nats.js.errors.ServiceUnavailableError,
)
_UNAVAILABLE = {502, 503, 504}


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says that something the work needs could not be reached, rather
    than that the work itself failed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _OUTAGES):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if (
            isinstance(current, httpx.HTTPStatusError)
            and current.response.status_code in _UNAVAILABLE
        ):
            return True
        current = current.__cause__ or current.__context__
    return False
