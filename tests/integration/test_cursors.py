"""Crafted list cursors: every list endpoint answers 422 with the path ``cursor`` for any
cursor it did not hand out in that shape, and pages on with the ones it did."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

from tests.stack import Workspace


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode("utf-8", "surrogatepass")).decode()


TIME = "2026-01-01T00:00:00+00:00"
CRAFTED = [
    "!!!",
    "%%",
    "AAAA",
    "é",
    b64("not json"),
    b64('{"a": 1}'),
    b64("null"),
    b64("[]"),
    b64("[1, 2, 3]"),
    b64("[null]"),
    b64("[null, null]"),
    b64("[true, false]"),
    b64("[[], {}]"),
    b64("[99999999999999999999999999]"),
    b64("[-1]"),
    b64("[1e308]"),
    b64('["0001-01-01T00:00:00+01:00", "a"]'),  # before year 1 once in UTC
    b64('["9999-12-31T23:59:59-05:00", "a"]'),  # after year 9999 once in UTC
    b64('["2026-01-01T00:00:00", "a"]'),  # no offset
    b64('["2026-13-45T00:00:00+00:00", "a"]'),
    b64(f'["{TIME}", 12345678901234567890123]'),
    b64(f'["{TIME}", "a\\u0000b"]'),  # NUL, which text columns refuse
    b64(f'["{TIME}", "\\ud800"]'),  # a lone surrogate, not encodable
    b64(f'["{TIME}", "{"x" * 300}"]'),
    b64("[" * 300 + "]" * 300),
]


async def lists(c: httpx.AsyncClient) -> list[str]:
    """Every list endpoint of the API, with what it needs to exist."""
    stage = {"name": "S", "entry": {"event": "signup"}, "steps": [{"id": "e", "type": "end"}]}
    r = await c.post("/v1/journeys", json={"name": f"j-{uuid.uuid4().hex[:6]}", "stages": [stage]})
    assert r.status_code == 201, r.text
    journey_id = r.json()["id"]
    return [
        "/v1/api-keys",
        "/v1/folders",
        "/v1/journeys",
        "/v1/templates",
        "/v1/connectors",
        "/v1/event-triggers",
        "/v1/webhooks/sources",
        "/v1/deliveries",
        "/v1/profiles/ada/timeline",
        f"/v1/journeys/{journey_id}/profiles",
    ]


@pytest.mark.parametrize("cursor", CRAFTED, ids=range(len(CRAFTED)))
async def test_a_crafted_cursor_is_a_422_on_every_list(workspace: Workspace, cursor: str) -> None:
    async with workspace.client() as c:
        for path in await lists(c):
            r = await c.get(path, params={"cursor": cursor})
            assert r.status_code == 422, (path, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert [e["path"] for e in r.json()["errors"]] == ["cursor"], (path, r.text)


async def test_a_cursor_of_another_shape_of_list_is_refused_and_own_ones_page_on(
    workspace: Workspace,
) -> None:
    async with workspace.client() as c:
        for _ in range(3):
            r = await c.post("/v1/api-keys", json={"name": f"k-{uuid.uuid4().hex[:6]}",
                                                   "role": "viewer"})  # fmt: skip
            assert r.status_code == 201, r.text
        first = (await c.get("/v1/api-keys", params={"limit": 2})).json()
        assert first["next_cursor"]
        second = await c.get("/v1/api-keys", params={"limit": 2, "cursor": first["next_cursor"]})
        assert second.status_code == 200, second.text
        seen = [k["id"] for k in first["items"] + second.json()["items"]]
        assert len(seen) == len(set(seen)) == 4  # the admin key and three more
        timeline_cursor = b64(json.dumps([17]))  # the timeline's shape: one row id
        for path in ("/v1/api-keys", "/v1/deliveries"):
            r = await c.get(path, params={"cursor": timeline_cursor})
            assert r.status_code == 422, r.text
        r = await c.get("/v1/profiles/ada/timeline", params={"cursor": first["next_cursor"]})
        assert r.status_code == 422, r.text
