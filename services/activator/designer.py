"""What the activator reads from the designer: connectors (with secrets), templates and
workspace settings, over the designer's internal HTTP API.

Connectors and templates are reused for a few seconds: a wave of messages through one
connector costs one lookup, and an edit reaches deliveries within that time. Workspace
settings are kept with the designer revision they were read at; each request names the
revision the runtime was at when it made it, so a change saved before a request was made
applies to it (a request naming another revision, or none, reads them again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from pydantic import ValidationError

from services.activator.schemas import WorkspaceRules
from shared.connectors import ConnectorConfig, ConnectorType, parse_config
from shared.http import Unavailable, get_json
from shared.templating import TemplateContent

T = TypeVar("T")

# Entries kept at most; past this, expired ones are dropped before adding another.
CACHE_ENTRIES = 10_000


class DesignerUnavailable(Exception):
    """The designer did not answer usefully; asking again later may work."""


class Missing(Exception):
    """The designer has no such connector or template (it was deleted)."""


@dataclass(frozen=True)
class Connector:
    id: str
    type: ConnectorType
    config: ConnectorConfig | None
    problem: str | None = None  # why a stored config is unusable, when it is


class Designer:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, tuple[float, Any]] = {}
        self._loading: dict[str, asyncio.Task[Any]] = {}
        self._rules: dict[str, tuple[str, WorkspaceRules]] = {}  # workspace -> at revision

    async def rules(self, workspace_id: str) -> WorkspaceRules:
        data = await self._get(f"/internal/workspaces/{workspace_id}/settings", "workspace")
        try:
            return WorkspaceRules.model_validate(data)
        except ValidationError as exc:
            raise DesignerUnavailable(f"unreadable workspace settings: {exc}") from None

    async def rules_at(self, workspace_id: str, revision: str | None) -> WorkspaceRules:
        """The workspace's rules as of the designer's ``revision``: reused while requests
        name the revision they were last read at, read again when one names another (the
        settings changed since) or none."""
        if revision is not None:
            known = self._rules.get(workspace_id)
            if known is not None and known[0] == revision:
                return known[1]
        rules = await self.rules(workspace_id)
        if revision is not None:
            if len(self._rules) >= CACHE_ENTRIES:
                self._rules.clear()
            self._rules[workspace_id] = (revision, rules)
        return rules

    async def cached_rules(self, workspace_id: str) -> WorkspaceRules:
        return await self._cached(f"rules:{workspace_id}", lambda: self.rules(workspace_id))

    async def connector(self, workspace_id: str, connector_id: str) -> Connector:
        path = f"/internal/workspaces/{workspace_id}/connectors/{connector_id}"
        return await self._cached(path, lambda: self._connector(path, connector_id))

    async def template(self, workspace_id: str, template_id: str) -> TemplateContent:
        path = f"/internal/workspaces/{workspace_id}/templates/{template_id}"
        return await self._cached(path, lambda: self._template(path, template_id))

    async def journey_visible(self, workspace_id: str, journey_id: str, folders: str) -> bool:
        path = f"/internal/workspaces/{workspace_id}/journeys/{journey_id}/access"
        try:
            await self._get(path, f"journey {journey_id}", {"folders": folders})
        except Missing:
            return False
        return True

    async def _connector(self, path: str, connector_id: str) -> Connector:
        data = await self._get(path, f"connector {connector_id}")
        kind = ConnectorType(data["type"])
        try:
            return Connector(str(data["id"]), kind, parse_config(kind, data["config"]))
        except ValidationError as exc:
            problem = f"connector config is invalid: {exc.errors(include_url=False)[:3]}"
            return Connector(str(data["id"]), kind, None, problem)

    async def _template(self, path: str, template_id: str) -> TemplateContent:
        data = await self._get(path, f"template {template_id}")
        return TemplateContent(
            subject=data.get("subject"),
            body=data["body"],
            html=data.get("html"),
            title=data.get("title"),
            data=data.get("data"),
        )

    async def _cached(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        """A fresh cached answer, or the one lookup of ``key`` under way: a wave of
        deliveries on a cold or expired entry asks the designer once, not once each."""
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            found: T = hit[1]
            return found
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._load(key, fetch, now))
            self._loading[key] = task
        loaded: T = await asyncio.shield(task)
        return loaded

    async def _load(self, key: str, fetch: Callable[[], Awaitable[T]], started: float) -> T:
        try:
            value = await fetch()
            if self._cache_s > 0:
                self._remember(key, value, started)
            return value
        finally:
            self._loading.pop(key, None)

    def _remember(self, key: str, value: Any, now: float) -> None:
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[key] = (now + self._cache_s, value)

    async def _get(self, path: str, what: str, params: dict[str, str] | None = None) -> Any:
        try:
            status, body = await get_json(self._http, f"{self._base}{path}", params)
        except Unavailable as exc:
            raise DesignerUnavailable(f"designer unreachable: {exc}") from None
        if status == 404:
            raise Missing(what)
        if status != 200:
            raise DesignerUnavailable(f"designer answered {status} for {path}")
        if body is None:
            raise DesignerUnavailable(f"designer answered non-JSON for {path}")
        return body
