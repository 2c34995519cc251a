"""Worker processes for work a tenant controls the size of, under a time and memory budget.

A template or a journey simulation is shaped by what a tenant sent: run on a service's
event loop, one that takes seconds stalls every request and message of every tenant for
that long. A thread cannot be stopped once it runs away; a process can. So ``WorkerPool``
runs such work in a few worker processes (``pebble``): each call has a wall-clock budget,
after which its worker is killed and replaced, and each worker runs under an address-space
limit, so an allocation past the memory budget fails with ``MemoryError`` inside it rather
than growing the service. Going over either is ``OverBudget`` naming the limit.

The pool starts on its first use, in a thread (starting processes blocks for a moment).
Workers fork from one server process that has imported the modules named in ``preload``,
so a worker replaced after a kill is ready in milliseconds, and none of them inherits the
service's threads or connections. The functions they run must be importable and their
arguments and results picklable.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessPool

from shared.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")

_MIB = 1024 * 1024


class OverBudget(Exception):
    """The work went over ``limit`` (``time`` or ``memory``); ``str(error)`` says so."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit

    def __reduce__(self) -> tuple[type[OverBudget], tuple[str, str]]:
        return (type(self), (self.limit, str(self)))


class WorkerPool:
    """``workers`` processes; each call gets ``time_limit_s`` of wall-clock time once a
    worker has taken it, each worker ``memory_limit_mib`` beyond what it holds at start."""

    def __init__(
        self,
        *,
        workers: int,
        time_limit_s: float,
        memory_limit_mib: int,
        preload: Sequence[str] = (),
    ) -> None:
        self.workers = workers
        self.time_limit_s = time_limit_s
        self.memory_limit_mib = memory_limit_mib
        self._preload = list(preload)
        self._pool: ProcessPool | None = None
        self._starting = asyncio.Lock()

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` in a worker; raises what it raises, or
        ``OverBudget`` when it ran out of time or memory."""
        pool = await self._started()
        try:
            future = pool.schedule(function, args, kwargs, timeout=self.time_limit_s)
        except RuntimeError:  # the pool has stopped (broken): the next call starts another
            self._pool = None
            raise
        try:
            return await asyncio.wrap_future(future)
        except TimeoutError:
            raise OverBudget(
                "time", f"it took longer than {self.time_limit_s:g} s (the time limit)"
            ) from None
        except MemoryError:
            raise self.out_of_memory() from None
        except ProcessExpired as exc:
            # Killed from outside (the kernel's OOM killer, most likely), not by our budget.
            raise OverBudget(
                "memory", f"its worker was stopped (exit code {exc.exitcode}): out of memory"
            ) from None
        except (BrokenProcessPool, CancelledError):
            self._pool = None
            raise

    def out_of_memory(self) -> OverBudget:
        return OverBudget(
            "memory", f"it needs more than the memory limit of {self.memory_limit_mib} MiB"
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()  # type: ignore[no-untyped-call]
            await asyncio.to_thread(pool.join)

    async def _started(self) -> ProcessPool:
        if self._pool is not None:
            return self._pool
        async with self._starting:
            if self._pool is None:
                self._pool = await asyncio.to_thread(self._new_pool)
            return self._pool

    def _new_pool(self) -> ProcessPool:
        context = multiprocessing.get_context("forkserver")
        # The fork server is one per process: the first pool to start it chooses what it
        # imports ahead; a module another pool needs is imported by its workers on first use.
        context.set_forkserver_preload(["__main__", *self._preload])
        pool = ProcessPool(
            max_workers=self.workers,
            initializer=_limit_memory,
            initargs=(self.memory_limit_mib,),
            context=context,
        )
        # The workers start now, here, rather than inside the first call's time budget.
        pool.schedule(os.getpid).result()
        log.info("workers.started", workers=self.workers, preload=self._preload)
        return pool


def _limit_memory(memory_limit_mib: int) -> None:
    """In each worker: its address space may grow by the budget beyond what it has now."""
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = current + memory_limit_mib * _MIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


__all__ = ["OverBudget", "WorkerPool"]
