"""The activator's reads from the designer: what is cached, what a missing or unreachable
designer means."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.activator.designer import Designer, DesignerUnavailable, Missing
from shared.connectors import ConnectorType, HttpConfig

WS = "/internal/workspaces/ws1"


class FakeDesigner:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.now = 0.0
        self.down = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        if self.down:
            raise httpx.ConnectError("refused")
        answers: dict[str, Any] = {
            f"{WS}/connectors/c1": {"id": "c1", "type": "sms_http",
                                    "config": {"url": "https://sms.example/send", "token": "t"}},
            f"{WS}/connectors/c2": {"id": "c2", "type": "sms_http", "config": {"url": "ftp://x"}},
            f"{WS}/templates/t1": {"id": "t1", "subject": None, "body": "Hi", "html": None},
            f"{WS}/settings": {"frequency_caps": [{"channel": "sms", "max": 1, "per": "P1D"}],
                               "quiet_hours": None, "consent_mode": "opt_in",
                               "default_timezone": "UTC"},
        }  # fmt: skip
        if request.url.path == f"{WS}/templates/boom":
            return httpx.Response(500)
        found = answers.get(request.url.path)
        return httpx.Response(200, json=found) if found else httpx.Response(404)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeDesigner, Designer]]:
    state = FakeDesigner()
    async with httpx.AsyncClient(transport=httpx.MockTransport(state.handle)) as http:
        yield state, Designer(http, "http://designer/", cache_s=5.0, clock=lambda: state.now)


async def test_a_wave_of_lookups_on_a_cold_entry_asks_the_designer_once() -> None:
    state = FakeDesigner()

    async def answer_later(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # every lookup of the wave is under way before one answers
        return state.handle(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer_later)) as http:
        designer = Designer(http, "http://designer/", cache_s=5.0, clock=lambda: state.now)
        found = await asyncio.gather(*(designer.connector("ws1", "c1") for _ in range(50)))
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
    state.down = True
    with pytest.raises(DesignerUnavailable, match="unreachable"):
        await designer.rules("ws1")
