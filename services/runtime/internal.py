"""Routes for the other services only (never routed by the gateway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

router = APIRouter(prefix="/internal", include_in_schema=False)


class MigrateIn(BaseModel):
    to_version: Annotated[int, Field(ge=1)]


@router.post("/journeys/{journey_id}/migrate")
async def migrate_in_flight(journey_id: str, body: MigrateIn) -> dict[str, int]:
    """Move profiles inside older versions of the journey onto ``to_version``.

    The runtime keeps no profile positions yet, so there is never anyone to move.
    """
    del journey_id, body
    return {"migrated": 0}
