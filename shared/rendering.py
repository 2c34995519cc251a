"""Rendering tenants' templates within a budget, off the event loop.

A template is code a tenant wrote: nested loops or a doubling ``{% set %}`` can take seconds
of CPU or gigabytes of memory, and a render on a service's event loop stalls every request
and message of every tenant for that long. ``Renderer`` renders such templates in worker
processes (``shared.workers``) under a wall-clock and a memory budget; going over either,
like going over the output bound the sandbox enforces, is a ``TemplateError`` naming the
limit.

Most templates never need a worker: ``templating.inline_safe`` recognises from the compiled
tree those whose cost is linear in their source and context (few tags; no calls, macros or
assignments; only filters that do not amplify; loops only over a short list of the context,
not nested), and those are rendered in the caller, as cheaply as before.

``offload`` runs another pure function of the same kind (link rewriting of a large email)
in the same workers under the same budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter

from shared import templating
from shared.templating import MAX_OUTPUT_CHARS, Rendered, TemplateContent, TemplateError
from shared.workers import OverBudget, WorkerPool

T = TypeVar("T")

# Defaults of the settings that choose them (``render_*`` in the activator and designer).
TIME_LIMIT_S = 2.0
MEMORY_LIMIT_MIB = 256
WORKERS = 2


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
        self.max_chars = max_chars
        self._pool = WorkerPool(
            workers=workers,
            time_limit_s=time_limit_s,
            memory_limit_mib=memory_limit_mib,
            preload=["shared.templating"],
        )
        self._metrics = RenderMetrics(registry or CollectorRegistry())

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

    async def render(self, content: TemplateContent, context: Mapping[str, Any]) -> Rendered:
        """Renders every part of ``content``; raises only ``TemplateError``."""
        try:
            if templating.inline_safe(content, context):
                self._metrics.renders.labels("inline").inc()
                return templating.render(content, context, max_chars=self.max_chars)
            self._metrics.renders.labels("pool").inc()
            return await self._run(
                templating.render, content, dict(context), max_chars=self.max_chars
            )
        except TemplateError as exc:
            if exc.limit is not None:
                self._metrics.refused.labels(exc.limit).inc()
            if exc.limit == "memory":  # said in a worker, which does not know the budget
                limit = self._pool.memory_limit_mib
                raise TemplateError(f"{exc} of {limit} MiB", "memory") from None
            raise

    async def check(self, content: TemplateContent) -> dict[str, str]:
        """``templating.check_content`` (syntax errors per field), compiled in a worker when
        it has too many tags to compile quickly; over the budget is an error on ``body``."""
        if templating.compiles_quickly(content):
            return templating.check_content(content)
        try:
            return await self._run(templating.check_content, content)
        except TemplateError as exc:
            return {"body": f"the template cannot be checked: {exc}"}

    async def offload(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker under the same budget (a module-level function
        whose arguments and result pickle); a ``TemplateError`` when over it."""
        return await self._run(function, *args)

    async def aclose(self) -> None:
        await self._pool.close()

    async def _run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await self._pool.run(function, *args, **kwargs)
        except OverBudget as exc:
            raise TemplateError(f"rendering: {exc}", exc.limit) from None
        except TemplateError:
            raise
        except Exception as exc:
            # The workers broke down (the pool restarts on the next call): not the
            # template's fault, but it was not rendered.
            raise TemplateError(f"rendering failed: {type(exc).__name__}: {exc}") from None


__all__ = ["MEMORY_LIMIT_MIB", "TIME_LIMIT_S", "WORKERS", "RenderMetrics", "Renderer"]
