"""Every public route of every service checks the caller's role itself, with the same role
set as the gateway's route table: walked over both tables, so a route added to either
without its counterpart fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from gateway.routes import ROUTES, MethodNotAllowed, match
from services.activator.app import create_app as create_activator
from services.designer.app import create_app as create_designer
from services.runtime.app import create_app as create_runtime
from services.scheduler.app import create_app as create_scheduler
from shared.identity import Role, roles_of


def _apps() -> dict[str, FastAPI]:
    return {
        "designer": create_designer(),
        "runtime": create_runtime(),
        "scheduler": create_scheduler(),
        "activator": create_activator(),
    }


def _checked_roles(dependant: Dependant) -> list[frozenset[Role]]:
    found = []
    for sub in dependant.dependencies:
        roles = roles_of(sub.call)
        if roles is not None:
            found.append(roles)
        found += _checked_roles(sub)
    return found


def _flat(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Routes of included routers too (kept as their routers here)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flat(included.routes)
        else:
            yield route


def _public_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    for route in _flat(app.routes):
        if isinstance(route, APIRoute) and route.path.startswith("/v1/"):
            for method in sorted(route.methods):
                yield method, route.path, route


def _concrete(path: str) -> str:
    """A path of the template with every parameter filled, as a client would send it."""
    return re.sub(r"\{[^}]+\}", "x1", path)


SERVICE_ROUTES = [
    pytest.param(service, method, path, route, id=f"{service} {method} {path}")
    for service, app in _apps().items()
    for method, path, route in _public_routes(app)
]


def test_there_are_public_routes_to_check() -> None:
    assert {p.values[0] for p in SERVICE_ROUTES} == {"designer", "runtime", "activator"}


@pytest.mark.parametrize(("service", "method", "path", "route"), SERVICE_ROUTES)
def test_each_service_route_checks_the_gateways_roles(
    service: str, method: str, path: str, route: APIRoute
) -> None:
    checks = _checked_roles(route.dependant)
    assert len(checks) == 1, f"{method} {path} has {len(checks)} role checks"
    rule = match(method, _concrete(path))
    assert rule is not None, f"{method} {path} is not in the gateway's route table"
    if rule.service == "gateway":
        pytest.skip("the gateway answers this method itself; never forwarded")
    assert rule.service == service
    assert checks[0] == rule.roles, f"{method} {path}: {checks[0]} vs the gateway's {rule.roles}"


def test_every_forwarded_gateway_rule_is_served_with_a_check() -> None:
    """The other way round: each rule of the table that forwards meets at least one
    route of its service, and all of those check the rule's roles."""
    served: dict[int, list[frozenset[Role]]] = {}
    for service, app in _apps().items():
        for method, path, route in _public_routes(app):
            try:
                rule = match(method, _concrete(path))
            except MethodNotAllowed:
                continue
            if rule is not None and rule.service == service:
                served.setdefault(ROUTES.index(rule), []).extend(_checked_roles(route.dependant))
    for index, rule in enumerate(ROUTES):
        if rule.service == "gateway":
            continue
        assert index in served, f"no {rule.service} route serves {rule.pattern.pattern}"
        assert set(served[index]) == {rule.roles}, rule.pattern.pattern
