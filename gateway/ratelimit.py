"""Per-key token buckets on the wall clock (also under the virtual clock: a rate limit
protects real resources in real time)."""

from __future__ import annotations

import math
import time


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one token; returns 0 if allowed, else seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens >= 1:
            self._store(key, tokens - 1, now)
            return 0.0
        self._store(key, tokens, now)
        return (1 - tokens) / self._rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            self._buckets.clear()  # bounded memory; a reset only grants a fresh burst
        self._buckets[key] = (tokens, now)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
