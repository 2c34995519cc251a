"""Which folders a caller may touch: its granted folders and everything below them."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.designer.repository import FolderRepository
from shared.identity import Identity
from shared.problems import forbidden


async def allowed_folders(session: AsyncSession, identity: Identity) -> set[str] | None:
    """``None`` means every folder (and the workspace root)."""
    if identity.unrestricted:
        return None
    return await FolderRepository(session).subtree_ids(identity.workspace_id, identity.folder_ids)


def check_folder(allowed: set[str] | None, folder_id: str | None) -> None:
    if allowed is None:
        return
    if folder_id is None:
        raise forbidden("this key may only use its granted folders; name one in folder_id")
    if folder_id not in allowed:
        raise forbidden("this key has no grant on that folder")


def check_granted(allowed: set[str] | None, folder_id: str | None) -> None:
    """403 for a resource of the workspace outside the caller's folder grants (another
    workspace's, or one that does not exist, is a 404 before this)."""
    if allowed is not None and (folder_id is None or folder_id not in allowed):
        where = "the workspace root" if folder_id is None else f"folder '{folder_id}'"
        raise forbidden(f"this key's folder grants do not cover {where}")
