"""Which errors are outages of a dependency (waited out, answered 503) rather than failures
of the work itself."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI

from shared.bus import Poison
from shared.outages import is_outage
from shared.problems import install_problem_handlers


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


async def test_a_request_meeting_an_outage_is_answered_503_not_500() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/down")
    async def down() -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        down_r = await client.get("/down")
        bug_r = await client.get("/bug")
    assert down_r.status_code == 503
    assert down_r.headers["content-type"] == "application/problem+json"
    assert down_r.headers["retry-after"] == "1"
    assert bug_r.status_code == 500
