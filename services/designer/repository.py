"""All SQL of the designer. Every query is scoped to one workspace."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.designer.models import (
    ApiKey,
    Connector,
    EventTrigger,
    Folder,
    Journey,
    JourneyVersion,
    Template,
    WebhookSource,
    Workspace,
    WorkspaceSettings,
)
from shared.pagination import Keyset


def _after(stmt: Select[Any], model: Any, position: Keyset | None) -> Select[Any]:
    """Keyset pagination on (created_at, id); the position was checked by decode_cursor."""
    if position:
        created, ident = position
        stmt = stmt.where(
            or_(model.created_at > created, and_(model.created_at == created, model.id > ident))
        )
    return stmt.order_by(model.created_at, model.id)


class WorkspaceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def bootstrap(self) -> Workspace | None:
        return await self.session.scalar(select(Workspace).where(Workspace.is_bootstrap))

    async def get(self, workspace_id: str) -> Workspace | None:
        return await self.session.get(Workspace, workspace_id)

    async def add(self, workspace: Workspace) -> Workspace:
        self.session.add(workspace)
        await self.session.flush()
        return workspace


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        return await self.session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))

    async def active_by_hash(self, key_hash: str) -> tuple[ApiKey, Workspace] | None:
        row = (
            await self.session.execute(
                select(ApiKey, Workspace)
                .join(Workspace, Workspace.id == ApiKey.workspace_id)
                .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def any_active_admin(self, workspace_id: str) -> bool:
        found = await self.session.scalar(
            select(ApiKey.id).where(
                ApiKey.workspace_id == workspace_id,
                ApiKey.role == "admin",
                ApiKey.revoked_at.is_(None),
            )
        )
        return found is not None

    async def get(self, workspace_id: str, key_id: str) -> ApiKey | None:
        return await self.session.scalar(
            select(ApiKey).where(
                ApiKey.id == key_id, ApiKey.workspace_id == workspace_id,
                ApiKey.revoked_at.is_(None),
            )
        )  # fmt: skip

    async def page(
        self, workspace_id: str, position: Keyset | None, limit: int
    ) -> Sequence[ApiKey]:
        stmt = select(ApiKey).where(
            ApiKey.workspace_id == workspace_id, ApiKey.revoked_at.is_(None)
        )
        return (await self.session.scalars(_after(stmt, ApiKey, position).limit(limit))).all()

    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key


class FolderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, workspace_id: str, folder_id: str) -> Folder | None:
        return await self.session.scalar(
            select(Folder).where(Folder.id == folder_id, Folder.workspace_id == workspace_id)
        )

    async def existing(self, workspace_id: str, folder_ids: Sequence[str]) -> set[str]:
        rows = await self.session.scalars(
            select(Folder.id).where(Folder.workspace_id == workspace_id, Folder.id.in_(folder_ids))
        )
        return set(rows)

    async def name_taken(self, workspace_id: str, parent_id: str | None, name: str) -> bool:
        parent = Folder.parent_id.is_(None) if parent_id is None else Folder.parent_id == parent_id
        stmt = select(Folder.id).where(
            Folder.workspace_id == workspace_id, parent, Folder.name == name
        )
        return (await self.session.scalar(stmt.limit(1))) is not None

    async def subtree_ids(self, workspace_id: str, roots: Sequence[str]) -> set[str]:
        """The folders ``roots`` and every folder below them."""
        tree = (
            select(Folder.id)
            .where(Folder.workspace_id == workspace_id, Folder.id.in_(roots))
            .cte("tree", recursive=True)
        )
        tree = tree.union_all(select(Folder.id).join(tree, Folder.parent_id == tree.c.id))
        return set(await self.session.scalars(select(tree.c.id)))

    async def page(
        self,
        workspace_id: str,
        allowed: set[str] | None,
        position: Keyset | None,
        limit: int,
    ) -> Sequence[Folder]:
        stmt = select(Folder).where(Folder.workspace_id == workspace_id)
        if allowed is not None:
            stmt = stmt.where(Folder.id.in_(allowed))
        return (await self.session.scalars(_after(stmt, Folder, position).limit(limit))).all()

    async def add(self, folder: Folder) -> Folder:
        self.session.add(folder)
        await self.session.flush()
        return folder


class JourneyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _scoped(self, workspace_id: str, allowed: set[str] | None) -> Select[Journey]:
        stmt = select(Journey).where(Journey.workspace_id == workspace_id)
        if allowed is not None:
            stmt = stmt.where(Journey.folder_id.in_(allowed))
        return stmt

    async def get(
        self, workspace_id: str, journey_id: str, allowed: set[str] | None, *, lock: bool = False
    ) -> Journey | None:
        stmt = self._scoped(workspace_id, allowed).where(Journey.id == journey_id)
        if lock:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def ids_in(self, workspace_id: str, allowed: set[str]) -> list[str]:
        """Ids of the workspace's journeys in the folders ``allowed``."""
        stmt = select(Journey.id).where(
            Journey.workspace_id == workspace_id, Journey.folder_id.in_(allowed)
        )
        return sorted(await self.session.scalars(stmt))

    async def page(
        self,
        workspace_id: str,
        allowed: set[str] | None,
        folder_id: str | None,
        status: str | None,
        position: Keyset | None,
        limit: int,
    ) -> Sequence[Journey]:
        stmt = self._scoped(workspace_id, allowed)
        if folder_id is not None:
            stmt = stmt.where(Journey.folder_id == folder_id)
        if status is not None:
            stmt = stmt.where(Journey.status == status)
        return (await self.session.scalars(_after(stmt, Journey, position).limit(limit))).all()

    async def name_taken(
        self, workspace_id: str, folder_id: str | None, name: str, except_id: str | None
    ) -> bool:
        stmt = select(Journey.id).where(
            Journey.workspace_id == workspace_id,
            Journey.name == name,
            Journey.folder_id.is_(None) if folder_id is None else Journey.folder_id == folder_id,
        )
        if except_id is not None:
            stmt = stmt.where(Journey.id != except_id)
        return (await self.session.scalar(stmt.limit(1))) is not None

    async def version(self, journey_id: str, version: int) -> JourneyVersion | None:
        return await self.session.get(JourneyVersion, (journey_id, version))

    async def versions(
        self, journey_ids: Sequence[str], numbers: Sequence[int]
    ) -> dict[tuple[str, int], JourneyVersion]:
        if not journey_ids:
            return {}
        rows = await self.session.scalars(
            select(JourneyVersion).where(
                JourneyVersion.journey_id.in_(journey_ids), JourneyVersion.version.in_(numbers)
            )
        )
        return {(v.journey_id, v.version): v for v in rows}

    async def add(self, journey: Journey, body: dict[str, Any]) -> Journey:
        self.session.add(journey)
        await self.session.flush()
        self.session.add(JourneyVersion(journey_id=journey.id, version=1, body=body))
        await self.session.flush()
        return journey

    async def add_version(self, journey_id: str, version: int, body: dict[str, Any]) -> None:
        self.session.add(JourneyVersion(journey_id=journey_id, version=version, body=body))
        await self.session.flush()

    async def delete(self, journey_id: str) -> None:
        await self.session.execute(delete(Journey).where(Journey.id == journey_id))

    async def publish_version(self, journey_id: str, version: int) -> None:
        await self.session.execute(
            update(JourneyVersion)
            .where(JourneyVersion.journey_id == journey_id, JourneyVersion.version == version)
            .values(published=True, published_at=func.now())
        )

    async def others(self, workspace_id: str, except_id: str | None) -> Sequence[Any]:
        """Other journeys with the body that matters to them: live version, else latest."""
        number = JourneyVersion.version == func.coalesce(
            Journey.live_version, Journey.latest_version
        )
        stmt = (
            select(Journey.id, Journey.status, JourneyVersion.body)
            .join(JourneyVersion, and_(JourneyVersion.journey_id == Journey.id, number))
            .where(Journey.workspace_id == workspace_id)
        )
        if except_id is not None:
            stmt = stmt.where(Journey.id != except_id)
        return (await self.session.execute(stmt)).all()

    async def revision(self) -> str:
        """Changes whenever a journey, a workspace, a workspace's settings or an event
        trigger change: all that the runtime keeps in memory."""
        journeys = select(func.count(), func.max(Journey.updated_at))
        workspaces = select(func.count(), func.max(Workspace.created_at))
        settings = select(func.max(WorkspaceSettings.updated_at))
        triggers = select(func.count(), func.max(EventTrigger.updated_at))
        parts = [
            *(await self.session.execute(journeys)).one(),
            *(await self.session.execute(workspaces)).one(),
            await self.session.scalar(settings),
            *(await self.session.execute(triggers)).one(),
        ]
        return ":".join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)

    async def workspaces_for_runtime(self) -> list[tuple[str, str]]:
        """Every workspace with its default timezone."""
        rows = await self.session.execute(
            select(Workspace.id, WorkspaceSettings.settings)
            .outerjoin(WorkspaceSettings, WorkspaceSettings.workspace_id == Workspace.id)
            .order_by(Workspace.id)
        )
        return [(ws, (settings or {}).get("default_timezone") or "UTC") for ws, settings in rows]

    async def published_for_runtime(self) -> Sequence[Any]:
        """Every published version of every live or paused journey."""
        stmt = (
            select(Journey, JourneyVersion)
            .join(JourneyVersion, JourneyVersion.journey_id == Journey.id)
            .where(JourneyVersion.published.is_(true()), Journey.status.in_(("live", "paused")))
            .order_by(Journey.id, JourneyVersion.version)
        )
        return (await self.session.execute(stmt)).all()

    async def touch(self, journey_id: str, **values: Any) -> None:
        await self.session.execute(
            update(Journey).where(Journey.id == journey_id).values(updated_at=func.now(), **values)
        )


class TemplateRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, workspace_id: str, template_id: str) -> Template | None:
        return await self.session.scalar(
            select(Template).where(
                Template.id == template_id, Template.workspace_id == workspace_id
            )
        )

    async def by_ids(self, workspace_id: str, ids: Sequence[str]) -> Sequence[Template]:
        if not ids:
            return []
        return (
            await self.session.scalars(
                select(Template).where(Template.workspace_id == workspace_id, Template.id.in_(ids))
            )
        ).all()

    async def name_taken(self, workspace_id: str, name: str, except_id: str | None) -> bool:
        stmt = select(Template.id).where(
            Template.workspace_id == workspace_id, Template.name == name
        )
        if except_id is not None:
            stmt = stmt.where(Template.id != except_id)
        return (await self.session.scalar(stmt)) is not None

    async def page(
        self, workspace_id: str, position: Keyset | None, limit: int
    ) -> Sequence[Template]:
        stmt = select(Template).where(Template.workspace_id == workspace_id)
        return (await self.session.scalars(_after(stmt, Template, position).limit(limit))).all()

    async def add(self, template: Template) -> Template:
        self.session.add(template)
        await self.session.flush()
        return template


class ConnectorRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, workspace_id: str | None, connector_id: str) -> Connector | None:
        stmt = select(Connector).where(Connector.id == connector_id)
        if workspace_id is not None:
            stmt = stmt.where(Connector.workspace_id == workspace_id)
        return await self.session.scalar(stmt)

    async def by_ids(self, workspace_id: str, ids: Sequence[str]) -> Sequence[Connector]:
        if not ids:
            return []
        return (
            await self.session.scalars(
                select(Connector).where(
                    Connector.workspace_id == workspace_id, Connector.id.in_(ids)
                )
            )
        ).all()

    async def name_taken(self, workspace_id: str, name: str, except_id: str | None) -> bool:
        stmt = select(Connector.id).where(
            Connector.workspace_id == workspace_id, Connector.name == name
        )
        if except_id is not None:
            stmt = stmt.where(Connector.id != except_id)
        return (await self.session.scalar(stmt)) is not None

    async def page(
        self, workspace_id: str, position: Keyset | None, limit: int
    ) -> Sequence[Connector]:
        stmt = select(Connector).where(Connector.workspace_id == workspace_id)
        return (await self.session.scalars(_after(stmt, Connector, position).limit(limit))).all()

    async def add(self, connector: Connector) -> Connector:
        self.session.add(connector)
        await self.session.flush()
        return connector


class WebhookSourceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, workspace_id: str | None, source_id: str) -> WebhookSource | None:
        stmt = select(WebhookSource).where(WebhookSource.id == source_id)
        if workspace_id is not None:
            stmt = stmt.where(WebhookSource.workspace_id == workspace_id)
        return await self.session.scalar(stmt)

    async def name_taken(self, workspace_id: str, name: str) -> bool:
        stmt = select(WebhookSource.id).where(
            WebhookSource.workspace_id == workspace_id, WebhookSource.name == name
        )
        return (await self.session.scalar(stmt)) is not None

    async def page(
        self, workspace_id: str, position: Keyset | None, limit: int
    ) -> Sequence[WebhookSource]:
        stmt = select(WebhookSource).where(WebhookSource.workspace_id == workspace_id)
        return (
            await self.session.scalars(_after(stmt, WebhookSource, position).limit(limit))
        ).all()

    async def add(self, source: WebhookSource) -> WebhookSource:
        self.session.add(source)
        await self.session.flush()
        return source

    async def delete(self, workspace_id: str, source_id: str) -> bool:
        result = await self.session.execute(
            delete(WebhookSource)
            .where(WebhookSource.workspace_id == workspace_id, WebhookSource.id == source_id)
            .returning(WebhookSource.id)
        )
        return result.first() is not None


class EventTriggerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, workspace_id: str, name: str) -> EventTrigger | None:
        return await self.session.scalar(
            select(EventTrigger).where(
                EventTrigger.workspace_id == workspace_id, EventTrigger.name == name
            )
        )

    async def name_taken(self, workspace_id: str, name: str, except_id: str | None) -> bool:
        stmt = select(EventTrigger.id).where(
            EventTrigger.workspace_id == workspace_id, EventTrigger.name == name
        )
        if except_id is not None:
            stmt = stmt.where(EventTrigger.id != except_id)
        return (await self.session.scalar(stmt)) is not None

    async def page(
        self, workspace_id: str, status: str | None, position: Keyset | None, limit: int
    ) -> Sequence[EventTrigger]:
        stmt = select(EventTrigger).where(EventTrigger.workspace_id == workspace_id)
        if status is not None:
            stmt = stmt.where(EventTrigger.status == status)
        return (await self.session.scalars(_after(stmt, EventTrigger, position).limit(limit))).all()

    async def published(self, workspace_id: str) -> Sequence[EventTrigger]:
        return (
            await self.session.scalars(
                select(EventTrigger).where(
                    EventTrigger.workspace_id == workspace_id, EventTrigger.status == "published"
                )
            )
        ).all()

    async def every(self) -> Sequence[EventTrigger]:
        """Every trigger of every workspace, for the runtime's counts."""
        stmt = select(EventTrigger).order_by(EventTrigger.workspace_id, EventTrigger.name)
        return (await self.session.scalars(stmt)).all()

    async def add(self, trigger: EventTrigger) -> EventTrigger:
        self.session.add(trigger)
        await self.session.flush()
        return trigger

    async def delete(self, trigger: EventTrigger) -> None:
        await self.session.delete(trigger)
        await self.session.flush()


class SettingsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, workspace_id: str) -> dict[str, Any] | None:
        return await self.session.scalar(
            select(WorkspaceSettings.settings).where(WorkspaceSettings.workspace_id == workspace_id)
        )

    async def put(self, workspace_id: str, settings: dict[str, Any]) -> None:
        stmt = insert(WorkspaceSettings).values(workspace_id=workspace_id, settings=settings)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[WorkspaceSettings.workspace_id],
                set_={"settings": settings, "updated_at": func.now()},
            )
        )
