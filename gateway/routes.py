"""Every public /v1 route: which service owns it and which roles may call it.

A path this table does not list does not exist (404), so no route can be reachable
without a rule. The role sets are shared/identity.py's: each service checks the same set
again on its own route. Folder grants and workspace scoping are then applied by the
owning service to the rows themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.identity import ADMIN, ANY_KEY, INGEST, READ, WRITE, Role

GET = frozenset({"GET", "HEAD"})
CHANGE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALL = GET | CHANGE


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    methods: frozenset[str]
    service: str  # "gateway" for routes the gateway answers itself
    roles: frozenset[Role]
    label: str  # the pattern as metrics show it: each id is {id}


def _r(pattern: str, methods: frozenset[str], service: str, roles: frozenset[Role]) -> Route:
    label = pattern.replace(ID, "{id}")
    return Route(re.compile(f"^{pattern}$"), methods, service, roles, label)


ID = r"[^/]+"
ROUTES: tuple[Route, ...] = (
    _r("/v1/me", GET, "gateway", ANY_KEY),
    _r("/v1/admin/clock", GET | {"POST"}, "gateway", ADMIN),
    _r("/v1/workspaces", frozenset({"POST"}), "designer", ADMIN),
    _r(f"/v1/api-keys(/{ID})?", ALL, "designer", ADMIN),
    _r("/v1/folders", GET, "designer", READ),
    _r("/v1/folders", frozenset({"POST"}), "designer", WRITE),
    _r("/v1/journeys/simulate", frozenset({"POST"}), "runtime", WRITE),
    _r(f"/v1/journeys/{ID}/profiles", GET, "runtime", WRITE),
    _r(f"/v1/journeys/{ID}/analytics", GET, "runtime", READ),
    _r(f"/v1/journeys/{ID}/experiments/{ID}", GET, "runtime", READ),
    _r(f"/v1/journeys(/{ID}(/versions(/{ID})?)?)?", GET, "designer", READ),
    # A dry run of a migrating publish: it changes nothing, but it counts who is inside.
    _r(f"/v1/journeys/{ID}/publish/preview", frozenset({"POST"}), "designer", WRITE),
    _r(f"/v1/journeys(/{ID}(/.*)?)?", CHANGE, "designer", WRITE),
    _r(f"/v1/templates(/{ID})?", GET, "designer", READ),
    _r(f"/v1/templates/{ID}/preview", frozenset({"POST"}), "designer", READ),
    _r(f"/v1/templates(/{ID})?", CHANGE, "designer", WRITE),
    _r(f"/v1/event-triggers(/{ID})?", GET, "designer", READ),
    _r(f"/v1/event-triggers(/{ID})?", CHANGE, "designer", WRITE),
    _r(f"/v1/connectors(/{ID})?", GET, "designer", READ),
    _r(f"/v1/connectors(/{ID}(/test)?)?", CHANGE, "designer", ADMIN),
    _r("/v1/workspace/settings", GET, "designer", READ),
    _r("/v1/workspace/settings", frozenset({"PUT"}), "designer", ADMIN),
    _r(f"/v1/webhooks/sources(/{ID})?", ALL, "designer", ADMIN),
    _r(f"/v1/webhooks/sources/{ID}/rotate", frozenset({"POST"}), "designer", ADMIN),
    _r("/v1/events(/batch)?", frozenset({"POST"}), "gateway", INGEST),
    # After the reads: the runtime stays the owner of the profile path for the docs.
    _r("/v1/profiles", GET, "runtime", READ),
    _r(f"/v1/profiles/{ID}(/timeline|/explain)?", GET, "runtime", READ),
    _r(f"/v1/profiles/{ID}", frozenset({"PUT"}), "gateway", INGEST),
    _r(f"/v1/profiles/{ID}", frozenset({"DELETE"}), "runtime", ADMIN),
    _r("/v1/deliveries", GET, "activator", READ),
)


class MethodNotAllowed(Exception):
    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed


def match(method: str, path: str) -> Route | None:
    """The rule for ``method path``; ``None`` if the path is unknown."""
    allowed: set[str] = set()
    for route in ROUTES:
        if route.pattern.match(path):
            if method in route.methods:
                return route
            allowed |= route.methods
    if allowed:
        raise MethodNotAllowed(allowed)
    return None


def owner(path: str) -> str | None:
    """The service that owns ``path`` for any method, if any."""
    for route in ROUTES:
        if route.pattern.match(path):
            return route.service
    return None
