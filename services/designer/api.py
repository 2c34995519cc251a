"""The designer's public routes (reached through the gateway). Thin: parse, call, answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Body, Path, Query, Response

from services.designer import resources, triggers
from services.designer.context import CtxDep
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
    PreviewIn,
    PreviewOut,
    PublishIn,
    TemplateIn,
    TemplateOut,
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
async def create_workspace(ctx: CtxDep, body: WorkspaceIn) -> WorkspaceOut:
    return await resources.create_workspace(ctx, body)


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated, tags=["api keys"])
async def create_api_key(ctx: CtxDep, body: ApiKeyIn) -> ApiKeyCreated:
    return await resources.create_key(ctx, body)


@router.get("/api-keys", response_model=Page[ApiKeyOut], tags=["api keys"])
async def list_api_keys(ctx: CtxDep, limit: Limit = 50, cursor: Cursor = None) -> Page[Any]:
    return await resources.list_keys(ctx, cursor, limit)


@router.delete("/api-keys/{key_id}", status_code=204, tags=["api keys"])
async def revoke_api_key(ctx: CtxDep, key_id: str) -> Response:
    await resources.revoke_key(ctx, key_id)
    return Response(status_code=204)


@router.post("/folders", status_code=201, response_model=FolderOut, tags=["folders"])
async def create_folder(ctx: CtxDep, body: FolderIn) -> FolderOut:
    return await resources.create_folder(ctx, body)


@router.get("/folders", response_model=Page[FolderOut], tags=["folders"])
async def list_folders(ctx: CtxDep, limit: Limit = 50, cursor: Cursor = None) -> Page[Any]:
    return await resources.list_folders(ctx, cursor, limit)


@router.post("/journeys/validate", tags=["journeys"])
async def validate_journey(ctx: CtxDep, body: JourneyIn) -> dict[str, bool]:
    await JourneyService(ctx).validate(body)
    return {"valid": True}


@router.post(
    "/journeys", status_code=201, tags=["journeys"],
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/JourneyBody"}}}}},
)  # fmt: skip
async def create_journey(ctx: CtxDep, body: JourneyIn) -> dict[str, Any]:
    return await JourneyService(ctx).create(body)


@router.get("/journeys", tags=["journeys"])
async def list_journeys(
    ctx: CtxDep,
    folder_id: Annotated[str | None, Query(max_length=64)] = None,
    status: JourneyStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[dict[str, Any]]:
    return await JourneyService(ctx).page(
        folder_id, status.value if status else None, cursor, limit
    )


@router.get("/journeys/{journey_id}", tags=["journeys"])
async def get_journey(ctx: CtxDep, journey_id: str) -> dict[str, Any]:
    return await JourneyService(ctx).get(journey_id)


@router.get("/journeys/{journey_id}/versions/{number}", tags=["journeys"])
async def get_journey_version(
    ctx: CtxDep, journey_id: str, number: Annotated[int, Path(ge=1)]
) -> dict[str, Any]:
    return await JourneyService(ctx).get(journey_id, number)


@router.put("/journeys/{journey_id}", tags=["journeys"])
async def update_journey(ctx: CtxDep, journey_id: str, body: JourneyIn) -> dict[str, Any]:
    return await JourneyService(ctx).update(journey_id, body)


@router.post("/journeys/{journey_id}/publish", tags=["journeys"])
async def publish_journey(
    ctx: CtxDep, journey_id: str, body: Annotated[PublishIn | None, Body()] = None
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


async def _migrate(ctx: CtxDep, journey_id: str, previous: int | None, to: int) -> int:
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
async def new_journey_version(ctx: CtxDep, journey_id: str) -> dict[str, Any]:
    return await JourneyService(ctx).new_version(journey_id)


@router.post("/journeys/{journey_id}/pause", tags=["journeys"])
async def pause_journey(ctx: CtxDep, journey_id: str) -> dict[str, Any]:
    return await JourneyService(ctx).transition(journey_id, "pause")


@router.post("/journeys/{journey_id}/resume", tags=["journeys"])
async def resume_journey(ctx: CtxDep, journey_id: str) -> dict[str, Any]:
    return await JourneyService(ctx).transition(journey_id, "resume")


@router.post("/journeys/{journey_id}/stop", tags=["journeys"])
async def stop_journey(ctx: CtxDep, journey_id: str) -> dict[str, Any]:
    return await JourneyService(ctx).transition(journey_id, "stop")


@router.delete("/journeys/{journey_id}", status_code=204, tags=["journeys"])
async def delete_journey(ctx: CtxDep, journey_id: str) -> Response:
    await JourneyService(ctx).delete(journey_id)
    return Response(status_code=204)


@router.post("/templates", status_code=201, response_model=TemplateOut, tags=["templates"])
async def create_template(ctx: CtxDep, body: TemplateIn) -> TemplateOut:
    return await resources.create_template(ctx, body)


@router.get("/templates", response_model=Page[TemplateOut], tags=["templates"])
async def list_templates(ctx: CtxDep, limit: Limit = 50, cursor: Cursor = None) -> Page[Any]:
    return await resources.list_templates(ctx, cursor, limit)


@router.get("/templates/{template_id}", response_model=TemplateOut, tags=["templates"])
async def get_template(ctx: CtxDep, template_id: str) -> TemplateOut:
    return resources.template_out(await resources.get_template(ctx, template_id))


@router.put("/templates/{template_id}", response_model=TemplateOut, tags=["templates"])
async def update_template(ctx: CtxDep, template_id: str, body: TemplateIn) -> TemplateOut:
    return await resources.update_template(ctx, template_id, body)


@router.post("/templates/{template_id}/preview", response_model=PreviewOut, tags=["templates"])
async def preview_template(ctx: CtxDep, template_id: str, body: PreviewIn) -> dict[str, Any]:
    template = await resources.get_template(ctx, template_id)
    return await resources.preview(ctx, template, body.profile, body.event)


@router.post("/connectors", status_code=201, response_model=ConnectorOut, tags=["connectors"])
async def create_connector(ctx: CtxDep, body: ConnectorIn) -> ConnectorOut:
    return await resources.create_connector(ctx, body)


@router.get("/connectors", response_model=Page[ConnectorOut], tags=["connectors"])
async def list_connectors(ctx: CtxDep, limit: Limit = 50, cursor: Cursor = None) -> Page[Any]:
    return await resources.list_connectors(ctx, cursor, limit)


@router.get("/connectors/{connector_id}", response_model=ConnectorOut, tags=["connectors"])
async def get_connector(ctx: CtxDep, connector_id: str) -> ConnectorOut:
    return resources.connector_out(ctx, await resources.get_connector(ctx, connector_id))


@router.put("/connectors/{connector_id}", response_model=ConnectorOut, tags=["connectors"])
async def update_connector(ctx: CtxDep, connector_id: str, body: ConnectorIn) -> ConnectorOut:
    return await resources.update_connector(ctx, connector_id, body)


@router.post("/connectors/{connector_id}/test", tags=["connectors"])
async def test_connector(ctx: CtxDep, connector_id: str, body: ConnectorTestIn) -> Any:
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
async def create_event_trigger(ctx: CtxDep, body: EventTriggerIn) -> EventTriggerOut:
    return await triggers.create(ctx, body)


@router.get("/event-triggers", response_model=Page[EventTriggerOut], tags=["event triggers"])
async def list_event_triggers(
    ctx: CtxDep,
    status: Literal["draft", "published"] | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[Any]:
    return await triggers.page(ctx, status, cursor, limit)


@router.get("/event-triggers/{name}", response_model=EventTriggerDetail, tags=["event triggers"])
async def get_event_trigger(ctx: CtxDep, name: str) -> EventTriggerDetail:
    """The trigger and what the runtime received of its event: ``received_total``,
    ``last_received_at``, ``schema_violations`` and the first few violations."""
    return await triggers.detail(ctx, name)


@router.put("/event-triggers/{name}", response_model=EventTriggerOut, tags=["event triggers"])
async def update_event_trigger(ctx: CtxDep, name: str, body: EventTriggerIn) -> EventTriggerOut:
    return await triggers.update(ctx, name, body)


@router.delete("/event-triggers/{name}", status_code=204, tags=["event triggers"])
async def delete_event_trigger(ctx: CtxDep, name: str) -> Response:
    await triggers.delete(ctx, name)
    return Response(status_code=204)


@router.post(
    "/webhooks/sources", status_code=201, response_model=WebhookSourceOut, tags=["webhooks"]
)
async def create_webhook_source(ctx: CtxDep, body: WebhookSourceIn) -> WebhookSourceOut:
    return await resources.create_webhook_source(ctx, body)


@router.get("/webhooks/sources", response_model=Page[WebhookSourceOut], tags=["webhooks"])
async def list_webhook_sources(ctx: CtxDep, limit: Limit = 50, cursor: Cursor = None) -> Page[Any]:
    return await resources.list_webhook_sources(ctx, cursor, limit)


@router.get("/workspace/settings", response_model=WorkspaceSettingsBody, tags=["workspace"])
async def get_workspace_settings(ctx: CtxDep) -> WorkspaceSettingsBody:
    return await resources.get_settings(ctx)


@router.put("/workspace/settings", response_model=WorkspaceSettingsBody, tags=["workspace"])
async def put_workspace_settings(
    ctx: CtxDep, body: WorkspaceSettingsPatch
) -> WorkspaceSettingsBody:
    return await resources.put_settings(ctx, body)


def journey_schema() -> dict[str, Any]:
    """JSON Schema of the journey body, for the OpenAPI document."""
    schema: dict[str, Any] = JourneyBody.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    return schema
