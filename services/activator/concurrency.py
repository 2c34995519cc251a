"""Per-connector concurrency limits: at most ``max_concurrency`` sends at once through one
connector, so a provider never sees more parallel requests (or SMTP sessions) than it was
configured for, however many deliveries are due.

A connector with as many deliveries holding or waiting for a place as its limit is *full*:
the delivery loop claims no more of its rows until one finishes, so one slow provider cannot
take every place this process has. The limit holds per activator process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from services.activator.ratelimit import ConnectorKey


@dataclass
class _Places:
    limit: int
    active: int = 0
    wanting: int = 0  # active, plus those waiting for a place
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class ConcurrencyLimiter:
    def __init__(self) -> None:
        self._places: dict[ConnectorKey, _Places] = {}

    @asynccontextmanager
    async def hold(self, key: ConnectorKey, limit: int) -> AsyncIterator[None]:
        """A place to send through ``key``, waiting while ``limit`` sends are under way. A
        changed limit applies at once (a raised one lets waiters in)."""
        places = self._places.get(key)
        if places is None:
            places = self._places[key] = _Places(limit)
        places.wanting += 1
        try:
            async with places.changed:
                if limit != places.limit:
                    places.limit = limit
                    places.changed.notify_all()
                await places.changed.wait_for(lambda: places.active < places.limit)
                places.active += 1
            try:
                yield
            finally:
                async with places.changed:
                    places.active -= 1
                    places.changed.notify()
        finally:
            places.wanting -= 1
            if places.wanting == 0:
                del self._places[key]

    def active(self, key: ConnectorKey) -> int:
        places = self._places.get(key)
        return 0 if places is None else places.active

    def full(self) -> set[ConnectorKey]:
        """Connectors with as many deliveries holding or awaiting a place as their limit."""
        return {key for key, p in self._places.items() if p.wanting >= p.limit}
