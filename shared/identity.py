"""Who is calling: resolved once by the gateway from the API key, carried to the services
in headers the gateway sets (and strips from every incoming request).

The role sets below are the one definition of who may do what: the gateway's route table
(``gateway/routes.py``) authorises with them, and every public route of a service checks
the same set again with ``require`` (defence in depth: a request that reaches a service
by any other way still meets its role check)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request

from shared.logging import get_logger
from shared.metrics import BoundaryMetrics
from shared.problems import ProblemError, forbidden

log = get_logger(__name__)

HEADER_PREFIX = "x-waypost-"
KEY_HEADER = "x-waypost-key-id"
WORKSPACE_HEADER = "x-waypost-workspace"
ROLE_HEADER = "x-waypost-role"
FOLDERS_HEADER = "x-waypost-folders"
BOOTSTRAP_HEADER = "x-waypost-bootstrap"


class Role(StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"
    INGEST = "ingest"


ANY_KEY = frozenset(Role)
READ = frozenset({Role.ADMIN, Role.EDITOR, Role.VIEWER})
WRITE = frozenset({Role.ADMIN, Role.EDITOR})
ADMIN = frozenset({Role.ADMIN})
INGEST = frozenset({Role.ADMIN, Role.EDITOR, Role.INGEST})


@dataclass(frozen=True)
class Identity:
    key_id: str
    workspace_id: str
    role: Role
    # Empty means the whole workspace; otherwise these folders and their subtrees.
    folder_ids: tuple[str, ...] = field(default=())
    bootstrap: bool = False

    @property
    def unrestricted(self) -> bool:
        return self.role is Role.ADMIN or not self.folder_ids

    @property
    def may_bootstrap(self) -> bool:
        """Creating workspaces and keys in other workspaces: an admin key of the bootstrap
        workspace only (any other key of that workspace is an ordinary key of it)."""
        return self.bootstrap and self.role is Role.ADMIN

    def headers(self) -> dict[str, str]:
        return {
            KEY_HEADER: self.key_id,
            WORKSPACE_HEADER: self.workspace_id,
            ROLE_HEADER: self.role.value,
            FOLDERS_HEADER: ",".join(self.folder_ids),
            BOOTSTRAP_HEADER: "1" if self.bootstrap else "0",
        }


def identity_from_request(request: Request) -> Identity:
    """FastAPI dependency for service routes that act for a caller."""
    h = request.headers
    workspace, role, key = h.get(WORKSPACE_HEADER), h.get(ROLE_HEADER), h.get(KEY_HEADER)
    if not (workspace and role and key) or role not in Role.__members__.values():
        raise ProblemError(401, "Unauthorized", "no caller identity on this request")
    folders = tuple(f for f in h.get(FOLDERS_HEADER, "").split(",") if f)
    return Identity(key, workspace, Role(role), folders, h.get(BOOTSTRAP_HEADER) == "1")


def require(roles: frozenset[Role]) -> Callable[..., Any]:
    """A FastAPI dependency: the caller, when its role is one of ``roles``; else 403.

    The dependency carries ``roles`` so a test can walk every route and compare them with
    the gateway's route table."""

    async def dependency(
        request: Request, identity: Annotated[Identity, Depends(identity_from_request)]
    ) -> Identity:
        if identity.role not in roles:
            metrics = getattr(request.app.state, "boundary_metrics", None)
            if isinstance(metrics, BoundaryMetrics):
                metrics.role_refused.labels(identity.role.value).inc()
            log.warning("service.role_refused", role=identity.role.value, path=request.url.path)
            raise forbidden(f"a {identity.role.value} key may not do this")
        return identity

    dependency.roles = roles  # type: ignore[attr-defined]
    return dependency


def roles_of(dependency: object) -> frozenset[Role] | None:
    """The role set a ``require`` dependency checks, or None for any other callable."""
    roles = getattr(dependency, "roles", None)
    return roles if isinstance(roles, frozenset) else None
