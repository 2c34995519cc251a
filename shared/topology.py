"""The JetStream streams and subjects the services talk over.

Services create what they use at start (idempotently), so no process has to run first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    description: str
    max_age_s: float = 7 * 24 * 3600
    duplicate_window_s: float = 2 * 3600


EVENTS = StreamSpec(
    "EVENTS", ("events.>",), "Accepted customer events: events.<workspace>.<partition>"
)
TIMERS = StreamSpec("TIMERS", ("timers.>",), "timers.schedule / timers.cancel / timers.fired")
ACTIVATIONS = StreamSpec("ACTIVATIONS", ("activations.>",), "activations.requested")
JOURNEYS = StreamSpec("JOURNEYS", ("journeys.>",), "journeys.changed")
DEADLETTER = StreamSpec(
    "DEADLETTER",
    ("deadletter.>",),
    "Messages a consumer could not process, with the reason in headers",
    max_age_s=30 * 24 * 3600,
)

ALL_STREAMS: tuple[StreamSpec, ...] = (EVENTS, TIMERS, ACTIVATIONS, JOURNEYS, DEADLETTER)

CLOCK_BUCKET = "waypost_clock"
CLOCK_KEY = "now"


def dead_letter_subject(stream: str, consumer: str) -> str:
    return f"deadletter.{stream}.{consumer}"
