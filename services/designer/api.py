"""The designer's public routes (reached through the gateway). Thin: parse, call, answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Body, Path, Query, Response

from services.designer import resources, triggers
from services.designer.context import AdminCtx, Ctx, ReadCtx, WriteCtx
from services.designer.journeys import JourneyService
from services.designer.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    ConnectorIn,
    ConnectorOut,
    ConnectorTestIn,
    EventTriggerDetail,
    EventTriggerIn,
    EventTriggerOut,
    FolderIn,
    FolderOut,
    JourneyStatus,
    MigrationPreviewOut,
    PreviewIn,
    PreviewOut,
    PublishIn,
    TemplateIn,
    TemplateOut,
    TemplatePatch,
    WebhookSecretIn,
    WebhookSourceIn,
    WebhookSourceOut,
    WorkspaceIn,
    WorkspaceOut,
    WorkspaceSettingsBody,
    WorkspaceSettingsPatch,
)
from shared.journey import JourneyBody
from shared.pagination import Cursor, Limit, Page
from shared.problems import ProblemError

router = APIRouter(prefix="/v1")

JourneyIn = Annotated[dict[str, Any], Body(description="A journey body (see JourneyBody).")]


@router.post("/workspaces", status_code=201, response_model=WorkspaceOut, tags=["workspaces"])
async def create_workspace(ctx: AdminCtx, body: WorkspaceIn) -> WorkspaceOut:
    return await resources.create_workspace(ctx, body)


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated, tags=["api keys"])
async def create_api_key(ctx: AdminCtx, body: ApiKeyIn) -> ApiKeyCreated:
    return await resources.create_key(ctx, body)


@router.get("/api-keys", response_model=Page[ApiKeyOut], tags=["api keys"])
async def list_api_keys(ctx: AdminCtx, limit: Limit = 50, cursor: Cursor = None) -> Page[Any]:
    return await resources.list_keys(ctx, cursor, limit)


@router.delete("/api-keys/{key_id}", status_code=204, tags=["api keys"])
async def revoke_api_key(ctx: AdminCtx, key_id: str) -> Response:
    await resources.revoke_key(ctx, key_id)
    return Response(status_code=204)


@router.post("/folders", status_code=201, response_model=FolderOut, tags=["folders"])
async def create_folder(ctx: WriteCtx, body: FolderIn) -> FolderOut:
    return await resources.create_folder(ctx, body)


@router.get("/folders", response_model=Page[FolderOut], tags=["folders"])
async def list_folders(ctx: ReadCtx, limit: Limit = 50, cursor: Cursor = None) -> Page[Any]:
    return await resources.list_folders(ctx, cursor, limit)


@router.post("/journeys/validate", tags=["journeys"])
async def validate_journey(ctx: WriteCtx, body: JourneyIn) -> dict[str, bool]:
    await JourneyService(ctx).validate(body)
    return {"valid": True}


@router.post(
    "/journeys", status_code=201, tags=["journeys"],
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/JourneyBody"}}}}},
)  # fmt: skip
async def create_journey(ctx: WriteCtx, body: JourneyIn) -> dict[str, Any]:
    return await JourneyService(ctx).create(body)


@router.get("/journeys", tags=["journeys"])
async def list_journeys(
    ctx: ReadCtx,
    folder_id: Annotated[str | None, Query(max_length=64)] = None,
    status: JourneyStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[dict[str, Any]]:
    return await JourneyService(ctx).page(
        folder_id, status.value if status else None, cursor, limit
    )


@router.get("/journeys/{journey_id}", tags=["journeys"])
async def get_journey(ctx: ReadCtx, journey_id: str) -> dict[str, Any]:
    return await JourneyService(ctx).get(journey_id)


@router.get("/journeys/{journey_id}/versions/{number}", tags=["journeys"])
async def get_journey_version(
    ctx: ReadCtx, journey_id: str, number: Annotated[int, Path(ge=1)]
) -> dict[str, Any]:
    return await JourneyService(ctx).get(journey_id, number)


@router.put("/journeys/{journey_id}", tags=["journeys"])
async def update_journey(ctx: WriteCtx, journey_id: str, body: JourneyIn) -> dict[str, Any]:
    return await JourneyService(ctx).update(journey_id, body)


@router.post("/journeys/{journey_id}/publish", tags=["journeys"])
async def publish_journey(
    ctx: WriteCtx, journey_id: str, body: Annotated[PublishIn | None, Body()] = None
) -> dict[str, Any]:
    in_flight = (body or PublishIn()).in_flight
    result = await JourneyService(ctx).publish(journey_id, in_flight)
    previous = result.pop("previous_version")
    # Committed first: the runtime moves profiles only onto a version that exists.
    await ctx.session.commit()
    ctx.relay.notify()
    if in_flight == "migrate":
        result["migrated"] = await _migrate(ctx, journey_id, previous, result["version"])
    return result


@router.post(
    "/journeys/{journey_id}/publish/preview", response_model=MigrationPreviewOut, tags=["journeys"]
)
async def preview_migration(ctx: WriteCtx, journey_id: str) -> dict[str, Any]:
    """What publishing the draft with ``in_flight: migrate`` would do to the profiles inside,
    per version, stage and step: how many would move and how many would stay, and why.
    A dry run: nothing is published, moved or stored."""
    number, body = await JourneyService(ctx).migration_draft(journey_id)
    url = f"{ctx.settings.runtime_url}/internal/journeys/{journey_id}/migration-plan"
    try:
        r = await ctx.http.post(url, json={"to_version": number, "body": body}, timeout=30)
    except httpx.HTTPError as exc:
        raise ProblemError(
            503, "Runtime unavailable", f"the runtime could not be asked ({exc}); retry shortly"
        ) from exc
    r.raise_for_status()
    plan: dict[str, Any] = r.json()
    return {"version": number, **plan}


async def _migrate(ctx: Ctx, journey_id: str, previous: int | None, to: int) -> int:
    if previous is None:
        return 0
    url = f"{ctx.settings.runtime_url}/internal/journeys/{journey_id}/migrate"
    try:
        r = await ctx.http.post(url, json={"to_version": to}, timeout=30)
    except httpx.HTTPError as exc:
        raise ProblemError(
            503, "Runtime unavailable",
            f"version {to} is live; moving profiles already inside failed ({exc}); retry "
            "the migration once the runtime is back",
        ) from exc  # fmt: skip
    r.raise_for_status()
    migrated: int = r.json()["migrated"]
    return migrated


@router.post("/journeys/{journey_id}/versions", status_code=201, tags=["journeys"])
async def new_journey_version(ctx: WriteCtx, journey_id: str) -> dict[str, Any]:
    return await JourneyService(ctx).new_version(journey_id)


@router.post("/journeys/{journey_id}/pause", tags=["journeys"])
async def pause_journey(ctx: WriteCtx, journey_id: str) -> dict[str, Any]:
    return await JourneyService(ctx).transition(journey_id, "pause")


@router.post("/journeys/{journey_id}/resume", tags=["journeys"])
async def resume_journey(ctx: WriteCtx, journey_id: str) -> dict[str, Any]:
    return await JourneyService(ctx).transition(journey_id, "resume")


@router.post("/journeys/{journey_id}/stop", tags=["journeys"])
async def stop_journey(ctx: WriteCtx, journey_id: str) -> dict[str, Any]:
    return await JourneyService(ctx).transition(journey_id, "stop")


@router.delete("/journeys/{journey_id}", status_code=204, tags=["journeys"])
async def delete_journey(ctx: WriteCtx, journey_id: str) -> Response:
    await JourneyService(ctx).delete(journey_id)
    return Response(status_code=204)


@router.post("/templates", status_code=201, response_model=TemplateOut, tags=["templates"])
async def create_template(ctx: WriteCtx, body: TemplateIn) -> TemplateOut:
    return await resources.create_template(ctx, body)


@router.get("/templates", response_model=Page[TemplateOut], tags=["templates"])
async def list_templates(ctx: ReadCtx, limit: Limit = 50, cursor: Cursor = None) -> Page[Any]:
    return await resources.list_templates(ctx, cursor, limit)


@router.get("/templates/{template_id}", response_model=TemplateOut, tags=["templates"])
async def get_template(ctx: ReadCtx, template_id: str) -> TemplateOut:
    return resources.template_out(await resources.get_template(ctx, template_id))


@router.put("/templates/{template_id}", response_model=TemplateOut, tags=["templates"])
async def update_template(ctx: WriteCtx, template_id: str, body: TemplateIn) -> TemplateOut:
    return await resources.update_template(ctx, template_id, body)


@router.patch("/templates/{template_id}", response_model=TemplateOut, tags=["templates"])
async def patch_template(ctx: WriteCtx, template_id: str, body: TemplatePatch) -> TemplateOut:
    """Change only the fields given, e.g. ``{"status": "ready"}`` to mark it ready."""
    return await resources.patch_template(ctx, template_id, body)


@router.delete("/templates/{template_id}", status_code=204, tags=["templates"])
async def delete_template(ctx: WriteCtx, template_id: str) -> Response:
    """Delete a template no live or paused journey uses (409 naming those that do)."""
    await resources.delete_template(ctx, template_id)
    return Response(status_code=204)


@router.post("/templates/{template_id}/preview", response_model=PreviewOut, tags=["templates"])
async def preview_template(ctx: ReadCtx, template_id: str, body: PreviewIn) -> dict[str, Any]:
    template = await resources.get_template(ctx, template_id)
    return await resources.preview(ctx, template, body.profile, body.event)


@router.post("/connectors", status_code=201, response_model=ConnectorOut, tags=["connectors"])
async def create_connector(ctx: AdminCtx, body: ConnectorIn) -> ConnectorOut:
    return await resources.create_connector(ctx, body)


@router.get("/connectors", response_model=Page[ConnectorOut], tags=["connectors"])
async def list_connectors(ctx: ReadCtx, limit: Limit = 50, cursor: Cursor = None) -> Page[Any]:
    return await resources.list_connectors(ctx, cursor, limit)


@router.get("/connectors/{connector_id}", response_model=ConnectorOut, tags=["connectors"])
async def get_connector(ctx: ReadCtx, connector_id: str) -> ConnectorOut:
    return resources.connector_out(ctx, await resources.get_connector(ctx, connector_id))


@router.put("/connectors/{connector_id}", response_model=ConnectorOut, tags=["connectors"])
async def update_connector(ctx: AdminCtx, connector_id: str, body: ConnectorIn) -> ConnectorOut:
    return await resources.update_connector(ctx, connector_id, body)


@router.delete("/connectors/{connector_id}", status_code=204, tags=["connectors"])
async def delete_connector(ctx: AdminCtx, connector_id: str) -> Response:
    """Delete a connector no live or paused journey uses (409 naming those that do)."""
    await resources.delete_connector(ctx, connector_id)
    return Response(status_code=204)


@router.post("/connectors/{connector_id}/test", tags=["connectors"])
async def test_connector(ctx: AdminCtx, connector_id: str, body: ConnectorTestIn) -> Any:
    connector = await resources.get_connector(ctx, connector_id)
    payload = {
        "type": connector.type,
        "config": resources.full_config(ctx, connector),
        **body.model_dump(),
    }
    url = f"{ctx.settings.activator_url}/internal/connectors/test"
    try:
        r = await ctx.http.post(url, json=payload, timeout=60)
    except httpx.HTTPError as exc:
        raise ProblemError(503, "Service unavailable", "activator is not reachable") from exc
    if r.status_code == 200:
        return r.json()
    problem = r.json()
    raise ProblemError(
        r.status_code, problem.get("title", "Test failed"), problem.get("detail", "")
    )


@router.post(
    "/event-triggers", status_code=201, response_model=EventTriggerOut, tags=["event triggers"]
)
async def create_event_trigger(ctx: WriteCtx, body: EventTriggerIn) -> EventTriggerOut:
    return await triggers.create(ctx, body)


@router.get("/event-triggers", response_model=Page[EventTriggerOut], tags=["event triggers"])
async def list_event_triggers(
    ctx: ReadCtx,
    status: Literal["draft", "published"] | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[Any]:
    return await triggers.page(ctx, status, cursor, limit)


@router.get("/event-triggers/{name}", response_model=EventTriggerDetail, tags=["event triggers"])
async def get_event_trigger(ctx: ReadCtx, name: str) -> EventTriggerDetail:
    """The trigger and what the runtime received of its event: ``received_total``,
    ``last_received_at``, ``schema_violations`` and the first few violations."""
    return await triggers.detail(ctx, name)


@router.put("/event-triggers/{name}", response_model=EventTriggerOut, tags=["event triggers"])
async def update_event_trigger(ctx: WriteCtx, name: str, body: EventTriggerIn) -> EventTriggerOut:
    return await triggers.update(ctx, name, body)


@router.delete("/event-triggers/{name}", status_code=204, tags=["event triggers"])
async def delete_event_trigger(ctx: WriteCtx, name: str) -> Response:
    await triggers.delete(ctx, name)
    return Response(status_code=204)


@router.post(
    "/webhooks/sources",
    status_code=201,
    response_model=WebhookSourceOut,
    tags=["webhooks"],
    summary="Register a partner's signed webhooks, mapped to events",
    responses={409: {"description": "A source of that name exists."},
               422: {"description": "A problem with the body; a weak secret at path secret."}},
)  # fmt: skip
async def create_webhook_source(ctx: AdminCtx, body: WebhookSourceIn) -> WebhookSourceOut:
    return await resources.create_webhook_source(ctx, body)


@router.get(
    "/webhooks/sources",
    response_model=Page[WebhookSourceOut],
    tags=["webhooks"],
    summary="The workspace's partner webhook sources (never their secrets)",
)
async def list_webhook_sources(
    ctx: AdminCtx, limit: Limit = 50, cursor: Cursor = None
) -> Page[Any]:
    return await resources.list_webhook_sources(ctx, cursor, limit)


@router.get(
    "/webhooks/sources/{source_id}",
    response_model=WebhookSourceOut,
    tags=["webhooks"],
    summary="One partner webhook source (never its secret)",
)
async def get_webhook_source(ctx: AdminCtx, source_id: str) -> WebhookSourceOut:
    return resources.webhook_source_out(ctx, await resources.get_webhook_source(ctx, source_id))


@router.post(
    "/webhooks/sources/{source_id}/rotate",
    response_model=WebhookSourceOut,
    tags=["webhooks"],
    summary="Replace the signing secret; the old one stays valid for a grace period",
    responses={404: {"description": "No such source in the workspace."},
               422: {"description": "The secret is too short or not whsec_ base64."}},
)  # fmt: skip
async def rotate_webhook_source(
    ctx: AdminCtx, source_id: str, body: WebhookSecretIn
) -> WebhookSourceOut:
    """Deliveries signed with the new secret are accepted at once; those signed with the
    previous one until ``rotation_grace_until`` (24 hours by default), so the partner
    can switch without losing any. Only the secret before the last rotation is kept."""
    return await resources.rotate_webhook_source(ctx, source_id, body)


@router.delete(
    "/webhooks/sources/{source_id}",
    status_code=204,
    tags=["webhooks"],
    summary="Revoke a partner webhook source",
    responses={404: {"description": "No such source in the workspace."}},
)
async def delete_webhook_source(ctx: AdminCtx, source_id: str) -> Response:
    """Deliveries to ``/hooks/{source_id}`` are refused (404) once the gateway's cache of
    the source has expired (at most a second)."""
    await resources.delete_webhook_source(ctx, source_id)
    return Response(status_code=204)


@router.get("/workspace/settings", response_model=WorkspaceSettingsBody, tags=["workspace"])
async def get_workspace_settings(ctx: ReadCtx) -> WorkspaceSettingsBody:
    return await resources.get_settings(ctx)


@router.put("/workspace/settings", response_model=WorkspaceSettingsBody, tags=["workspace"])
async def put_workspace_settings(
    ctx: AdminCtx, body: WorkspaceSettingsPatch
) -> WorkspaceSettingsBody:
    return await resources.put_settings(ctx, body)


def journey_schema() -> dict[str, Any]:
    """JSON Schema of the journey body, for the OpenAPI document."""
    schema: dict[str, Any] = JourneyBody.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    return schema
