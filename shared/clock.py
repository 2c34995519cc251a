"""Time, injected. Real, or virtual and shared by every process through a NATS KV key.

The virtual clock starts at the real time and stands still between changes. Advancing it
in one process writes the KV key; every process watches that key, so each sees the new
time within milliseconds and anything waiting on the clock wakes up.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Protocol

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from shared.topology import CLOCK_BUCKET, CLOCK_KEY


class Clock(Protocol):
    virtual: bool

    def now(self) -> datetime: ...

    async def wait(self, seconds: float) -> None:
        """Pause up to ``seconds``; a virtual clock also wakes early when time is changed."""


class RealClock:
    virtual = False

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def _encode(t: datetime) -> bytes:
    return t.astimezone(UTC).isoformat().encode()


def _decode(raw: bytes) -> datetime:
    return datetime.fromisoformat(raw.decode()).astimezone(UTC)


def _read(entry: KeyValue.Entry) -> tuple[datetime, int]:
    if entry.value is None or entry.revision is None:
        raise RuntimeError("the virtual clock key holds no time")
    return _decode(entry.value), entry.revision


class VirtualClock:
    """A clock that moves only when told to; shared by all processes on one NATS."""

    virtual = True

    def __init__(self, kv: KeyValue, now: datetime, revision: int) -> None:
        self._kv = kv
        self._now = now
        self._revision = revision
        self._changed = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, js: JetStreamContext, replicas: int = 1) -> VirtualClock:
        kv = await _bucket(js, replicas)
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await kv.create(CLOCK_KEY, _encode(datetime.now(UTC)))
        now, revision = _read(await kv.get(CLOCK_KEY))
        clock = cls(kv, now, revision)
        await clock._start_watch()
        return clock

    async def _start_watch(self) -> None:
        watcher = await self._kv.watch(CLOCK_KEY)

        async def follow() -> None:
            async for entry in watcher:
                if entry is None or entry.value is None or entry.revision is None:
                    continue
                self._apply(_decode(entry.value), entry.revision)

        self._watch_task = asyncio.create_task(follow(), name="virtual-clock-watch")

    def _apply(self, now: datetime, revision: int) -> None:
        if revision <= self._revision:
            return
        self._now, self._revision = now, revision
        self._changed.set()
        self._changed = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, seconds))

    async def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward; use set() to go back")
        return await self._change(lambda current: current + delta)

    async def set(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            raise ValueError("a time needs a UTC offset")
        return await self._change(lambda _current: when.astimezone(UTC))

    async def _change(self, compute: _Compute) -> datetime:
        """Compare-and-set on the KV revision, so concurrent advances add up."""
        while True:
            current, last = _read(await self._kv.get(CLOCK_KEY))
            new = compute(current)
            try:
                revision = await self._kv.update(CLOCK_KEY, _encode(new), last=last)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            self._apply(new, revision)
            return new

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task


class _Compute(Protocol):
    def __call__(self, current: datetime, /) -> datetime: ...


async def _bucket(js: JetStreamContext, replicas: int) -> KeyValue:
    try:
        return await js.key_value(CLOCK_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=CLOCK_BUCKET, history=1, storage=StorageType.FILE, replicas=replicas
            )
        )


async def wait_or_wake(clock: Clock, seconds: float, wake: asyncio.Event) -> None:
    """Pause up to ``seconds`` of ``clock``, or less when ``wake`` is set (or time changes)."""
    waiters = [
        asyncio.ensure_future(clock.wait(seconds)),
        asyncio.ensure_future(wake.wait()),
    ]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
