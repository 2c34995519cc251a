"""Tracking endpoints: a signed token records the open or click; a forged one records nothing."""

from __future__ import annotations

import asyncpg
import httpx

from shared import db
from shared.tracking import Mark, sign
from tests.stack import TRACKING_SECRET, Stack, Workspace


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


async def test_signed_tokens_record_and_forged_ones_do_not(
    workspace: Workspace, stack: Stack
) -> None:
    mark = Mark(workspace.id, "ada", "j1", "email-1", "act_1")
    link = Mark(**{**mark.__dict__, "url": "https://shop.example/cart"})
    forged = sign(Mark(workspace.id, "eve", "j1", "email-1", "act_1"), "not-the-secret")
    async with httpx.AsyncClient(base_url=stack.url) as browser:
        pixel = await browser.get(f"/t/o/{sign(mark, TRACKING_SECRET)}")
        click = await browser.get(f"/t/c/{sign(link, TRACKING_SECRET)}")
        fake_pixel = await browser.get(f"/t/o/{forged}")
        fake_click = await browser.get(f"/t/c/{forged}")
    assert pixel.status_code == 200
    assert pixel.headers["content-type"] == "image/gif"
    assert click.status_code == 302
    assert click.headers["location"] == "https://shop.example/cart"
    assert fake_pixel.status_code == 200  # a mail client sees a pixel either way
    assert fake_click.status_code == 404
    assert await tracked(stack, workspace.id) == ["email_opened", "email_clicked"]
