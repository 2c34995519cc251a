"""Who is calling: resolved once by the gateway from the API key, carried to the services
in headers the gateway sets (and strips from every incoming request)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from fastapi import Request

from shared.problems import ProblemError

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
