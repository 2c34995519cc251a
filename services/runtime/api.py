"""The runtime's public routes (reached through the gateway)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.runtime.simulate import SimEvent, Simulation, check
from shared.identity import Identity, identity_from_request
from shared.journey import JourneyLimits
from shared.problems import FieldError, invalid

router = APIRouter(prefix="/v1", tags=["journeys"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimProfile(_Strict):
    profile_id: Annotated[str, Field(min_length=1, max_length=200)]
    attributes: dict[str, Any] = {}
    consent: dict[str, bool] = {}


class SimEventIn(_Strict):
    event_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    profile_id: Annotated[str, Field(min_length=1, max_length=200)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    timestamp: AwareDatetime
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}


class SimulateIn(_Strict):
    journey: dict[str, Any] = Field(description="A journey body, as for POST /v1/journeys.")
    events: Annotated[list[SimEventIn], Field(max_length=10_000)]
    profiles: Annotated[list[SimProfile], Field(max_length=10_000)] = []


@router.post("/journeys/simulate")
async def simulate(
    body: SimulateIn, _caller: Annotated[Identity, Depends(identity_from_request)]
) -> dict[str, Any]:
    """Each profile's path and the messages that would be sent; nothing is stored or sent."""
    journey, errors = check(body.journey, JourneyLimits())
    if journey is None or errors:
        raise invalid([FieldError(f"journey.{e.path}", e.message) for e in errors])
    simulation = Simulation(journey, {p.profile_id: dict(p.attributes) for p in body.profiles})
    simulation.run([_event(e) for e in body.events])
    return simulation.report()


def _event(e: SimEventIn) -> SimEvent:
    timestamp: datetime = e.timestamp
    return SimEvent(
        event_id=e.event_id or uuid.uuid4().hex,
        profile_id=e.profile_id,
        name=e.name,
        timestamp=timestamp,
        properties=e.properties,
        traits=e.traits,
    )
