"""Which handler errors are outages of a dependency (waited out) rather than bad messages."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy.exc

from shared.bus import Poison, is_outage


def _raised(exc: BaseException, wrapped_in: BaseException) -> BaseException:
    try:
        try:
            raise exc
        except BaseException as inner:
            raise wrapped_in from inner
    except BaseException as outer:
        return outer


def _status(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://designer/internal/journeys/revision")
    response = httpx.Response(code, request=request)
    return httpx.HTTPStatusError(f"{code}", request=request, response=response)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        TimeoutError(),
        httpx.ConnectError("All connection attempts failed"),
        _status(503),
        _raised(OSError("Connect call failed"), RuntimeError("while refreshing")),
        sqlalchemy.exc.DBAPIError("SELECT 1", None, Exception("gone"), connection_invalidated=True),
    ],
)
def test_unreachable_dependencies_are_outages(exc: BaseException) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("a bug"),
        Poison("undecodable JSON"),
        _status(500),
        _status(404),
        sqlalchemy.exc.IntegrityError("INSERT", None, Exception("duplicate key")),
        _raised(KeyError("journey_id"), ValueError("bad payload")),
    ],
)
def test_other_failures_are_not(exc: BaseException) -> None:
    assert not is_outage(exc)
