"""Operational routes for operators and tests (internal: the gateway never routes them)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.scheduler.context import releaser_of
from services.scheduler.repository import TimerRepository
from services.scheduler.schemas import TimerStats
from shared.app import RequestSession, get_state

router = APIRouter(prefix="/internal/timers", include_in_schema=False)


Session = RequestSession


@router.get("/stats")
async def stats(request: Request, session: Session, workspace_id: str | None = None) -> TimerStats:
    """Pending timers (of one workspace, when given) and the release loop's progress."""
    pending, next_due = await TimerRepository(session).pending_stats(workspace_id)
    state = get_state(request)
    return TimerStats(
        pending=pending,
        next_due_at=next_due,
        now=state.clock.now(),
        idle_passes=releaser_of(state).idle_passes,
    )
