"""Engagement from real feedback: an email goes out through an SMTP server, its open pixel
and a link are followed through the tracking routes, a purchase meets the goal; the
journey's analytics count sent -> opened -> clicked -> goal for the step and its channel."""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import Any

import httpx

from tests.helpers import eventually
from tests.sinks import run_mailbox
from tests.stack import Stack, Workspace

HTML = '<html><body>Hi <a href="https://shop.example/cart">your cart</a></body></html>'


async def email_journey(c: httpx.AsyncClient, port: int) -> str:
    smtp = {"host": "127.0.0.1", "port": port, "from": "shop@example.com"}
    r = await c.post("/v1/connectors", json={"name": f"c-{uuid.uuid4().hex[:6]}",
                                             "type": "smtp", "config": smtp})  # fmt: skip
    assert r.status_code == 201, r.text
    connector_id = r.json()["id"]
    r = await c.post("/v1/templates", json={"name": f"t-{uuid.uuid4().hex[:6]}", "channel": "email",
                     "status": "ready", "subject": "Hi", "body": "Hi", "html": HTML})  # fmt: skip
    assert r.status_code == 201, r.text
    journey = {
        "name": f"j-{uuid.uuid4().hex[:6]}",
        "goal": {"criteria": {"event": "purchase"}},
        "stages": [{"name": "In", "entry": {"event": "signup"},
                    "steps": [{"id": "hello", "type": "activation", "channel": "email",
                               "connector_id": connector_id, "template_id": r.json()["id"],
                               "to_attribute": "email"}]}],
    }  # fmt: skip
    r = await c.post("/v1/journeys", json=journey)
    assert r.status_code == 201, r.text
    jid: str = r.json()["id"]
    assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    return jid


async def test_sent_opened_clicked_goal_per_step_and_channel(
    workspace: Workspace, stack: Stack
) -> None:
    with contextlib.contextmanager(run_mailbox)() as mailbox:
        async with workspace.client() as c:
            jid = await email_journey(c, mailbox.port)
            for who in ("ada", "bob"):
                event = {"profile_id": who, "name": "signup",
                         "traits": {"email": f"{who}@example.org"}}  # fmt: skip
                assert (await c.post("/v1/events", json=event)).status_code == 202

            async def funnel(want: Any) -> dict[str, Any] | None:
                a = (await c.get(f"/v1/journeys/{jid}/analytics")).json()["engagement"]
                return a if a["steps"] and want(a["steps"][0]) else None

            await eventually(lambda: funnel(lambda s: s["sent"] == 2), "both emails sent")
            ada = next(m for m in mailbox.messages if "ada@" in str(m["To"]))
            html = ada.get_body(("html",)).get_content()  # type: ignore[union-attr]
            pixel = re.search(r'src="[^"]*(/t/o/[^"]+)"', html)
            click = re.search(r'href="[^"]*(/t/c/[^"]+)"', html)
            assert pixel is not None
            assert click is not None
            async with httpx.AsyncClient(base_url=stack.url) as browser:
                for _ in range(3):  # a mail client that loads the pixel again is one open
                    assert (await browser.get(pixel.group(1))).status_code == 200
                assert (await browser.get(click.group(1))).status_code == 302
            event = {"profile_id": "ada", "name": "purchase"}
            assert (await c.post("/v1/events", json=event)).status_code == 202
            found = await eventually(
                lambda: funnel(lambda s: s["goal"] == 1 and s["clicked"] == 1), "the goal"
            )

    (step,) = found["steps"]
    assert step == {
        "step_id": "hello", "channel": "email", "sent": 2, "opened": 1, "clicked": 1,
        "goal": 1, "open_rate": 50.0, "click_rate": 50.0, "goal_rate": 50.0,
    }  # fmt: skip
    assert found["channels"]["email"]["sent"] == 2
    assert found["channels"]["email"]["goal_rate"] == 50.0
