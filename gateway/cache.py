"""A small time-bounded cache for lookups the gateway asks of the designer: an answer
(including "not found") is reused for at most ``ttl_s``, and one lookup per key runs at a
time, so a burst of requests for the same key shares it."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    def __init__(self, ttl_s: float, size: int = 10_000) -> None:
        self._ttl_s = ttl_s
        self._size = size
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._loading: dict[str, asyncio.Task[V]] = {}

    async def get(self, key: str, load: Callable[[str], Awaitable[V]]) -> V:
        now = time.monotonic()
        found = self._entries.get(key)
        if found is not None and found[0] > now:
            return found[1]
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._load(key, load, now))
            self._loading[key] = task
        return await asyncio.shield(task)

    async def _load(self, key: str, load: Callable[[str], Awaitable[V]], started: float) -> V:
        try:
            value = await load(key)
            self._entries[key] = (started + self._ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
            return value
        finally:
            self._loading.pop(key, None)
