"""The activator's reads from the designer: what is cached, what a missing or unreachable
designer means."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from services.activator.designer import Designer, DesignerUnavailable, Missing
from shared import http
from shared.connectors import ConnectorType, HttpConfig
from waypost.embedded import free_port

WS = "/internal/workspaces/ws1"


class FakeDesigner:
    """The designer's internal API on a loopback port, counting the requests it answers."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.now = 0.0
        self.port = free_port()
        self.answering = asyncio.Event()
        self.answering.set()
        self.asked = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append(request.path)
        self.asked.set()
        await self.answering.wait()
        answers: dict[str, Any] = {
            f"{WS}/connectors/c1": {"id": "c1", "type": "sms_http",
                                    "config": {"url": "https://sms.example/send", "token": "t"}},
            f"{WS}/connectors/c2": {"id": "c2", "type": "sms_http", "config": {"url": "ftp://x"}},
            f"{WS}/templates/t1": {"id": "t1", "subject": None, "body": "Hi", "html": None},
            f"{WS}/settings": {"frequency_caps": [{"channel": "sms", "max": 1, "per": "P1D"}],
                               "quiet_hours": None, "consent_mode": "opt_in",
                               "default_timezone": "UTC"},
        }  # fmt: skip
        if request.path == f"{WS}/templates/boom":
            return web.Response(status=500)
        found = answers.get(request.path)
        return web.json_response(found) if found else web.Response(status=404)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeDesigner, Designer]]:
    state = FakeDesigner()
    await state.start()
    try:
        async with http.session() as client:
            url = f"http://127.0.0.1:{state.port}/"
            yield state, Designer(client, url, cache_s=5.0, clock=lambda: state.now)
    finally:
        await state.stop()


async def test_a_wave_of_lookups_on_a_cold_entry_asks_the_designer_once(
    fake: tuple[FakeDesigner, Designer],
) -> None:
    state, designer = fake
    state.answering.clear()  # every lookup of the wave is under way before one answers
    wave = asyncio.gather(*(designer.connector("ws1", "c1") for _ in range(50)))
    await state.asked.wait()
    state.answering.set()
    found = await wave
    assert {c.id for c in found} == {"c1"}
    assert state.calls == [f"{WS}/connectors/c1"]


async def test_connectors_and_templates_are_reused_for_a_few_seconds(
    fake: tuple[FakeDesigner, Designer],
) -> None:
    state, designer = fake
    connector = await designer.connector("ws1", "c1")
    assert connector.type is ConnectorType.SMS_HTTP
    assert isinstance(connector.config, HttpConfig)
    assert connector.config.token is not None
    await designer.connector("ws1", "c1")
    await designer.template("ws1", "t1")
    await designer.template("ws1", "t1")
    assert len(state.calls) == 2
    state.now += 6
    await designer.connector("ws1", "c1")
    assert len(state.calls) == 3


async def test_settings_are_read_fresh_for_decisions(fake: tuple[FakeDesigner, Designer]) -> None:
    state, designer = fake
    rules = await designer.rules("ws1")
    await designer.rules("ws1")
    assert len(state.calls) == 2
    assert rules.consent_mode == "opt_in"
    assert rules.caps_for("sms")[0].per.days == 1


async def test_settings_are_kept_while_requests_name_the_revision_they_were_read_at(
    fake: tuple[FakeDesigner, Designer],
) -> None:
    state, designer = fake
    await designer.rules_at("ws1", "r1")
    await designer.rules_at("ws1", "r1")
    assert len(state.calls) == 1
    await designer.rules_at("ws1", "r2")  # the settings changed since: read again
    await designer.rules_at("ws1", "r2")
    assert len(state.calls) == 2
    await designer.rules_at("ws1", None)  # a request that does not say: always read
    await designer.rules_at("ws1", None)
    assert len(state.calls) == 4
    state.now += 3600  # time alone changes nothing: only a revision does
    assert (await designer.rules_at("ws1", "r2")).consent_mode == "opt_in"
    assert len(state.calls) == 4


async def test_missing_unusable_and_unreachable_are_told_apart(
    fake: tuple[FakeDesigner, Designer],
) -> None:
    state, designer = fake
    with pytest.raises(Missing, match="connector gone"):
        await designer.connector("ws1", "gone")
    broken = await designer.connector("ws1", "c2")
    assert broken.config is None
    assert "url" in (broken.problem or "")
    with pytest.raises(DesignerUnavailable, match="500"):
        await designer.template("ws1", "boom")
    await state.stop()
    with pytest.raises(DesignerUnavailable, match="unreachable"):
        await designer.rules("ws1")
