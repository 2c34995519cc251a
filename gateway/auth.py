"""API keys to identities, asked of the designer and remembered for at most ``ttl_s``
(so a revoked key stops working on every replica within that time)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict

import httpx

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
        self._ttl_s = ttl_s
        self._size = size
        self._cache: OrderedDict[str, tuple[float, Identity | None]] = OrderedDict()
        self._asking: dict[str, asyncio.Task[Identity | None]] = {}

    async def identify(self, key: str) -> Identity | None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        # One lookup per key at a time: requests arriving meanwhile share its answer.
        task = self._asking.get(digest)
        if task is None:
            task = asyncio.create_task(self._lookup(digest, now))
            self._asking[digest] = task
        return await asyncio.shield(task)

    async def _lookup(self, digest: str, started: float) -> Identity | None:
        try:
            identity = await self._ask(digest)
            self._remember(digest, started + self._ttl_s, identity)
            return identity
        finally:
            self._asking.pop(digest, None)

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

    def _remember(self, digest: str, expires: float, identity: Identity | None) -> None:
        self._cache[digest] = (expires, identity)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
