"""Which service owns which public path. First match wins."""

from __future__ import annotations

import re

ROUTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), service)
    for pattern, service in (
        (r"^/v1/journeys/simulate$", "runtime"),
        (r"^/v1/journeys/[^/]+/(profiles|analytics)(/.*)?$", "runtime"),
        (r"^/v1/(workspaces|api-keys|folders|journeys|templates|connectors)(/.*)?$", "designer"),
        (r"^/v1/(workspace|webhooks/sources)(/.*)?$", "designer"),
        (r"^/v1/(events|profiles)(/.*)?$", "runtime"),
        (r"^/v1/timers(/.*)?$", "scheduler"),
        (r"^/v1/deliveries(/.*)?$", "activator"),
    )
)


def owner(path: str) -> str | None:
    for pattern, service in ROUTES:
        if pattern.match(path):
            return service
    return None
