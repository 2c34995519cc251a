"""A fresh headless Chromium per test, and the whole system for this package alone.

The system is this module's own, stopped when its tests end: the suite's session-wide stack
would otherwise start here, before ``tests/e2e`` runs its virtual-clock stack on the same
PostgreSQL and NATS, and two clocks must never share the same consumers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import ConsoleMessage, Page, expect

from tests.browser.console import chromium
from tests.conftest import Servers
from tests.stack import Stack, running_stack

TIMEOUT_MS = 20_000  # deadlines for conditions polled in the page; never a fixed sleep


@pytest.fixture(scope="module")
async def stack(servers: Servers) -> AsyncIterator[Stack]:
    async with running_stack(servers) as running:
        yield running


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    """Fails the test on any script error or policy violation the page reports; answers
    the API refused (403, 404) are part of what the tests look at and are not errors."""
    expect.set_options(timeout=TIMEOUT_MS)
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    async with chromium(tmp_path / "chromium-profile") as context:
        page = context.pages[0] if context.pages else await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", on_console)
        page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
        yield page
    assert not errors, errors
