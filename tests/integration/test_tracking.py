"""Tracking endpoints: a signed token records the open or click once; a forged, crafted,
expired or erased one records nothing, and none of them makes the gateway fail."""

from __future__ import annotations

import contextlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from shared import db
from shared.tracking import Mark, sign, verify
from tests.helpers import eventually, serving
from tests.sinks import HttpSink, run_mailbox
from tests.stack import TRACKING_SECRET, Stack, Workspace, new_workspace


async def tracked(stack: Stack, workspace_id: str) -> list[str]:
    dsn = db.asyncpg_dsn(stack.servers.database_url)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT name FROM gateway.event_inbox WHERE workspace_id = $1 ORDER BY seq",
            workspace_id,
        )
    finally:
        await conn.close()
    return [r["name"] for r in rows]


def mark(workspace_id: str, *, age: timedelta = timedelta(0), **changes: str) -> Mark:
    issued = int((datetime.now(UTC) - age).timestamp())
    fields = {"workspace_id": workspace_id, "profile_id": "ada", "journey_id": "j1",
              "step_id": "email-1", "activation_id": f"act_{uuid.uuid4().hex}"}  # fmt: skip
    return Mark(**(fields | changes), issued_at=issued)


def link(m: Mark, url: str) -> str:
    return sign(Mark(**{**m.__dict__, "url": url}), TRACKING_SECRET)


async def test_signed_tokens_record_and_forged_ones_do_not(
    workspace: Workspace, stack: Stack
) -> None:
    m = mark(workspace.id)
    forged = sign(mark(workspace.id, profile_id="eve"), "not-the-secret")
    async with httpx.AsyncClient(base_url=stack.url) as browser:
        pixel = await browser.get(f"/t/o/{sign(m, TRACKING_SECRET)}")
        click = await browser.get(f"/t/c/{link(m, 'https://shop.example/cart')}")
        fake_pixel = await browser.get(f"/t/o/{forged}")
        fake_click = await browser.get(f"/t/c/{forged}")
    assert pixel.status_code == 200
    assert pixel.headers["content-type"] == "image/gif"
    assert click.status_code == 302
    assert click.headers["location"] == "https://shop.example/cart"
    assert fake_pixel.status_code == 200  # a mail client sees a pixel either way
    assert fake_click.status_code == 404
    assert fake_click.headers["content-type"] == "application/problem+json"
    assert await tracked(stack, workspace.id) == ["email_opened", "email_clicked"]


async def test_an_email_opened_again_and_again_records_one_open_and_one_click_per_link(
    workspace: Workspace, stack: Stack
) -> None:
    first, second = mark(workspace.id), mark(workspace.id)
    async with httpx.AsyncClient(base_url=stack.url) as browser:
        for _ in range(5):
            assert (await browser.get(f"/t/o/{sign(first, TRACKING_SECRET)}")).status_code == 200
        for url in ["https://shop.example/a", "https://shop.example/b", "https://shop.example/a"]:
            assert (await browser.get(f"/t/c/{link(first, url)}")).status_code == 302
        # Another message to the same profile is another open.
        assert (await browser.get(f"/t/o/{sign(second, TRACKING_SECRET)}")).status_code == 200
    assert sorted(await tracked(stack, workspace.id)) == [
        "email_clicked", "email_clicked", "email_opened", "email_opened",
    ]  # fmt: skip


async def test_old_tokens_and_tokens_without_a_time_record_nothing(
    workspace: Workspace, stack: Stack
) -> None:
    old = mark(workspace.id, age=timedelta(days=91))
    legacy = Mark(workspace.id, "ada", "j1", "email-1", f"act_{uuid.uuid4().hex}")
    recent = mark(workspace.id, age=timedelta(days=89))
    async with httpx.AsyncClient(base_url=stack.url) as browser:
        for m in (old, legacy):
            pixel = await browser.get(f"/t/o/{sign(m, TRACKING_SECRET)}")
            assert (pixel.status_code, pixel.content[:3]) == (200, b"GIF")
            # The link was ours and signed: it still leads where it said, unrecorded.
            click = await browser.get(f"/t/c/{link(m, 'https://shop.example/')}")
            assert (click.status_code, click.headers["location"]) == (302, "https://shop.example/")
        assert (await browser.get(f"/t/o/{sign(recent, TRACKING_SECRET)}")).status_code == 200
    assert await tracked(stack, workspace.id) == ["email_opened"]


@pytest.mark.parametrize(
    "token",
    [
        "é.é",
        "abc.\u00ff\u00fe",
        "\u2603",
        "eyJ4IjoxfQ.😀😀😀",
        "." * 50,
        "a" * 4000,
        "%ff.%c3%28",
        "eyJ4IjoxfQ.AAAAAAAAAAAAAAAAAAAAAA",
    ],
)
async def test_crafted_tokens_answer_a_pixel_or_404_never_an_error(
    token: str, workspace: Workspace, stack: Stack
) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as browser:
        pixel = await browser.get(f"/t/o/{token}")
        click = await browser.get(f"/t/c/{token}")
    assert (pixel.status_code, pixel.headers["content-type"]) == (200, "image/gif")
    assert click.status_code == 404
    assert await tracked(stack, workspace.id) == []


async def _live_journey(c: httpx.AsyncClient, channel: str, connector: dict[str, Any],
                        template: dict[str, Any], to: str) -> str:  # fmt: skip
    r = await c.post("/v1/connectors", json={"name": f"c-{uuid.uuid4().hex[:6]}", **connector})
    assert r.status_code == 201, r.text
    connector_id = r.json()["id"]
    r = await c.post(
        "/v1/templates",
        json={"name": f"t-{uuid.uuid4().hex[:6]}", "channel": channel, "status": "ready",
              **template},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    journey = {
        "name": f"j-{uuid.uuid4().hex[:6]}",
        "stages": [{"name": "In", "entry": {"event": "signup"},
                    "steps": [{"id": "send", "type": "activation", "channel": channel,
                               "connector_id": connector_id, "template_id": r.json()["id"],
                               "to_attribute": to}]}],
    }  # fmt: skip
    r = await c.post("/v1/journeys", json=journey)
    assert r.status_code == 201, r.text
    jid: str = r.json()["id"]
    assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    return jid


async def _sent(c: httpx.AsyncClient, journey_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        items = (await c.get("/v1/deliveries", params={"journey_id": journey_id})).json()["items"]
        if items and items[0]["status"] == "failed":
            raise AssertionError(items[0]["reason"])
        return items[0] if items and items[0]["status"] == "sent" else None

    return await eventually(probe, f"the message of {journey_id} to be sent")


async def test_a_large_pathological_email_is_tracked_and_holds_no_one_back(
    workspace: Workspace, stack: Stack
) -> None:
    """390 KB of unclosed <a tags (the old link pattern needed minutes for 60 KB): the email
    goes out with its links rewritten, and another workspace's SMS goes out too."""
    html = (
        "<html><body>" + "<a " * 130_000
        + '<a href="https://shop.example/end?a=1&amp;b=2">end</a></body></html>'
    )  # fmt: skip
    sink = HttpSink()
    other = await new_workspace(stack)
    with contextlib.contextmanager(run_mailbox)() as mailbox:
        async with serving(sink.app()) as sms_url, workspace.client() as c, other.client() as o:
            email_journey = await _live_journey(
                c, "email",
                {"type": "smtp", "config": {"host": "127.0.0.1", "port": mailbox.port,
                                            "from": "shop@example.com"}},
                {"subject": "Hi", "body": "Hi", "html": html}, "email",
            )  # fmt: skip
            sms_journey = await _live_journey(
                o, "sms", {"type": "sms_http", "config": {"url": f"{sms_url}/send"}},
                {"body": "Hi {{ profile.first_name }}"}, "phone",
            )  # fmt: skip
            ada = {"profile_id": "ada", "name": "signup", "traits": {"email": "ada@example.org"}}
            r = await c.post("/v1/events", json=ada)
            assert r.status_code == 202, r.text
            bob = {"profile_id": "bob", "name": "signup",
                   "traits": {"phone": "+15550100", "first_name": "Bob"}}  # fmt: skip
            r = await o.post("/v1/events", json=bob)
            assert r.status_code == 202, r.text
            await _sent(o, sms_journey)
            await _sent(c, email_journey)
        assert [m["body"] for m in sink.received] == ["Hi Bob"]
        (email,) = mailbox.messages
    sent_html = email.get_body(("html",)).get_content()  # type: ignore[union-attr]
    clicks = re.findall(r'href="([^"]+/t/c/[^"]+)"', sent_html)
    assert len(clicks) == 1
    token = clicks[0].rsplit("/t/c/", 1)[1]
    mark = verify(token, TRACKING_SECRET)
    assert mark is not None
    assert mark.url == "https://shop.example/end?a=1&b=2"
    assert sent_html.count("<a ") == 130_001
    assert "/t/o/" in sent_html
