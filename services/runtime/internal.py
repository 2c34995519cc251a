"""Routes for the other services only (never routed by the gateway)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from services.runtime import triggers
from services.runtime.processor import Processor
from shared.app import RequestSession, get_state

router = APIRouter(prefix="/internal", include_in_schema=False)


class MigrateIn(BaseModel):
    to_version: Annotated[int, Field(ge=1)]


@router.post("/journeys/{journey_id}/migrate")
async def migrate_in_flight(request: Request, journey_id: str, body: MigrateIn) -> dict[str, int]:
    """Move profiles inside older versions of the journey onto ``to_version`` where their
    stage and step exist there; the others stay on their version."""
    processor: Processor = get_state(request).extras["processor"]
    return {"migrated": await processor.migrate(journey_id, body.to_version)}


@router.get("/workspaces/{workspace_id}/event-triggers/{trigger_id}/stats")
async def trigger_stats(session: RequestSession, workspace_id: str, trigger_id: str) -> Any:
    """What was received of the trigger's event (zeros before the first one)."""
    return await triggers.stats(session, workspace_id, trigger_id)
