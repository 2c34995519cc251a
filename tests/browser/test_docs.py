"""``/docs`` in headless Chromium with no network beyond the gateway: Swagger UI's files
come from the gateway itself, so the page renders the API's operations offline."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import Page, Route, expect

from tests.stack import Stack


async def test_docs_render_the_operations_without_internet(page: Page, stack: Stack) -> None:
    gateway = urlsplit(stack.url).netloc
    elsewhere: list[str] = []

    async def offline(route: Route) -> None:
        if urlsplit(route.request.url).netloc == gateway:
            await route.continue_()
        else:  # what a machine without internet would do to it
            elsewhere.append(route.request.url)
            await route.abort("internetdisconnected")

    await page.context.route("**/*", offline)
    await page.goto(f"{stack.url}/docs")

    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Waypost")
    simulate = page.locator(".opblock").filter(has_text="/v1/journeys/simulate")
    await expect(simulate.first).to_be_visible()
    assert await page.locator(".opblock").count() > 20
    assert elsewhere == [], f"/docs asked for other hosts: {elsewhere}"
