"""Keeps child processes running: restarts one that dies, with backoff while it keeps dying,
and stops them all when asked: in waves (``ChildSpec.stop_wave``, lowest first, so the
entry stops taking work before the consumers drain, and what they call stops last), each
with TERM, then KILL for whatever is left when the grace period is over."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from waypost.embedded import die_with_parent

FIRST_RESTART_S = 0.5
MAX_RESTART_S = 5.0
HEALTHY_AFTER_S = 30.0  # a child that ran this long has its backoff reset
DEFAULT_GRACE_S = 15.0  # how long stopping children may take before they are killed


@dataclass
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_file: Path
    stop_wave: int = 0  # stopped after every child of a lower wave has exited


@dataclass
class Child:
    spec: ChildSpec
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    pids: list[int] = field(default_factory=list)


def next_backoff(previous: float, lived_s: float) -> float:
    """Restart quickly; double the wait only while the same child keeps dying young."""
    if lived_s >= HEALTHY_AFTER_S or previous <= 0:
        return FIRST_RESTART_S
    return min(MAX_RESTART_S, previous * 2)


async def spawn(spec: ChildSpec) -> asyncio.subprocess.Process:
    """Start ``spec`` with its output appended to its log; it dies with this process."""
    spec.log_file.parent.mkdir(parents=True, exist_ok=True)
    with spec.log_file.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            *spec.argv,
            env=dict(spec.env),
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us; we stop children in order
            preexec_fn=die_with_parent,
        )


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ChildSpec],
        report: Callable[[str], None],
        grace_s: float = DEFAULT_GRACE_S,
    ) -> None:
        self.children = [Child(spec) for spec in specs]
        self._report = report
        self._grace_s = grace_s
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for child in self.children:
            await self._spawn(child)
            self._tasks.append(asyncio.create_task(self._watch(child), name=child.spec.name))

    async def _spawn(self, child: Child) -> None:
        child.proc = await spawn(child.spec)
        child.pids.append(child.proc.pid)

    async def _watch(self, child: Child) -> None:
        backoff = 0.0
        while True:
            assert child.proc is not None
            started = time.monotonic()
            code = await child.proc.wait()
            if self._stopping.is_set():
                return
            backoff = next_backoff(backoff, time.monotonic() - started)
            self._report(
                f"{child.spec.name} exited with code {code}; restarting in {backoff:.1f}s"
                f" (log: {child.spec.log_file})"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
            if self._stopping.is_set():
                return
            child.restarts += 1
            await self._spawn(child)

    async def stop(self) -> None:
        self._stopping.set()
        deadline = time.monotonic() + self._grace_s
        for wave in sorted({c.spec.stop_wave for c in self.children}):
            children = [c for c in self.children if c.spec.stop_wave == wave]
            await self._stop_wave(children, deadline)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stop_wave(self, children: Sequence[Child], deadline: float) -> None:
        running = [c for c in children if c.proc and c.proc.returncode is None]
        procs = [c.proc for c in running if c.proc is not None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(p.wait() for p in procs)),
                timeout=max(0.0, deadline - time.monotonic()),
            )
        except TimeoutError:
            for proc in procs:
                if proc.returncode is None:
                    self._report(f"pid {proc.pid} did not stop in {self._grace_s}s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*(p.wait() for p in procs))
        for child in running:
            code = child.proc.returncode if child.proc else None
            # A server that re-raises the TERM it handled, once shut down, ends with it.
            if code not in (0, -signal.SIGTERM, None):
                self._report(
                    f"{child.spec.name} exited with code {code} while stopping"
                    f" (log: {child.spec.log_file})"
                )
