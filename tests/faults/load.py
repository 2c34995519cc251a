"""A steady load of partners posting signups through the gateways, with known event ids.

Each batch holds new events (one new profile each) and one event posted before, again. A
batch that is not answered 202 is posted again later, as a partner would; only events
answered as accepted count. The load keeps to what the system can do: while more than
``max_pending`` accepted events wait for their effect (``done`` counts those that had
it), it posts only events it posted before, so outages still meet posts but the backlog
stays bounded on a small machine. Every answer is kept, so a test can wait until the load has
met an outage (posts attempted while a part was down) or made progress after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.helpers import eventually

Event = dict[str, Any]


def signup(n: int) -> Event:
    return {
        "event_id": f"e{n}",
        "profile_id": f"p{n}",
        "name": "signup",
        "traits": {"email": f"p{n}@example.com", "first_name": f"P{n}"},
    }


@dataclass
class Load:
    gateways: list[str]
    key: str
    done: Callable[[], int]
    max_pending: int = 100
    batch: int = 6
    pause_s: float = 0.05  # pacing of the load, not a wait for anything
    events: dict[str, Event] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    repeated: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    backlog: deque[list[Event]] = field(default_factory=deque)
    _in_order: list[str] = field(default_factory=list)  # accepted ids, first answer first
    _random: random.Random = field(default_factory=lambda: random.Random(7))

    def profiles(self) -> set[str]:
        return {self.events[e]["profile_id"] for e in self.accepted}

    async def run(self, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            while not stop.is_set():
                if await self._post(http, self._next_batch()) and self.backlog:
                    await self._post(http, self.backlog.popleft())
                await asyncio.sleep(self.pause_s)

    def _next_batch(self) -> list[Event]:
        if self.accepted and len(self.accepted) - self.done() > self.max_pending:
            return [self._again() for _ in range(self.batch)]
        first = len(self.events)
        batch = [signup(n) for n in range(first, first + self.batch)]
        self.events.update((e["event_id"], e) for e in batch)
        return [*batch, self._again()] if self.accepted else batch

    def _again(self) -> Event:
        return self.events[self._random.choice(self._in_order)]

    async def _post(self, http: httpx.AsyncClient, batch: list[Event]) -> bool:
        gateway = self.gateways[self.attempts % len(self.gateways)]
        self.attempts += 1
        try:
            r = await http.post(f"{gateway}/v1/events/batch", json={"events": batch})
        except httpx.HTTPError as exc:
            return self._failed(batch, type(exc).__name__)
        if r.status_code != 202:
            return self._failed(batch, str(r.status_code))
        body = r.json()
        assert body == {"accepted": len(batch), "rejected": []}, body
        for event in batch:
            if event["event_id"] in self.accepted:
                self.repeated += 1
            else:
                self.accepted.add(event["event_id"])
                self._in_order.append(event["event_id"])
        return True

    def _failed(self, batch: list[Event], why: str) -> bool:
        self.failures[why] += 1
        self.backlog.append(batch)
        return False

    async def attempted(self, posts: int) -> None:
        """Wait until ``posts`` more posts were made (to meet a part while it is down)."""
        target = self.attempts + posts
        await eventually(self._reached(lambda: self.attempts >= target), f"{posts} more posts")

    async def accepting(self, events: int) -> None:
        """Wait until ``events`` more events were accepted."""
        target = len(self.accepted) + events
        await eventually(
            self._reached(lambda: len(self.accepted) >= target), f"{events} more accepted", 120
        )

    async def settle(self) -> None:
        """After the load stopped: post every unanswered batch again until it is accepted."""
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:

            async def drained() -> bool:
                while self.backlog:
                    if not await self._post(http, self.backlog.popleft()):
                        return False
                return True

            await eventually(drained, "every batch to be accepted", 120)

    @staticmethod
    def _reached(check: Any) -> Any:
        async def probe() -> bool:
            return bool(check())

        return probe


@asynccontextmanager
async def running(load: Load) -> AsyncIterator[Load]:
    stop = asyncio.Event()
    task = asyncio.create_task(load.run(stop), name="load")
    try:
        yield load
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)
