"""The activator's Prometheus metrics, on its app's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ActivatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "waypost_activator_deliveries_total",
            "Deliveries recorded by this process, by channel and the status they were given",
            ["channel", "status"],
            registry=registry,
        )
        self.attempts = Counter(
            "waypost_activator_attempts_total",
            "Send attempts through a connector, by channel and result "
            "(sent, transient or permanent)",
            ["channel", "result"],
            registry=registry,
        )
        self.claims = Counter(
            "waypost_activator_claims_total",
            "Claims of due deliveries by the delivery loop, by what started them (poll, "
            "notify, group: a delivery group left some due, room: a place was freed, more: "
            "after a full claim) and whether they found any (rows, none)",
            ["woken_by", "found"],
            registry=registry,
        )
        self.send_latency = Histogram(
            "waypost_activator_send_seconds",
            "Time one send attempt took, by channel",
            ["channel"],
            registry=registry,
            buckets=SEND_BUCKETS,
        )
