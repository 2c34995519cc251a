"""The scheduler's Prometheus metrics, on its app's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pending = Gauge(
            "waypost_scheduler_timers_pending",
            "Timers waiting to fall due (recounted every few seconds)",
            registry=registry,
        )
        self.fired = Counter(
            "waypost_scheduler_timers_fired_total",
            "Timers released as timers.fired by this process",
            ["kind"],
            registry=registry,
        )
        self.lateness = Histogram(
            "waypost_scheduler_fire_lateness_seconds",
            "From a timer's due time to the ack of its timers.fired message",
            registry=registry,
            buckets=LATENESS_BUCKETS,
        )
        self.dead = Counter(
            "waypost_scheduler_timers_dead_lettered_total",
            "Due timers whose message the server could never take, dead-lettered and cancelled",
            registry=registry,
        )
