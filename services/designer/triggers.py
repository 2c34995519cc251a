"""Event triggers: the catalog of events a workspace's systems send, with the properties each
declares. Journeys name them; publishing checks the names against the published ones
(``catalog_events``); the runtime counts what it receives of each (``stats``)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import func

from services.designer.context import Ctx
from services.designer.models import EventTrigger
from services.designer.repository import EventTriggerRepository, SettingsRepository
from services.designer.schemas import (
    EventTriggerDetail,
    EventTriggerIn,
    EventTriggerOut,
    WorkspaceSettingsBody,
)
from shared import event_schema
from shared.journey_validation import BUILTIN_EVENTS, EventRef
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.problems import FieldError, ProblemError, conflict, invalid, not_found


def trigger_out(t: EventTrigger) -> EventTriggerOut:
    return EventTriggerOut.model_validate(t, from_attributes=True)


def _errors(body: EventTriggerIn) -> list[FieldError]:
    errors: list[FieldError] = []
    if body.name in BUILTIN_EVENTS:
        errors.append(FieldError("name", f"'{body.name}' is a built-in event, always known"))
    declared = event_schema.declaration(body.properties, body.required)
    errors += event_schema.parse(declared)[1]
    return errors


async def create(ctx: Ctx, body: EventTriggerIn) -> EventTriggerOut:
    if errors := _errors(body):
        raise invalid(errors)
    repo = EventTriggerRepository(ctx.session)
    if await repo.name_taken(ctx.identity.workspace_id, body.name, None):
        raise conflict(f"an event trigger named '{body.name}' already exists")
    trigger = await repo.add(
        EventTrigger(
            id=uuid.uuid4().hex, workspace_id=ctx.identity.workspace_id, **body.model_dump()
        )
    )
    await ctx.session.refresh(trigger)
    return trigger_out(trigger)


async def get(ctx: Ctx, name: str) -> EventTrigger:
    trigger = await EventTriggerRepository(ctx.session).get(ctx.identity.workspace_id, name)
    if trigger is None:
        raise not_found(f"event trigger {name}")
    return trigger


async def update(ctx: Ctx, name: str, body: EventTriggerIn) -> EventTriggerOut:
    trigger = await get(ctx, name)
    if errors := _errors(body):
        raise invalid(errors)
    repo = EventTriggerRepository(ctx.session)
    if await repo.name_taken(ctx.identity.workspace_id, body.name, trigger.id):
        raise conflict(f"an event trigger named '{body.name}' already exists")
    for field, value in body.model_dump().items():
        setattr(trigger, field, value)
    trigger.updated_at = func.now()
    await ctx.session.flush()
    await ctx.session.refresh(trigger)
    return trigger_out(trigger)


async def delete(ctx: Ctx, name: str) -> None:
    await EventTriggerRepository(ctx.session).delete(await get(ctx, name))


async def page(ctx: Ctx, status: str | None, cursor: str | None, limit: int) -> Page[Any]:
    rows = await EventTriggerRepository(ctx.session).page(
        ctx.identity.workspace_id, status, decode_cursor(cursor), limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return Page(
        items=[trigger_out(t) for t in rows],
        next_cursor=encode_cursor([last.created_at, last.id]) if more and last else None,
    )


async def detail(ctx: Ctx, name: str) -> EventTriggerDetail:
    trigger = await get(ctx, name)
    counts = await stats(ctx, trigger.id)
    return EventTriggerDetail(**trigger_out(trigger).model_dump(), **counts)


async def stats(ctx: Ctx, trigger_id: str) -> dict[str, Any]:
    """What the runtime counted of the trigger's event (it owns the counts)."""
    url = (
        f"{ctx.settings.runtime_url}/internal/workspaces/"
        f"{quote(ctx.identity.workspace_id, safe='')}/event-triggers/"
        f"{quote(trigger_id, safe='')}/stats"
    )
    try:
        r = await ctx.http.get(url, timeout=10)
        r.raise_for_status()
    except httpx.HTTPError as exc:
        raise ProblemError(
            503, "Service unavailable", "the runtime, which counts received events, is not "
            "reachable; try again", headers={"Retry-After": "1"},
        ) from exc  # fmt: skip
    counts: dict[str, Any] = r.json()
    return counts


async def catalog_events(ctx: Ctx) -> dict[str, EventRef] | None:
    """The workspace's published triggers for the publish check; ``None`` when the
    workspace does not require triggers."""
    stored = await SettingsRepository(ctx.session).get(ctx.identity.workspace_id)
    if not WorkspaceSettingsBody.model_validate(stored or {}).require_event_triggers:
        return None
    published = await EventTriggerRepository(ctx.session).published(ctx.identity.workspace_id)
    refs = {}
    for t in published:
        schema, _ = event_schema.parse(event_schema.declaration(t.properties, t.required))
        if schema is not None:
            refs[t.name] = EventRef(schema)
    return refs
