"""Open pixel and tracked links of HTML email: ``/t/o/{token}`` and ``/t/c/{token}``.

A valid token records ``email_opened`` / ``email_clicked`` for the profile through the same
durable ingest path as any event, carrying journey id, step id and activation id so journeys
can branch on them. A forged token records nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from gateway.ingest import INGEST, Ingest
from gateway.ratelimit import OPEN_LIMITS, OpenLimits, too_many
from gateway.settings import GatewaySettings
from shared.app import get_state
from shared.logging import get_logger
from shared.problems import ProblemError
from shared.tracking import PIXEL_GIF, Mark, verify

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)


def _mark(request: Request, token: str) -> Mark | None:
    settings = get_state(request).settings
    assert isinstance(settings, GatewaySettings)
    if settings.tracking_secret is None:
        return None
    return verify(token, settings.tracking_secret.get_secret_value())


async def _record(request: Request, mark: Mark, name: str, extra: dict[str, Any]) -> None:
    ingest: Ingest = get_state(request).extras[INGEST]
    event = {
        "event_id": f"{mark.activation_id}:{name}:{uuid.uuid4().hex[:12]}",
        "profile_id": mark.profile_id,
        "name": name,
        "properties": {
            "journey_id": mark.journey_id,
            "step_id": mark.step_id,
            "activation_id": mark.activation_id,
            **extra,
        },
    }
    await ingest.accept_for(mark.workspace_id, event)


def _over_limit(request: Request, token: str) -> float:
    """Seconds to wait when the client or the token is over its rate (0: within it)."""
    limits: OpenLimits = get_state(request).extras[OPEN_LIMITS]
    return limits.hit(request, "t", token)


@router.get("/t/o/{token}")
async def opened(request: Request, token: str) -> Response:
    # Over the limit the pixel is still answered, so a mail client never shows a broken
    # image; only the open is not recorded.
    if _over_limit(request, token):
        log.info("tracking.open_over_limit")
    elif (mark := _mark(request, token)) is not None:
        await _record(request, mark, "email_opened", {})
    else:
        log.info("tracking.forged_open")
    headers = {"Cache-Control": "no-store, max-age=0"}
    return Response(PIXEL_GIF, media_type="image/gif", headers=headers)


@router.get("/t/c/{token}")
async def clicked(request: Request, token: str) -> Response:
    if wait := _over_limit(request, token):
        raise too_many("too many requests for tracked links; try again later", wait)
    mark = _mark(request, token)
    if mark is None or not mark.url:
        raise ProblemError(404, "Not found", "unknown link")
    await _record(request, mark, "email_clicked", {"url": mark.url})
    return RedirectResponse(mark.url, status_code=302)
