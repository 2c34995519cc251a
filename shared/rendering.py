"""Rendering tenants' templates within a budget, off the event loop.

A template is code a tenant wrote: nested loops or a doubling ``{% set %}`` can take seconds
of CPU or gigabytes of memory, and a render on a service's event loop stalls every request
and message of every tenant for that long. A thread cannot be stopped once it runs away; a
process can. So ``Renderer`` renders in a small pool of worker processes (``pebble``): each
render has a wall-clock budget, after which its worker is killed and replaced, and each
worker runs under an address-space limit, so an allocation past the memory budget fails
with ``MemoryError`` inside it instead of swapping the machine. Either ends as a
``TemplateError`` naming the limit.

Most templates never need this: ``templating.inline_safe`` recognises from the compiled
tree those whose cost is linear in their source and context (no loops, calls, macros or
assignments, only filters that do not amplify), and those are rendered in the caller, as
cheaply as before. The pool starts on its first use, off the loop, and its workers are
forked from one server process that has the template module imported already.

``offload`` runs any other pure function of the module's kind (link rewriting of a large
email) in the same pool under the same budget.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessPool
from prometheus_client import CollectorRegistry, Counter

from shared import templating
from shared.logging import get_logger
from shared.templating import MAX_OUTPUT_CHARS, Rendered, TemplateContent, TemplateError

log = get_logger(__name__)

T = TypeVar("T")

# Defaults of the settings that choose them (``render_*`` in the activator and designer).
TIME_LIMIT_S = 2.0
MEMORY_LIMIT_MIB = 256
WORKERS = 2
_MIB = 1024 * 1024


class RenderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.renders = Counter(
            "waypost_template_renders_total",
            "Template renders by where they ran: inline (in the service) or pool (a worker)",
            ["mode"],
            registry=registry,
        )
        self.refused = Counter(
            "waypost_template_limit_exceeded_total",
            "Renders stopped by a budget: time, memory or output",
            ["limit"],
            registry=registry,
        )


class Renderer:
    """Renders ``TemplateContent`` under ``time_limit_s`` of wall-clock time, a worker
    memory budget of ``memory_limit_mib`` and ``max_chars`` of output per part."""

    def __init__(
        self,
        *,
        workers: int = WORKERS,
        time_limit_s: float = TIME_LIMIT_S,
        memory_limit_mib: int = MEMORY_LIMIT_MIB,
        max_chars: int = MAX_OUTPUT_CHARS,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.time_limit_s = time_limit_s
        self.memory_limit_mib = memory_limit_mib
        self.max_chars = max_chars
        self._workers = workers
        self._metrics = RenderMetrics(registry or CollectorRegistry())
        self._pool: ProcessPool | None = None
        self._starting = asyncio.Lock()

    async def render(self, content: TemplateContent, context: Mapping[str, Any]) -> Rendered:
        """Renders every part of ``content``; raises only ``TemplateError``."""
        try:
            if templating.inline_safe(content):
                self._metrics.renders.labels("inline").inc()
                return templating.render(content, context, max_chars=self.max_chars)
            self._metrics.renders.labels("pool").inc()
            return await self._run(
                templating.render, content, dict(context), max_chars=self.max_chars
            )
        except TemplateError as exc:
            if exc.limit is not None:
                self._metrics.refused.labels(exc.limit).inc()
            raise

    async def offload(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker under the same budget (a module-level function
        whose arguments and result pickle); a ``TemplateError`` when over it."""
        return await self._run(function, *args)

    @classmethod
    def from_settings(cls, settings: Any, registry: CollectorRegistry) -> Renderer:
        """From a service's ``render_workers``, ``render_time_limit_s`` and
        ``render_memory_mib`` settings."""
        return cls(
            workers=settings.render_workers,
            time_limit_s=settings.render_time_limit_s,
            memory_limit_mib=settings.render_memory_mib,
            registry=registry,
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()  # type: ignore[no-untyped-call]
            await asyncio.to_thread(pool.join)

    async def _run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        pool = await self._started()
        try:
            future = pool.schedule(function, args, kwargs, timeout=self.time_limit_s)
        except RuntimeError:  # the pool stopped (broken): start another for the next call
            self._pool = None
            raise TemplateError("the rendering workers are restarting; try again") from None
        try:
            return await asyncio.wrap_future(future)
        except TimeoutError:
            raise TemplateError(
                f"rendering took longer than {self.time_limit_s:g} s (the time limit)", "time"
            ) from None
        except ProcessExpired as exc:
            # Killed from outside (the kernel's OOM killer, most likely), not by our limit.
            raise TemplateError(
                f"rendering stopped its worker (exit code {exc.exitcode}), over the memory "
                f"limit of {self.memory_limit_mib} MiB",
                "memory",
            ) from None
        except (BrokenProcessPool, CancelledError) as exc:
            if isinstance(exc, BrokenProcessPool):
                self._pool = None
            raise TemplateError(f"the rendering worker failed: {type(exc).__name__}") from None

    async def _started(self) -> ProcessPool:
        if self._pool is not None:
            return self._pool
        async with self._starting:
            if self._pool is None:
                # Starting the fork server and the first workers blocks for a moment.
                self._pool = await asyncio.to_thread(self._new_pool)
            return self._pool

    def _new_pool(self) -> ProcessPool:
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that imported what a render needs once; the service's
        # own modules (and threads, and connections) stay out of them.
        context.set_forkserver_preload(["__main__", "shared.templating"])
        pool = ProcessPool(
            max_workers=self._workers,
            initializer=_limit_worker,
            initargs=(self.memory_limit_mib,),
            context=context,
        )
        # Start the workers now, here, rather than inside the first render's budget.
        pool.schedule(os.getpid).result()
        log.info("rendering.pool_started", workers=self._workers)
        return pool


def _limit_worker(memory_limit_mib: int) -> None:
    """In each worker: its address space may grow by the budget beyond what it has now."""
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = current + memory_limit_mib * _MIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    templating.MEMORY_LIMIT_MIB = memory_limit_mib


__all__ = ["MEMORY_LIMIT_MIB", "TIME_LIMIT_S", "WORKERS", "RenderMetrics", "Renderer"]
