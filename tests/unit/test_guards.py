from __future__ import annotations

import pytest

from gateway.guards import _has_nul

PLAIN = {"raw_path": b"/v1/folders", "query_string": b"", "headers": []}


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (rb'{"a": "x"}', False),
        (rb'{"a": "\u0000"}', True),
        (rb'{"a": "\\u0000"}', False),  # an escaped backslash, then the text u0000
        (rb'{"a": "\\\u0000"}', True),
        (b'{"a": "\x00"}', True),
    ],
)
def test_nul_in_a_json_body(body: bytes, refused: bool) -> None:
    assert _has_nul(PLAIN, body) is refused


def test_nul_in_path_or_query() -> None:
    assert _has_nul({"raw_path": b"/v1/journeys/a%00", "query_string": b"", "headers": []}, b"")
    assert _has_nul(
        {"raw_path": b"/v1/journeys", "query_string": b"cursor=%00", "headers": []}, b""
    )
