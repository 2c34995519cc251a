"""Routes for the other services only (never routed by the gateway)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from services.runtime import triggers
from services.runtime.engine.compiled import compile_journey
from services.runtime.processor import Processor
from shared.app import RequestSession, get_state
from shared.journey import JourneyBody

router = APIRouter(prefix="/internal", include_in_schema=False)


class MigrateIn(BaseModel):
    to_version: Annotated[int, Field(ge=1)]


@router.post("/journeys/{journey_id}/migrate")
async def migrate_in_flight(request: Request, journey_id: str, body: MigrateIn) -> dict[str, int]:
    """Move profiles inside older versions of the journey onto ``to_version`` where their
    stage and step exist there; the others stay on their version."""
    processor: Processor = get_state(request).extras["processor"]
    return {"migrated": await processor.migrate(journey_id, body.to_version)}


class MigrationPlanIn(BaseModel):
    to_version: Annotated[int, Field(ge=1)]
    body: dict[str, Any]


@router.post("/journeys/{journey_id}/migration-plan")
async def migration_plan(
    request: Request, journey_id: str, payload: MigrationPlanIn
) -> dict[str, Any]:
    """What migrating the profiles inside onto a draft would do, changing nothing. The
    designer has validated the draft; it is compiled here as the publish would."""
    processor: Processor = get_state(request).extras["processor"]
    body = JourneyBody.model_validate(payload.body)
    target = compile_journey(journey_id, payload.to_version, body)
    return await processor.migration_plan(journey_id, target)


@router.get("/workspaces/{workspace_id}/event-triggers/{trigger_id}/stats")
async def trigger_stats(session: RequestSession, workspace_id: str, trigger_id: str) -> Any:
    """What was received of the trigger's event (zeros before the first one)."""
    return await triggers.stats(session, workspace_id, trigger_id)
