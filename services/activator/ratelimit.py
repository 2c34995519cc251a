"""Per-connector send rate limits on wall-clock time, held across every activator replica.

A provider counts real seconds, so these do too, also when the product runs on a virtual
clock. Sends are spaced evenly (a bucket of one token): a big entry wave reaches the
provider at the configured rate, never as a burst. A sender waits for its turn only up to a
bound; past it the connector counts as busy until then, and its deliveries are left where
they are, so one slow connector cannot take every place this process has.

The turns are handed out from one schedule per connector (``Reserve``). In a service it is
the ``activator.send_turns`` row of the connector (``store.reserve_turns``): a delivery
group asks once for as many turns as it has messages and gets the consecutive turns that
fall within the bound, so N replicas together keep to the rate, at one short statement per
group rather than one per message. ``LocalTurns`` is the same schedule in memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

# A connector of one workspace: (workspace_id, connector_id).
ConnectorKey = tuple[str, str]

# Shortest time a refused connector is left alone (its next turn is that close anyway).
MIN_BUSY_S = 0.01


@dataclass(frozen=True)
class Grant:
    """Consecutive turns ``1 / rate`` apart: the first ``first_in`` seconds from now (at
    once when negative), ``granted`` of them; the connector's next free turn after them is
    ``next_in`` seconds from now."""

    first_in: float
    granted: int
    next_in: float


# (connector, rate, turns wanted, longest wait) -> the turns granted.
Reserve = Callable[[ConnectorKey, float, int, float], Awaitable[Grant]]


def grant(next_at: float, now: float, rate: float, wanted: int, max_wait: float) -> Grant:
    """The schedule's rule (also written in SQL in ``store.reserve_turns``): turns follow
    ``next_at`` (or now, when it is past), and only those within ``max_wait`` are taken."""
    start = max(next_at, now)
    granted = min(wanted, max(0, math.floor((now + max_wait - start) * rate + 1e-9) + 1))
    return Grant(start - now, granted, start + granted / rate - now)


@dataclass
class LocalTurns:
    """The schedule of one process, in memory (tests, tools)."""

    now: Callable[[], float] = time.monotonic
    next_at: dict[ConnectorKey, float] = field(default_factory=dict)

    async def __call__(self, key: ConnectorKey, rate: float, wanted: int, max_wait: float) -> Grant:
        now = self.now()
        given = grant(self.next_at.get(key, -math.inf), now, rate, wanted, max_wait)
        self.next_at[key] = now + given.next_in
        return given


class RateLimiter:
    def __init__(
        self,
        max_wait_s: float,
        reserve: Reserve | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_wait_s = max_wait_s
        self._now = now
        self._reserve = reserve or LocalTurns(now)
        self._busy_until: dict[ConnectorKey, float] = {}

    async def turns(self, key: ConnectorKey, rate: float | None, wanted: int) -> list[float]:
        """Seconds to wait before each of up to ``wanted`` sends through ``key`` (none for a
        connector without a limit); fewer than ``wanted`` when the later turns are further
        away than the bound, and then the connector is busy until they come within it."""
        if rate is None:
            return [0.0] * wanted
        if wanted <= 0:
            return []
        given = await self._reserve(key, rate, wanted, self._max_wait_s)
        if given.granted < wanted:
            busy_s = max(MIN_BUSY_S, given.next_in - self._max_wait_s)
            self._busy_until[key] = self._now() + busy_s
        return [max(0.0, given.first_in + i / rate) for i in range(given.granted)]

    def busy(self) -> dict[ConnectorKey, float]:
        """Connectors with no turn free now, and for how many more seconds."""
        now = self._now()
        self._busy_until = {k: t for k, t in self._busy_until.items() if t > now}
        return {k: t - now for k, t in self._busy_until.items()}
