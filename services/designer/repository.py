"""All SQL of the designer."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.designer.models import ApiKey, Workspace


class WorkspaceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def bootstrap(self) -> Workspace | None:
        return await self.session.scalar(select(Workspace).where(Workspace.is_bootstrap))

    async def add(self, workspace: Workspace) -> Workspace:
        self.session.add(workspace)
        await self.session.flush()
        return workspace


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        return await self.session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))

    async def any_active_admin(self, workspace_id: str) -> bool:
        found = await self.session.scalar(
            select(ApiKey.id).where(
                ApiKey.workspace_id == workspace_id,
                ApiKey.role == "admin",
                ApiKey.revoked_at.is_(None),
            )
        )
        return found is not None

    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key
