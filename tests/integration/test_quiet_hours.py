"""Quiet hours on the virtual clock, end to end through the scheduler: a message requested
inside the window is held and nothing is sent; when the clock passes the window's opening
the scheduler releases it (``timers.release``) and it is delivered once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from nats.aio.client import Client as NATS

from services.activator import policy
from services.activator.schemas import QuietHours
from shared.settings import ClockMode
from tests.conftest import Servers
from tests.helpers import eventually, serving
from tests.integration.test_activator import connector, find, publish, request, template
from tests.sinks import HttpSink
from tests.stack import Stack, new_workspace, running_stack, service_headers

SPREAD = timedelta(seconds=600)  # the activator's default quiet_hours_spread_s
RETRY_AFTER_S = 180


@pytest.fixture(scope="module")
async def virtual(servers: Servers) -> AsyncIterator[Stack]:
    async with running_stack(servers, clock=ClockMode.VIRTUAL) as stack:
        yield stack


@pytest.fixture
async def sink() -> AsyncIterator[tuple[HttpSink, str]]:
    state = HttpSink()
    async with serving(state.app()) as url:
        yield state, f"{url}/send"


@dataclass
class Flaky:
    """A provider that answers 503 (retry after three minutes) ``failures`` times, then
    202; records every request."""

    failures: int = 1
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, str]]:
    state = Flaky()
    app = FastAPI()

    @app.post("/push")
    async def push(request: Request) -> Response:
        state.requests.append((request.headers["idempotency-key"], await request.json()))
        if state.failures > 0:
            state.failures -= 1
            return Response(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        return Response(status_code=202)

    async with serving(app) as url:
        yield state, f"{url}/push"


async def test_a_message_held_by_quiet_hours_is_released_by_the_scheduler_once(
    virtual: Stack, nc: NATS, sink: tuple[HttpSink, str]
) -> None:
    received, url = sink
    ws = await new_workspace(virtual)
    async with ws.client() as c:
        # The clock at the real time: any other activator sharing the bus (on the real
        # clock) then takes the same decision as this stack's.
        r = await c.post("/v1/admin/clock", json={"set": datetime.now(UTC).isoformat()})
        assert r.status_code == 200, r.text
        now = datetime.fromisoformat(r.json()["now"])
        quiet = QuietHours(
            start=(now - timedelta(hours=1)).strftime("%H:%M"),
            end=(now + timedelta(hours=2)).strftime("%H:%M"),
        )
        r = await c.put("/v1/workspace/settings", json={"quiet_hours": quiet.model_dump()})
        assert r.status_code == 200, r.text
        route = (
            await connector(c, "push_http", {"url": url}),
            await template(c, "push", "Hi {{ profile.first_name }}"),
        )
        ask = request(ws.id, route, channel="push", to="device-1", profile=f"p-{uuid.uuid4().hex}")
        aid = ask["activation_id"]
        await publish(nc, ask)

        async def stored() -> dict[str, Any] | None:
            return await find(c, aid)

        held = await eventually(stored, "the held delivery")
        assert (held["status"], held["attempts"]) == ("held", 0)
        opening = policy.window_opening(now, quiet, UTC)
        assert opening is not None
        due = datetime.fromisoformat(held["next_attempt_at"])
        assert opening <= due < opening + SPREAD
        stats = await _timers(virtual, ws.id, lambda s: s["pending"] == 1)
        assert datetime.fromisoformat(stats["next_due_at"]) == due
        assert received.received == []

        # Just before the release nothing moves; past it, the scheduler releases the hold.
        before = due - now - timedelta(seconds=1)
        await c.post("/v1/admin/clock", json={"advance": f"PT{before.total_seconds():.3f}S"})
        assert (await find(c, aid) or {})["status"] == "held"
        await c.post("/v1/admin/clock", json={"advance": "PT2S"})

        async def sent() -> dict[str, Any] | None:
            found = await find(c, aid)
            return found if found and found["status"] == "sent" else None

        delivered = await eventually(sent, "the released message to be sent")
        await _timers(virtual, ws.id, lambda s: s["pending"] == 0)
    assert delivered["attempts"] == 1
    assert [m["activation_id"] for m in received.received] == [aid]
    assert received.received[0]["body"] == "Hi Ada"


async def test_a_retry_that_would_fall_in_quiet_hours_is_held_then_sent_with_the_same_key(
    virtual: Stack, nc: NATS, flaky: tuple[Flaky, str]
) -> None:
    provider, url = flaky
    ws = await new_workspace(virtual)
    async with ws.client() as c:
        # The window opens one to two minutes from now; the provider's first answer asks
        # for a retry in three, which falls inside it.
        r = await c.post("/v1/admin/clock", json={"set": datetime.now(UTC).isoformat()})
        assert r.status_code == 200, r.text
        now = datetime.fromisoformat(r.json()["now"])
        start = (now + timedelta(minutes=2)).replace(second=0, microsecond=0)
        quiet = QuietHours(
            start=start.strftime("%H:%M"), end=(start + timedelta(hours=1)).strftime("%H:%M")
        )
        r = await c.put("/v1/workspace/settings", json={"quiet_hours": quiet.model_dump()})
        assert r.status_code == 200, r.text
        route = (
            await connector(c, "push_http", {"url": url}),
            await template(c, "push", "Hi {{ profile.first_name }}"),
        )
        ask = request(ws.id, route, channel="push", to="device-1", profile=f"p-{uuid.uuid4().hex}")
        aid = ask["activation_id"]
        await publish(nc, ask)

        async def held() -> dict[str, Any] | None:
            found = await find(c, aid)
            return found if found and found["status"] == "held" else None

        after_failure = await eventually(held, "the failed attempt's retry to be held")
        assert after_failure["attempts"] == 1
        assert "HTTP 503" in after_failure["last_error"]
        due = datetime.fromisoformat(after_failure["next_attempt_at"])
        assert start + timedelta(hours=1) <= due < start + timedelta(hours=1) + SPREAD
        stats = await _timers(virtual, ws.id, lambda s: s["pending"] == 1)
        assert datetime.fromisoformat(stats["next_due_at"]) == due
        assert len(provider.requests) == 1

        await c.post("/v1/admin/clock", json={"set": (due + timedelta(seconds=1)).isoformat()})

        async def sent() -> dict[str, Any] | None:
            found = await find(c, aid)
            return found if found and found["status"] == "sent" else None

        delivered = await eventually(sent, "the released retry to be sent")
    assert delivered["attempts"] == 2
    assert [key for key, _body in provider.requests] == [aid, aid]


async def _timers(stack: Stack, workspace_id: str, ok: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=stack.service_urls["scheduler"], headers=service_headers()
    ) as scheduler:

        async def probe() -> dict[str, Any] | None:
            r = await scheduler.get("/internal/timers/stats", params={"workspace_id": workspace_id})
            stats: dict[str, Any] = r.json()
            return stats if ok(stats) else None

        return await eventually(probe, "the scheduler's timers of the workspace")
