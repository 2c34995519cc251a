"""API keys to identities, asked of the designer and remembered for at most ``ttl_s``
(so a revoked key stops working on every replica within that time)."""

from __future__ import annotations

import hashlib

import httpx

from gateway.cache import TtlCache
from shared.identity import Identity, Role
from shared.logging import get_logger

log = get_logger(__name__)


class DesignerUnavailable(Exception):
    pass


class Authenticator:
    def __init__(
        self, client: httpx.AsyncClient, designer_url: str, ttl_s: float = 1.0, size: int = 10_000
    ) -> None:
        self._client = client
        self._url = designer_url
        self._cache: TtlCache[Identity | None] = TtlCache(ttl_s, size)

    async def identify(self, key: str) -> Identity | None:
        return await self._cache.get(hashlib.sha256(key.encode()).hexdigest(), self._ask)

    async def _ask(self, digest: str) -> Identity | None:
        try:
            r = await self._client.get(f"{self._url}/internal/auth/{digest}", timeout=5)
        except httpx.HTTPError as exc:
            raise DesignerUnavailable(str(exc)) from exc
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise DesignerUnavailable(f"designer answered {r.status_code}")
        data = r.json()
        return Identity(
            key_id=data["key_id"],
            workspace_id=data["workspace_id"],
            role=Role(data["role"]),
            folder_ids=tuple(data["folder_ids"]),
            bootstrap=bool(data["bootstrap"]),
        )
