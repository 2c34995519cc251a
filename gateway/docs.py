"""The interactive API documentation at ``/docs``, with Swagger UI served from the package.

The script and stylesheet come from the pinned ``swagger-ui-py`` wheel (its ``static/``
holds Swagger UI's dist files), read once when the router is made, so ``/docs`` renders on
a machine without internet. The page's own start-up is a file here too (``docs.js``), not
an inline script, so the page runs under a policy that allows this origin's scripts only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import HTMLResponse, Response

from shared.problems import ProblemError

PREFIX = "/docs"
ASSETS = PREFIX + "/assets"
# Swagger UI sets element styles from its scripts and draws icons as data: images.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
))  # fmt: skip
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# The files of Swagger UI's dist the page uses, with their media types.
SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
START = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
  });
});
"""
PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Waypost API</title>
<link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/docs.js"></script>
</body>
</html>
"""


def swagger_dist() -> Path:
    """Swagger UI's dist files in the installed ``swagger-ui-py`` wheel. Located, not
    imported: the package's own code (its web-framework handlers) is not needed."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("Swagger UI not found: install the swagger-ui-py package")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def load_assets() -> dict[str, tuple[bytes, str]]:
    dist = swagger_dist()
    assets = {name: ((dist / name).read_bytes(), kind) for name, kind in SWAGGER_FILES.items()}
    assets["docs.js"] = (START.encode(), "text/javascript; charset=utf-8")
    return assets


def router() -> APIRouter:
    assets = load_assets()
    api = APIRouter(include_in_schema=False)

    @api.get(PREFIX)
    async def docs() -> HTMLResponse:
        return HTMLResponse(PAGE, headers=HEADERS)

    @api.get(ASSETS + "/{name}")
    async def asset(name: str) -> Response:
        found = assets.get(name)
        if found is None:
            raise ProblemError(404, "Not found", f"no documentation asset {name!r}")
        content, media_type = found
        return Response(content, media_type=media_type, headers=HEADERS)

    return api
