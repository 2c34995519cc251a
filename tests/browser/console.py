"""What the console's browser tests and screenshots share: headless Chromium from the
system's package, a journey that uses every kind of step, and signing in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import BrowserContext, Page, async_playwright, expect

CHROMIUM = "/usr/bin/chromium"  # Debian's package; `make install` brings it
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1360, "height": 860}


@asynccontextmanager
async def chromium(user_data_dir: Path) -> AsyncIterator[BrowserContext]:
    """A fresh headless Chromium with its own profile directory; fails if it is missing."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,  # type: ignore[arg-type]
            device_scale_factor=1,
        )
        try:
            yield context
        finally:
            await context.close()


async def sign_in(page: Page, base_url: str, key: str) -> None:
    await page.goto(f"{base_url}/console")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who-role")).to_be_visible()


async def resources(
    client: httpx.AsyncClient, sms_url: str, template_name: str | None = None
) -> tuple[str, str]:
    """An SMS connector and a ready template: the (connector id, template id)."""
    r = await client.post(
        "/v1/connectors",
        json={"name": f"sms-{uuid.uuid4().hex[:6]}", "type": "sms_http",
              "config": {"url": sms_url, "token": "t0ken"}},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    connector = r.json()["id"]
    r = await client.post(
        "/v1/templates",
        json={"name": template_name or f"cart-{uuid.uuid4().hex[:6]}", "channel": "sms",
              "body": "Your cart is waiting, {{ profile.first_name }}", "status": "ready"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return connector, r.json()["id"]


def cart_journey(connector: str, template: str, folder_id: str | None = None) -> dict[str, Any]:
    """Two stages with an activation, a branch, an attribute split with a jump, a random
    split with a holdout, waits and an end."""

    def sms(step_id: str) -> dict[str, Any]:
        return {
            "id": step_id, "type": "activation", "channel": "sms",
            "connector_id": connector, "template_id": template, "to_attribute": "phone",
        }  # fmt: skip

    return {
        "name": f"Cart recovery {uuid.uuid4().hex[:4]}",
        "description": "A text when a cart is left; gold members go straight to checkout help.",
        "purpose": "purchase",
        "folder_id": folder_id,
        "reentry": {"mode": "unless_goal_met", "cooldown": "PT1H"},
        "goal": {"criteria": {"event": "purchase_completed"}, "target_percent": 30},
        "exit_criteria": [{"criteria": {"event": "unsubscribed"}}],
        "stages": [
            {
                "name": "Cart",
                "entry": {"event": "cart_add"},
                "milestone": {"event": "checkout_started"},
                "exit_criteria": [{"criteria": {"event": "cart_emptied"}}],
                "steps": [
                    sms("sms-1"),
                    {"id": "clicked", "type": "branch", "criteria": {"event": "link_clicked"},
                     "timeout": "P1D",
                     "yes": [{"id": "tier", "type": "split", "mode": "attribute",
                              "cases": [{"criteria": {"profile": [
                                  {"attribute": "tier", "op": "eq", "value": "gold"}]},
                                  "steps": [{"id": "to-checkout", "type": "jump",
                                             "stage": "Checkout"}]}],
                              "default": []}],
                     "no": [{"id": "wait-1d", "type": "wait", "duration": "P1D"}]},
                    {"id": "holdout", "type": "split", "mode": "random",
                     "paths": [{"percent": 90, "steps": [sms("sms-2")]},
                               {"percent": 10, "steps": []}]},
                ],
            },
            {
                "name": "Checkout",
                "max_time_in_stage": "P3D",
                "steps": [
                    {"id": "wait-2h", "type": "wait", "duration": "PT2H"},
                    sms("sms-3"),
                    {"id": "done", "type": "end"},
                ],
            },
        ],
    }  # fmt: skip
