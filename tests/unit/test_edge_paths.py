"""The edge refuses every path that a hop could read as another path, and forwards only
the path it matched."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.guards import path_refusal
from gateway.proxy import upstream_url

REFUSED = {
    "/v1/journeys/x/../../api-keys": "dot_segment",
    "/v1/journeys/x/..": "dot_segment",
    "/v1/./api-keys": "dot_segment",
    "/v1/journeys/x/%2e%2e/%2E%2E/api-keys": "encoded",
    "/v1/journeys/x/.%2E/api-keys": "encoded",
    "/v1/journeys/x%2f..%2f..%2fapi-keys": "encoded",
    "/v1/journeys/x%2F..%2Fapi-keys": "encoded",
    "/v1/journeys/x%5c..%5capi-keys": "encoded",
    "/v1/journeys/x/%252e%252e/api-keys": "encoded",
    "/v1/journeys/x/%25252e": "encoded",
    "/v1/journeys/x/%25%32%65%25%32%65/api-keys": "encoded",
    "/v1/journeys/x%25%32%66..%25%32%66api-keys": "encoded",
    "/v1/journeys/x%25%35%63": "encoded",
    "/v1/journeys/x\\..\\..\\api-keys": "backslash",
    "/v1//api-keys": "empty_segment",
    "//v1/api-keys": "empty_segment",
    "/hooks/src/../../v1/api-keys": "dot_segment",
    "/t/o/..%2f..%2fv1%2fapi-keys": "encoded",
    "/segment/v1/../../v1/workspace/settings": "dot_segment",
    "v1/api-keys": "not_absolute",
}
ACCEPTED = [
    "/v1/journeys",
    "/v1/journeys/",
    "/v1/journeys/a%20b",
    "/v1/journeys/j.1/versions/2",
    "/v1/profiles/ada..lovelace",
    "/v1/profiles/%C3%A9",
    "/t/o/abc.def",
    "/v1/profiles/100%25",
    "/v1/profiles/50%25off",
    "/",
]


@pytest.mark.parametrize(("path", "kind"), REFUSED.items())
def test_paths_that_could_name_another_path_are_refused(path: str, kind: str) -> None:
    refusal = path_refusal(path.encode())
    assert refusal is not None
    assert refusal.kind == kind


@pytest.mark.parametrize("path", ACCEPTED)
def test_ordinary_paths_pass(path: str) -> None:
    assert path_refusal(path.encode()) is None


def _request(raw_path: bytes, path: str, query: bytes = b"") -> Request:
    scope = {
        "type": "http", "method": "GET", "headers": [], "path": path,
        "raw_path": raw_path, "query_string": query,
    }  # fmt: skip
    return Request(scope)


def test_the_forwarded_path_is_the_matched_one_as_sent() -> None:
    url = upstream_url(
        "http://designer:8081", _request(b"/v1/journeys/a%20b", "/v1/journeys/a b", b"x=1")
    )
    assert url is not None
    assert url.raw_path == b"/v1/journeys/a%20b?x=1"


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/v1/journeys/x/../../api-keys", "/v1/journeys/x/../../api-keys"),  # httpx normalises
        (b"/v1/api-keys", "/v1/journeys"),  # not what was matched
    ],
)
def test_a_path_that_would_change_on_the_way_is_not_forwarded(raw: bytes, path: str) -> None:
    assert upstream_url("http://designer:8081", _request(raw, path)) is None
