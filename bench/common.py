"""What every part of the benchmark shares: the counts, a figure, the report, progress."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

STARTED = time.perf_counter()
T = TypeVar("T")


@dataclass(frozen=True)
class Counts:
    publish: int = 50_000
    publish_sync_always: int = 20_000
    insert_batched: int = 100_000
    insert_per_row: int = 3_000
    timers: int = 200_000
    in_flight: int = 256
    fetch_batch: int = 500
    insert_batch: int = 5_000
    claim_batch: int = 1_000
    ingest_batched: int = 100_000
    ingest_single: int = 10_000
    ingest_batch: int = 500
    ingest_batch_clients: int = 4
    ingest_single_clients: int = 64
    e2e_profiles: int = 100_000
    e2e_events_per_profile: int = 2
    latency_per_s: int = 2_000
    latency_seconds: float = 15.0
    hops_per_s: int = 200
    wait_profiles: int = 3_000
    http_posts: int = 5_000
    replica_events: int = 40_000
    hops_seconds: float = 10.0
    deliveries_http: int = 20_000
    deliveries_smtp: int = 5_000
    timers_pending: int = 1_000_000
    timer_backlog: int = 200_000
    timer_load: int = 100_000
    timer_load_per_s: int = 5_000
    timer_probes_per_s: int = 100
    timer_commands: int = 50_000
    experiment_runs: int = 1_000

    def divided(self, by: int) -> Counts:
        """Fewer messages and rows, a lower steady rate; batch sizes and concurrency keep
        their shape."""
        return replace(
            self,
            publish=self.publish // by,
            publish_sync_always=self.publish_sync_always // by,
            insert_batched=self.insert_batched // by,
            insert_per_row=self.insert_per_row // by,
            timers=self.timers // by,
            ingest_batched=self.ingest_batched // by,
            ingest_single=self.ingest_single // by,
            e2e_profiles=self.e2e_profiles // by,
            latency_per_s=self.latency_per_s // by,
            latency_seconds=min(self.latency_seconds, 10.0),
            hops_seconds=min(self.hops_seconds, 5.0),
            wait_profiles=self.wait_profiles // by,
            http_posts=self.http_posts // by,
            replica_events=self.replica_events // by,
            deliveries_http=self.deliveries_http // by,
            deliveries_smtp=self.deliveries_smtp // by,
            timers_pending=self.timers_pending // by,
            timer_backlog=self.timer_backlog // by,
            timer_load=self.timer_load // by,
            timer_commands=self.timer_commands // by,
            experiment_runs=self.experiment_runs // by,
        )


@dataclass(frozen=True)
class Figure:
    figure: str
    value: float
    unit: str
    method: str
    target: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    servers: dict[str, str] = field(default_factory=dict)
    # service -> (peak RSS in bytes, the part of the run where it was highest)
    peak_memory: dict[str, tuple[int, str]] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        progress(f"{figure.figure}: {figure.value:,.0f} {figure.unit}")
        return figure

    def value(self, name: str) -> float | None:
        return next((f.value for f in self.figures if f.figure == name), None)

    def record_peak(self, service: str, peak_bytes: int, part: str) -> None:
        if peak_bytes > self.peak_memory.get(service, (0, ""))[0]:
            self.peak_memory[service] = (peak_bytes, part)


def progress(message: str) -> None:
    print(f"[bench {time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of ``values``."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least the first
    return ordered[int(rank) - 1]


MIB = 2**20
