"""The operator console: static pages at ``/console`` that call only the public /v1 API.

The assets ship inside the package (``static/``) and are read once, when the router is
made. Every answer carries a Content-Security-Policy that allows nothing but this origin's
own scripts, styles and API: no inline script or style, no framing, no other hosts. The
API key stays in the browser's sessionStorage and travels only in the Authorization header.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.responses import RedirectResponse, Response

from shared.problems import ProblemError

PREFIX = "/console"
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))  # fmt: skip
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Every file of ``static/`` by name, with its media type."""
    assets = {}
    for entry in resources.files(__name__).joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in MEDIA_TYPES:
            assets[entry.name] = (entry.read_bytes(), MEDIA_TYPES[suffix])
    return assets


def router() -> APIRouter:
    assets = load_assets()
    api = APIRouter(include_in_schema=False)

    def answer(name: str) -> Response:
        found = assets.get(name)
        if found is None:
            raise ProblemError(404, "Not found", f"no console asset {name!r}")
        content, media_type = found
        return Response(content, media_type=media_type, headers=HEADERS)

    @api.get(PREFIX)
    async def index() -> Response:
        return answer("index.html")

    @api.get(PREFIX + "/")
    async def index_slash() -> Response:
        return RedirectResponse(PREFIX, status_code=308)

    @api.get(PREFIX + "/{name}")
    async def asset(name: str) -> Response:
        return answer(name)

    return api
