"""Per-connector concurrency: at most ``max_concurrency`` sends at once through a connector,
others wait in turn; a connector with its limit of deliveries taken counts as full."""

from __future__ import annotations

import asyncio

import pytest

from services.activator.concurrency import ConcurrencyLimiter
from shared.connectors import DEFAULT_CONCURRENCY, ConnectorType, parse_config

A, B = ("ws", "a"), ("ws", "b")


class Sends:
    """Sends that start when they get a place and end only when told to."""

    def __init__(self, limiter: ConcurrencyLimiter) -> None:
        self.limiter = limiter
        self.started: list[int] = []
        self.most = 0
        self.ends: dict[int, asyncio.Event] = {}

    async def send(self, key: tuple[str, str], limit: int, n: int) -> None:
        self.ends[n] = asyncio.Event()
        async with self.limiter.hold(key, limit):
            self.started.append(n)
            self.most = max(self.most, self.limiter.active(key))
            await self.ends[n].wait()


async def settle() -> None:
    """Let every task run until it blocks (no clock involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_at_most_the_limit_send_at_once_and_the_rest_follow_in_order() -> None:
    limiter = ConcurrencyLimiter()
    sends = Sends(limiter)
    tasks = [asyncio.create_task(sends.send(A, 2, n)) for n in range(5)]
    await settle()
    assert sends.started == [0, 1]
    assert limiter.full() == {A}
    sends.ends[0].set()
    await settle()
    assert sends.started == [0, 1, 2]
    for n in range(1, 5):
        sends.ends[n].set()
    await asyncio.gather(*tasks)
    assert sends.started == [0, 1, 2, 3, 4]
    assert sends.most == 2
    assert limiter.full() == set()
    assert limiter.active(A) == 0


async def test_connectors_are_limited_apart() -> None:
    limiter = ConcurrencyLimiter()
    sends = Sends(limiter)
    tasks = [asyncio.create_task(sends.send(A, 1, n)) for n in range(2)]
    tasks.append(asyncio.create_task(sends.send(B, 1, 10)))
    await settle()
    assert sends.started == [0, 10]  # b is not behind a's queue
    assert limiter.full() == {A, B}
    for end in sends.ends.values():
        end.set()
    await asyncio.gather(*tasks)
    assert sends.started == [0, 10, 1]


async def test_a_connector_below_its_limit_is_not_full() -> None:
    limiter = ConcurrencyLimiter()
    sends = Sends(limiter)
    task = asyncio.create_task(sends.send(A, 3, 0))
    await settle()
    assert (limiter.active(A), limiter.full()) == (1, set())
    sends.ends[0].set()
    await task


async def test_a_raised_limit_lets_waiting_sends_in_at_once() -> None:
    limiter = ConcurrencyLimiter()
    sends = Sends(limiter)
    tasks = [asyncio.create_task(sends.send(A, 1, n)) for n in range(3)]
    await settle()
    assert sends.started == [0]
    tasks.append(asyncio.create_task(sends.send(A, 3, 3)))  # the config was edited
    await settle()
    assert len(sends.started) == 3  # three places now: the new send and a waiter take two
    assert limiter.full() == {A}
    for end in sends.ends.values():
        end.set()
    await asyncio.gather(*tasks)
    assert sorted(sends.started) == [0, 1, 2, 3]
    assert sends.most == 3


async def test_a_failed_send_gives_its_place_back() -> None:
    limiter = ConcurrencyLimiter()

    async def failing() -> None:
        async with limiter.hold(A, 1):
            raise RuntimeError("provider exploded")

    for _ in range(3):
        with pytest.raises(RuntimeError):
            await failing()
    assert (limiter.active(A), limiter.full()) == (0, set())


def test_connectors_have_a_default_limit_and_may_set_their_own() -> None:
    url = {"url": "https://sms.example/send"}
    assert parse_config(ConnectorType.SMS_HTTP, url).max_concurrency == DEFAULT_CONCURRENCY
    tuned = parse_config(ConnectorType.SMS_HTTP, {**url, "max_concurrency": 16})
    assert tuned.max_concurrency == 16
