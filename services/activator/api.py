"""The activator's public routes (reached through the gateway)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Query, Request

from services.activator.designer import Designer, DesignerUnavailable
from services.activator.models import Delivery
from services.activator.repository import DeliveryRepository, Filters
from services.activator.schemas import DeliveryOut, DeliveryPage, StatusName
from shared.app import RequestSession, get_state
from shared.identity import READ, Identity, require
from shared.pagination import Cursor, Limit, decode_cursor, encode_cursor
from shared.problems import ProblemError, forbidden, not_found

router = APIRouter(prefix="/v1", tags=["deliveries"])

DESIGNER = "designer"


Session = RequestSession
Reader = Annotated[Identity, Depends(require(READ))]
IdFilter = Annotated[str | None, Query(min_length=1, max_length=200)]


@router.get("/deliveries")
async def list_deliveries(
    request: Request,
    session: Session,
    caller: Reader,
    journey_id: IdFilter = None,
    profile_id: IdFilter = None,
    status: StatusName | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DeliveryPage:
    """The workspace's activations, newest first, with their status and why."""
    await _check_scope(request, caller, journey_id)
    filters = Filters(caller.workspace_id, journey_id, profile_id, status)
    rows = await DeliveryRepository(session).page(filters, decode_cursor(cursor), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor([rows[-1].created_at, rows[-1].activation_id]) if more else None
    return DeliveryPage(items=[_out(row) for row in rows], next_cursor=next_cursor)


async def _check_scope(request: Request, caller: Identity, journey_id: str | None) -> None:
    """A key limited to folders sees the deliveries of journeys in them, one at a time."""
    if caller.unrestricted:
        return
    if journey_id is None:
        raise forbidden("a key limited to folders lists deliveries by journey_id")
    designer: Designer = get_state(request).extras[DESIGNER]
    try:
        visible = await designer.journey_visible(
            caller.workspace_id, journey_id, ",".join(caller.folder_ids)
        )
    except DesignerUnavailable:
        raise ProblemError(503, "Service unavailable", "designer is not reachable") from None
    if not visible:
        raise not_found(f"journey {journey_id}")


def _out(row: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=row.activation_id,
        journey_id=row.journey_id,
        version=row.version,
        step_id=row.step_id,
        profile_id=row.profile_id,
        channel=row.channel,
        status=cast(StatusName, row.status),
        attempts=row.attempts,
        last_error=row.last_error,
        sent_at=row.sent_at,
        reason=row.reason,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
    )
