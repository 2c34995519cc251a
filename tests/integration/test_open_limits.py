"""Rate limits of what anyone may call, black-box through a gateway with small budgets that
trusts the loopback proxy (so each test is its own client through X-Forwarded-For):
tracking per token and per client, partner webhooks per client, failed authentications
per client, and a client cannot escape by writing its own X-Forwarded-For entries."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from itertools import count

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook

from shared import db
from shared.tracking import Mark, sign
from tests.conftest import Servers
from tests.stack import TRACKING_SECRET, Stack, Workspace, new_workspace, running_stack

SECRET = "whsec_" + base64.b64encode(b"partner-shared-secret-0123456789").decode()
ADDRESS = count(1)


@pytest.fixture(scope="module")
async def limited(servers: Servers) -> AsyncIterator[Stack]:
    async with running_stack(
        servers,
        trusted_proxies=["127.0.0.1/32"],
        open_rate_limit_per_s=0.001, open_rate_limit_burst=5,
        tracking_rate_limit_per_s=0.001, tracking_rate_limit_burst=3,
        auth_failure_rate_per_s=0.001, auth_failure_burst=3,
    ) as stack:  # fmt: skip
        yield stack


@pytest.fixture
async def ws(limited: Stack) -> Workspace:
    return await new_workspace(limited)


def client() -> str:
    """A fresh client address for the test (documentation range, one per call)."""
    n = next(ADDRESS)
    return f"198.51.{100 + n // 250}.{n % 250 + 1}"


def browser(stack: Stack, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.url, headers={"X-Forwarded-For": address})


async def recorded(stack: Stack, workspace_id: str, name: str) -> int:
    conn = await asyncpg.connect(db.asyncpg_dsn(stack.servers.database_url))
    try:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM gateway.event_inbox WHERE workspace_id = $1 AND name = $2",
            workspace_id, name,
        )  # fmt: skip
    finally:
        await conn.close()
    return found


def assert_too_many(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1


def signed(ws: Workspace, n: int, url: str | None = None) -> str:
    """A token of its own message (an open records once per message, a click once per link)."""
    mark = Mark(
        ws.id, f"p{n}", "j1", "email-1", f"act-{n}", url=url,
        issued_at=int(datetime.now(UTC).timestamp()),
    )  # fmt: skip
    return sign(mark, TRACKING_SECRET)


async def test_an_open_pixel_past_its_budget_is_a_pixel_that_records_nothing(
    limited: Stack, ws: Workspace
) -> None:
    async with browser(limited, client()) as b:
        answers = [await b.get(f"/t/o/{signed(ws, n)}") for n in range(7)]
    assert [r.status_code for r in answers] == [200] * 7
    assert {r.headers["content-type"] for r in answers} == {"image/gif"}
    assert len({r.content for r in answers}) == 1
    assert await recorded(limited, ws.id, "email_opened") == 5  # the client's budget


async def test_a_tracked_link_is_limited_per_token_whatever_the_client(
    limited: Stack, ws: Workspace
) -> None:
    link = f"/t/c/{signed(ws, 1, 'https://shop.example/')}"
    answers = []
    for _ in range(4):
        async with browser(limited, client()) as b:
            answers.append(await b.get(link))
    assert [r.status_code for r in answers[:3]] == [302] * 3  # the token's budget
    assert_too_many(answers[3])


async def test_tracked_links_are_limited_per_client_and_a_forged_header_does_not_help(
    limited: Stack, ws: Workspace
) -> None:
    def link(n: int) -> str:
        return f"/t/c/{signed(ws, n, 'https://shop.example/')}"

    me = client()
    async with browser(limited, me) as b:
        answers = [(await b.get(link(n))).status_code for n in range(5)]
        assert answers == [302] * 5
        assert_too_many(await b.get(link(5)))
        # Entries a client writes itself are further left than the proxy's: still "me".
        spoofed = await b.get(link(6), headers={"X-Forwarded-For": f"203.0.113.9, {me}"})
        assert_too_many(spoofed)
    async with browser(limited, client()) as other:
        assert (await other.get(link(7))).status_code == 302
    assert await recorded(limited, ws.id, "email_clicked") == 6


async def test_webhooks_are_limited_per_client(limited: Stack, ws: Workspace) -> None:
    async with ws.client() as c:
        r = await c.post("/v1/webhooks/sources", json={
            "name": "partner", "secret": SECRET,
            "mapping": {"profile_id": "$.user.id", "name": "$.type"}})  # fmt: skip
        assert r.status_code == 201, r.text
    source_id = r.json()["id"]

    def delivery() -> tuple[str, dict[str, str]]:
        data = json.dumps({"type": "paid", "user": {"id": "ada"}})
        msg_id, at = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
        return data, {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
                      "webhook-signature": Webhook(SECRET).sign(msg_id, at, data)}  # fmt: skip

    async with browser(limited, client()) as partner:
        for _ in range(5):
            data, headers = delivery()
            r = await partner.post(f"/hooks/{source_id}", content=data, headers=headers)
            assert r.status_code == 202, r.text
        data, headers = delivery()
        assert_too_many(await partner.post(f"/hooks/{source_id}", content=data, headers=headers))


async def test_bad_signatures_and_unknown_sources_run_out_a_clients_attempts(
    limited: Stack, ws: Workspace
) -> None:
    async with ws.client() as c:
        r = await c.post("/v1/webhooks/sources", json={
            "name": "partner", "secret": SECRET,
            "mapping": {"profile_id": "$.user.id", "name": "$.type"}})  # fmt: skip
    source_id = r.json()["id"]
    at = datetime.now(UTC)
    data = json.dumps({"type": "paid", "user": {"id": "ada"}})
    good = {"webhook-id": "m1", "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(SECRET).sign("m1", at, data)}  # fmt: skip
    bad = good | {"webhook-signature": "v1,AAAA"}
    async with browser(limited, client()) as eve:
        assert (await eve.post(f"/hooks/{source_id}", content=data, headers=bad)).status_code == 401
        assert (await eve.post("/hooks/no-such-source", content=data)).status_code == 404
        assert (await eve.post(f"/hooks/{source_id}", content=data, headers=bad)).status_code == 401
        # Out of attempts: refused before the (right) signature is even checked.
        assert_too_many(await eve.post(f"/hooks/{source_id}", content=data, headers=good))
    async with browser(limited, client()) as partner:  # the source itself is not locked
        r = await partner.post(f"/hooks/{source_id}", content=data, headers=good)
        assert r.status_code == 202, r.text


async def test_unknown_keys_and_bad_write_keys_run_out_a_clients_attempts(
    limited: Stack, ws: Workspace
) -> None:
    me = client()
    async with browser(limited, me) as eve:
        for n in range(3):
            r = await eve.get("/v1/me", headers={"Authorization": f"Bearer wp_guess-{n}"})
            assert r.status_code == 401, r.text
        right = {"Authorization": f"Bearer {ws.admin_key}"}
        assert_too_many(await eve.get("/v1/me", headers=right))
        spoofed = right | {"X-Forwarded-For": f"203.0.113.7, {me}"}
        assert_too_many(await eve.get("/v1/me", headers=spoofed))
        write_key = base64.b64encode(f"{ws.admin_key}:".encode()).decode()
        r = await eve.post("/segment/v1/track", headers={"Authorization": f"Basic {write_key}"},
                           json={"userId": "ada", "event": "Viewed"})  # fmt: skip
        assert_too_many(r)
    async with browser(limited, client()) as mallory:
        for _ in range(3):
            r = await mallory.post("/segment/v1/track", headers={"Authorization": "Basic !!"},
                                   json={"userId": "ada", "event": "Viewed"})  # fmt: skip
            assert r.status_code == 401, r.text
        r = await mallory.post("/segment/v1/track", headers={"Authorization": "Basic !!"},
                               json={"userId": "ada", "event": "Viewed"})  # fmt: skip
        assert_too_many(r)
    async with browser(limited, client()) as ada:
        r = await ada.get("/v1/me", headers={"Authorization": f"Bearer {ws.admin_key}"})
        assert r.status_code == 200, r.text
