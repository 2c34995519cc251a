"""Prometheus metrics: one registry per app, HTTP request metrics, and the /metrics body."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "waypost_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "waypost_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )


class BoundaryMetrics:
    """Calls a service refused on its own: each means something reached it that the
    gateway should have stopped, or that did not come through the gateway at all."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.token_refused = Counter(
            "waypost_service_token_refused_total",
            "Calls to a service refused for a missing, wrong or unconfigured service token",
            ["reason"],
            registry=registry,
        )
        self.role_refused = Counter(
            "waypost_service_role_refused_total",
            "Calls to a service refused because the caller's role may not use the route",
            ["role"],
            registry=registry,
        )


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class RelayMetrics:
    """What an outbox relay could not publish: rows moved aside to the dead-letter stream
    (``too_large`` for the server's limit, ``refused`` for a row the stream kept refusing,
    ``unusable`` for a row no message could be made of)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.dead = Counter(
            "waypost_outbox_rows_dead_lettered_total",
            "Outbox rows that could not be published, moved aside with the reason",
            ["table", "reason"],
            registry=registry,
        )
        self.failing = Counter(
            "waypost_outbox_publish_refusals_total",
            "Rows not acknowledged while other rows of the same round were",
            ["table"],
            registry=registry,
        )
        self.rounds = Counter(
            "waypost_outbox_relay_rounds_total",
            "Relay rounds, by what started them (notify after a commit that wrote rows, "
            "poll, more after a full batch) and whether they found rows (rows, none)",
            ["table", "woken_by", "found"],
            registry=registry,
        )
