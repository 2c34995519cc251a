"""A fresh headless Chromium per test; the whole system comes from the ``stack`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser.console import chromium

TIMEOUT_MS = 20_000  # deadlines for conditions polled in the page; never a fixed sleep


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    expect.set_options(timeout=TIMEOUT_MS)
    async with chromium(tmp_path / "chromium-profile") as context:
        page = context.pages[0] if context.pages else await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        yield page
