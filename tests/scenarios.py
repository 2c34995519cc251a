"""The example journeys of ``examples/``, made concrete for one workspace: each
``{{connector:NAME}}`` and ``{{template:NAME}}`` is created and its id put in its place."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx

from waypost.demo import EXAMPLES

SCENARIOS = EXAMPLES
PLACEHOLDER = re.compile(r"\{\{(connector|template):([^}]+)\}\}")
CONNECTOR_TYPES = {"email": "smtp", "sms": "sms_http", "push": "push_http", "webhook": "webhook"}


def scenario_names() -> list[str]:
    return sorted(p.name.removesuffix(".journey.json") for p in SCENARIOS.glob("*.journey.json"))


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCENARIOS / f"{name}.journey.json").read_text())
    return loaded


def activations(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "activation":
            yield node
        for value in node.values():
            yield from activations(value)
    elif isinstance(node, list):
        for item in node:
            yield from activations(item)


def connector_config(kind: str) -> dict[str, Any]:
    if kind == "smtp":
        return {"host": "127.0.0.1", "port": 2525, "from": "shop@example.com"}
    if kind == "webhook":
        return {"url": "http://127.0.0.1:9/hook", "secret": "whsec_c2VjcmV0"}
    return {"url": "http://127.0.0.1:9/send", "token": "t0ken"}


async def make_concrete(
    client: httpx.AsyncClient, body: dict[str, Any], ids: dict[str, str] | None = None
) -> dict[str, Any]:
    """Create what the placeholders name (ready templates) and substitute their ids;
    ``ids`` keeps what was created for the next journey of the same workspace."""
    ids = {} if ids is None else ids
    for step in activations(body):
        channel = step["channel"]
        for field, kind in (("connector_id", "connector"), ("template_id", "template")):
            found = PLACEHOLDER.fullmatch(step[field])
            if found and step[field] not in ids:
                ids[step[field]] = await _create(client, kind, found.group(2), channel)
    text = json.dumps(body)
    for placeholder, ident in ids.items():
        text = text.replace(placeholder, ident)
    concrete: dict[str, Any] = json.loads(text)
    return concrete


async def _create(client: httpx.AsyncClient, kind: str, name: str, channel: str) -> str:
    if kind == "connector":
        connector_type = CONNECTOR_TYPES[channel]
        payload = {"name": name, "type": connector_type, "config": connector_config(connector_type)}
        r = await client.post("/v1/connectors", json=payload)
    else:
        payload = {"name": name, "channel": channel, "body": "Hi {{ profile.first_name }}",
                   "status": "ready"}  # fmt: skip
        if channel == "email":
            payload["subject"] = "Hello"
        r = await client.post("/v1/templates", json=payload)
    assert r.status_code == 201, r.text
    ident: str = r.json()["id"]
    return ident
