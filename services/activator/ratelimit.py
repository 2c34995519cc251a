"""Per-connector send rate limits on wall-clock time.

A provider counts real seconds, so these do too, also when the product runs on a virtual
clock. Sends are spaced evenly (a bucket of one token): a big entry wave reaches the
provider at the configured rate, never as a burst. A sender waits for its turn only up to a
bound; past it the connector counts as busy until then, and its deliveries are left where
they are, so one slow connector cannot take every place this process has. The limit holds
per activator process; N replicas may together send up to N times it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# A connector of one workspace: (workspace_id, connector_id).
ConnectorKey = tuple[str, str]


@dataclass
class TokenBucket:
    """Tokens accrue at ``rate`` per second up to one; a taker may go into debt and then
    waits until its token would have accrued, so takers are served in order."""

    rate: float
    tokens: float
    updated: float

    def reserve(self, now: float, max_wait: float) -> float | None:
        """Takes one token if it is free within ``max_wait`` seconds; how long to wait
        before using it, or None (and nothing taken) when the turn is further away."""
        self.tokens = min(1.0, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        wait = max(0.0, (1.0 - self.tokens) / self.rate)
        if wait > max_wait:
            return None
        self.tokens -= 1.0
        return wait


class RateLimiter:
    def __init__(
        self,
        max_wait_s: float,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._max_wait_s = max_wait_s
        self._now = now
        self._sleep = sleep
        self._buckets: dict[ConnectorKey, TokenBucket] = {}
        self._busy_until: dict[ConnectorKey, float] = {}

    async def acquire(self, key: ConnectorKey, rate: float | None) -> bool:
        """Wait for a turn to send through ``key`` (at once when it has no limit); False,
        without waiting, when the turn is further away than the bound."""
        if rate is None:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, 1.0, self._now())
        bucket.rate = rate  # a changed config applies from the next send on
        wait = bucket.reserve(self._now(), self._max_wait_s)
        if wait is None:
            self._busy_until[key] = self._now() + self._max_wait_s
            return False
        if wait > 0:
            await self._sleep(wait)
        return True

    def busy(self) -> dict[ConnectorKey, float]:
        """Connectors with no turn free now, and for how many more seconds."""
        now = self._now()
        self._busy_until = {k: t for k, t in self._busy_until.items() if t > now}
        return {k: t - now for k, t in self._busy_until.items()}
