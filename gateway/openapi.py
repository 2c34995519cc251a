"""One OpenAPI document for the whole public API, merged from the services' documents."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from gateway.routes import owner

PUBLIC_SERVICES = ("designer", "runtime", "activator")


async def merged_openapi(
    client: httpx.AsyncClient, urls: dict[str, str], own: dict[str, Any]
) -> dict[str, Any]:
    """The gateway's own document plus every /v1 path that a service owns."""
    docs = await asyncio.gather(*(_fetch(client, urls[name]) for name in PUBLIC_SERVICES))
    merged: dict[str, Any] = {
        "openapi": own.get("openapi", "3.1.0"),
        "info": {"title": "Waypost", "version": own.get("info", {}).get("version", "1")},
        "paths": {p: v for p, v in own.get("paths", {}).items() if p.startswith("/v1/")},
        "components": {
            "schemas": dict(own.get("components", {}).get("schemas", {})),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
    }
    for name, doc in zip(PUBLIC_SERVICES, docs, strict=True):
        for path, item in doc.get("paths", {}).items():
            if path.startswith("/v1/") and owner(_sample(path)) == name:
                merged["paths"][path] = item
        merged["components"]["schemas"].update(doc.get("components", {}).get("schemas", {}))
    return merged


def _sample(path: str) -> str:
    """A concrete path for a templated one, to look up its owner."""
    return path.replace("{", "x").replace("}", "")


async def _fetch(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    r = await client.get(f"{url}/openapi.json", timeout=5)
    r.raise_for_status()
    doc: dict[str, Any] = r.json()
    return doc
