"""Each event partition is consumed by exactly one runtime replica at a time, so a profile's
events are applied in order; replicas share the partitions fairly and take over those of a
replica that dies.

Ownership is a PostgreSQL session advisory lock per partition, held on one connection: if
the process dies the lock goes with its connection. Each replica heartbeats into
``runtime.members``; with L live replicas each aims for ceil(N / L) partitions, taking free
ones and giving back extras after the batch in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import zlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from services.runtime.repository import RuntimeRepository
from shared import db
from shared.bus import Consumer
from shared.logging import get_logger

log = get_logger(__name__)

HEARTBEAT_S = 2.0
ALIVE_S = 10


def lock_key(partition: int) -> int:
    return zlib.crc32(f"waypost-runtime-partition-{partition}".encode())


class PartitionLeases:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        partitions: int,
        member_id: str,
        consumer_for: Callable[[int], Awaitable[Consumer]],
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._partitions = partitions
        self._member_id = member_id
        self._consumer_for = consumer_for
        self.owned: dict[int, Consumer] = {}
        self._conn: AsyncConnection | None = None

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.rebalance()
                except Exception as exc:
                    log.warning("partitions.rebalance_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(HEARTBEAT_S)
        finally:
            await self.release_all()

    async def rebalance(self) -> None:
        await self._hold_connection()
        share = await self._fair_share()
        if len(self.owned) > share:
            for partition in sorted(self.owned)[share:]:
                await self._release(partition)
        start = zlib.crc32(self._member_id.encode()) % self._partitions
        for offset in range(self._partitions):
            if len(self.owned) >= share:
                break
            partition = (start + offset) % self._partitions
            if partition not in self.owned and await self._try_lock(partition):
                self.owned[partition] = await self._consumer_for(partition)
                log.info("partitions.acquired", partition=partition, owned=len(self.owned))

    async def _hold_connection(self) -> None:
        """The locks live on one connection. If it was lost (the database restarted) they
        went with it and another replica may own those partitions already: stop consuming
        them, and start again on a new connection."""
        if self._conn is not None:
            try:
                await self._conn.execute(text("SELECT 1"))
                return
            except Exception as exc:
                log.warning("partitions.connection_lost", owned=len(self.owned),
                            error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            for partition in list(self.owned):
                await self.owned.pop(partition).stop()
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
        conn = await self._engine.connect()
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        self._conn = conn

    async def _fair_share(self) -> int:
        async with db.transaction(self._sessions) as session:
            repo = RuntimeRepository(session)
            now = await session.scalar(text("SELECT now()"))
            await repo.heartbeat(self._member_id, now)
            live = await repo.live_members(now - timedelta(seconds=ALIVE_S))
        return math.ceil(self._partitions / max(1, live))

    async def _try_lock(self, partition: int) -> bool:
        assert self._conn is not None
        got = await self._conn.scalar(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(partition)}
        )
        return bool(got)

    async def _release(self, partition: int) -> None:
        consumer = self.owned.pop(partition)
        await consumer.stop()  # finishes and acks the batch in hand first
        assert self._conn is not None
        await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(partition)})
        log.info("partitions.released", partition=partition)

    async def release_all(self) -> None:
        """Every partition's consumer stops at once, each after the batch in hand (one at
        a time, each waiting out its open pull, took a second per partition); then the
        locks are let go, one by one on the one connection."""
        owned, self.owned = self.owned, {}
        await asyncio.gather(*(c.stop() for c in owned.values()), return_exceptions=True)
        for partition in owned:
            with contextlib.suppress(Exception):
                assert self._conn is not None
                await self._conn.execute(
                    text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(partition)}
                )
                log.info("partitions.released", partition=partition)
        with contextlib.suppress(Exception):
            async with db.transaction(self._sessions) as session:
                await RuntimeRepository(session).leave_members(self._member_id)
        if self._conn is not None:
            await self._conn.close()
