"""The first workspace and its admin key, created once by ``waypost up``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.designer.keys import hash_key, new_id, new_key
from services.designer.models import ApiKey, Workspace
from services.designer.repository import ApiKeyRepository, WorkspaceRepository


@dataclass(frozen=True)
class Bootstrap:
    workspace_id: str
    new_key: str | None  # set only when a key was generated now: print it once


async def ensure_bootstrap(session: AsyncSession, admin_key: str | None) -> Bootstrap:
    """Create the bootstrap workspace if missing; make sure it has an admin key.

    A given ``admin_key`` is registered if unknown. Without one, a key is generated only
    when the workspace has no active admin key yet, so a restart prints nothing new.
    """
    workspaces, keys = WorkspaceRepository(session), ApiKeyRepository(session)
    workspace = await workspaces.bootstrap()
    if workspace is None:
        workspace = await workspaces.add(Workspace(id=new_id(), name="Default", is_bootstrap=True))
    if admin_key:
        if await keys.by_hash(hash_key(admin_key)) is None:
            await keys.add(_admin_key(workspace.id, admin_key))
        return Bootstrap(workspace.id, None)
    if await keys.any_active_admin(workspace.id):
        return Bootstrap(workspace.id, None)
    generated = new_key()
    await keys.add(_admin_key(workspace.id, generated))
    return Bootstrap(workspace.id, generated)


def _admin_key(workspace_id: str, key: str) -> ApiKey:
    return ApiKey(
        id=new_id(),
        workspace_id=workspace_id,
        name="bootstrap admin",
        role="admin",
        key_hash=hash_key(key),
    )


class NoSuchWorkspace(LookupError):
    pass


async def recovery_key(
    session: AsyncSession, role: str, workspace_id: str | None, name: str
) -> tuple[str, str]:
    """A new key of ``role`` in the workspace (the bootstrap one when None), made with
    database access alone: how an operator who lost every admin key gets back in. The
    workspace's id and the key, to be shown once (only its hash is stored)."""
    if workspace_id is None:
        workspace = await WorkspaceRepository(session).bootstrap()
    else:
        workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        raise NoSuchWorkspace(workspace_id or "bootstrap")
    key = new_key()
    await ApiKeyRepository(session).add(
        ApiKey(id=new_id(), workspace_id=workspace.id, name=name, role=role,
               key_hash=hash_key(key))
    )  # fmt: skip
    return workspace.id, key
