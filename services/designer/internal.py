"""Routes for the other services only (never routed by the gateway)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.designer.access import check_granted
from services.designer.context import SECRETS, session_dep
from services.designer.repository import (
    ApiKeyRepository,
    ConnectorRepository,
    EventTriggerRepository,
    FolderRepository,
    JourneyRepository,
    SettingsRepository,
    TemplateRepository,
    WebhookSourceRepository,
)
from services.designer.resources import webhook_source_secrets
from services.designer.schemas import WorkspaceSettingsBody
from services.designer.secrets import SecretBox
from shared.app import get_state
from shared.problems import not_found

router = APIRouter(prefix="/internal", include_in_schema=False)
Session = Annotated[AsyncSession, Depends(session_dep, scope="function")]


@router.get("/auth/{key_hash}")
async def resolve_key(session: Session, key_hash: str) -> dict[str, Any]:
    """The identity behind an API key's hash; 404 when unknown or revoked."""
    found = await ApiKeyRepository(session).active_by_hash(key_hash)
    if found is None:
        raise not_found("key")
    key, workspace = found
    return {
        "key_id": key.id,
        "workspace_id": key.workspace_id,
        "role": key.role,
        "folder_ids": list(key.folder_ids),
        "bootstrap": workspace.is_bootstrap,
    }


@router.get("/journeys/revision")
async def journeys_revision(session: Session) -> dict[str, str]:
    """Changes whenever any journey changes: the runtime reloads when it does."""
    return {"revision": await JourneyRepository(session).revision()}


@router.get("/workspaces/{workspace_id}/journeys/{journey_id}/access")
async def journey_access(
    session: Session, workspace_id: str, journey_id: str, folders: str = ""
) -> dict[str, bool]:
    """200 when a caller with these folder grants (comma separated; none: all) sees it; 404
    when the workspace has no such journey, 403 when the grants do not cover its folder."""
    roots = [f for f in folders.split(",") if f]
    allowed = await FolderRepository(session).subtree_ids(workspace_id, roots) if roots else None
    journey = await JourneyRepository(session).get(workspace_id, journey_id, None)
    if journey is None:
        raise not_found(f"journey {journey_id}")
    check_granted(allowed, journey.folder_id)
    return {"visible": True}


@router.get("/workspaces/{workspace_id}/journeys/granted")
async def granted_journeys(session: Session, workspace_id: str, folders: str) -> dict[str, Any]:
    """Ids of the workspace's journeys that folder grants (comma separated) cover: what a
    key limited to those folders sees of a profile's journeys, timeline and explanations."""
    roots = [f for f in folders.split(",") if f]
    allowed = await FolderRepository(session).subtree_ids(workspace_id, roots)
    return {"journey_ids": await JourneyRepository(session).ids_in(workspace_id, allowed)}


@router.get("/journeys/live")
async def live_journeys(session: Session) -> dict[str, Any]:
    """Every published version of every live or paused journey, and every workspace with
    its default timezone, for the runtime."""
    repo = JourneyRepository(session)
    rows = await repo.published_for_runtime()
    workspaces = await repo.workspaces_for_runtime()
    return {
        "workspaces": [{"workspace_id": ws, "default_timezone": tz} for ws, tz in workspaces],
        "items": [
            {
                "journey_id": journey.id,
                "workspace_id": journey.workspace_id,
                "status": journey.status,
                "live_version": journey.live_version,
                "version": version.version,
                "body": version.body,
            }
            for journey, version in rows
        ],
    }


@router.get("/event-triggers")
async def event_triggers(session: Session) -> dict[str, Any]:
    """Every event trigger (draft or published) with its declaration, for the runtime to
    count what it receives of each."""
    rows = await EventTriggerRepository(session).every()
    return {
        "items": [
            {"id": t.id, "workspace_id": t.workspace_id, "name": t.name,
             "properties": t.properties, "required": t.required}
            for t in rows
        ]
    }  # fmt: skip


@router.get("/workspaces/{workspace_id}/connectors/{connector_id}")
async def connector(
    request: Request, session: Session, workspace_id: str, connector_id: str
) -> dict[str, Any]:
    """A connector with its secrets, for the activator to deliver through."""
    found = await ConnectorRepository(session).get(workspace_id, connector_id)
    if found is None:
        raise not_found(f"connector {connector_id}")
    box: SecretBox = get_state(request).extras[SECRETS]
    return {
        "id": found.id,
        "type": found.type,
        "config": {**found.config, **box.open(found.secrets)},
    }


@router.get("/workspaces/{workspace_id}/templates/{template_id}")
async def template(session: Session, workspace_id: str, template_id: str) -> dict[str, Any]:
    found = await TemplateRepository(session).get(workspace_id, template_id)
    if found is None:
        raise not_found(f"template {template_id}")
    return {
        "id": found.id,
        "channel": found.channel,
        "subject": found.subject,
        "body": found.body,
        "html": found.html,
        "title": found.title,
        "data": found.data,
        "status": found.status,
    }


@router.get("/webhooks/sources/{source_id}")
async def webhook_source(request: Request, session: Session, source_id: str) -> dict[str, Any]:
    """A webhook source with its secret, for the gateway to verify and map deliveries."""
    found = await WebhookSourceRepository(session).get(None, source_id)
    if found is None:
        raise not_found(f"webhook source {source_id}")
    state = get_state(request)
    box: SecretBox = state.extras[SECRETS]
    return {
        "id": found.id,
        "workspace_id": found.workspace_id,
        "mapping": found.mapping,
        **webhook_source_secrets(box.open(found.secret), state.clock.now()),
    }


@router.get("/workspaces/{workspace_id}/settings")
async def workspace_settings(session: Session, workspace_id: str) -> dict[str, Any]:
    stored = await SettingsRepository(session).get(workspace_id)
    return WorkspaceSettingsBody.model_validate(stored or {}).model_dump(mode="json")
