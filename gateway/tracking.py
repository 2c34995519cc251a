"""Open pixel and tracked links of HTML email: ``/t/o/{token}`` and ``/t/c/{token}``.

A valid token records ``email_opened`` / ``email_clicked`` for the profile through the same
durable ingest path as any event, carrying journey id, step id and activation id so journeys
can branch on them. What a hit records is unique, as the opens and clicks journeys of Braze
and Iterable act on are: the event id derives from the activation id (and for a click from
the link too), so an email opened ten times records one ``email_opened`` and each of its
links one ``email_clicked``; the gateway's inbox and the runtime's dedup drop the repeats.

Nothing is recorded for a forged or unreadable token, one older than
``tracking_token_max_age_days``, or one issued before its profile was erased (the gateway
remembers erasures, :mod:`gateway.erasure`). The answer does not tell: the pixel is served
all the same, and a signed link still redirects (its URL is ours, so that is no open
redirect); an unsigned link is 404.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CollectorRegistry, Counter
from starlette.responses import RedirectResponse, Response

from gateway import erasure
from gateway.ingest import INGEST, Ingest
from gateway.ratelimit import OPEN_LIMITS, OpenLimits, too_many
from gateway.settings import GatewaySettings
from shared.app import ServiceState, get_state
from shared.logging import get_logger
from shared.outbox import fit_msg_id
from shared.problems import ProblemError
from shared.tracking import PIXEL_GIF, Mark, expired, verify

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)

METRICS = "tracking_metrics"


class TrackingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.hits = Counter(
            "waypost_tracking_hits_total",
            "Open and click hits by what came of them (recorded, forged, expired, erased)",
            ["kind", "outcome"],
            registry=registry,
        )


def _metrics(state: ServiceState) -> TrackingMetrics:
    metrics = state.extras.get(METRICS)
    if metrics is None:
        metrics = state.extras[METRICS] = TrackingMetrics(state.registry)
    assert isinstance(metrics, TrackingMetrics)
    return metrics


def _settings(state: ServiceState) -> GatewaySettings:
    assert isinstance(state.settings, GatewaySettings)
    return state.settings


def _mark(state: ServiceState, token: str) -> Mark | None:
    secret = _settings(state).tracking_secret
    return None if secret is None else verify(token, secret.get_secret_value())


async def _refusal(state: ServiceState, mark: Mark) -> str | None:
    """Why this valid token may record nothing, if it may not."""
    max_age = timedelta(days=_settings(state).tracking_token_max_age_days)
    if expired(mark, state.clock.now(), max_age):
        return "expired"
    erased = await erasure.erased_at(state.sessions, mark.workspace_id, mark.profile_id)
    issued = mark.issued()
    if erased is not None and issued is not None and issued <= erased:
        return "erased"
    return None


def _event_id(mark: Mark, name: str, url: str | None = None) -> str:
    """One event id per activation (and link): a repeated hit is a repeated event."""
    link = "" if url is None else ":" + hashlib.sha256(url.encode()).hexdigest()[:16]
    return fit_msg_id(f"{mark.activation_id}:{name}{link}")  # at most 200, as event ids


async def _hit(request: Request, token: str, kind: str) -> Mark | None:
    """The token's mark if it is signed; records the event unless refused."""
    state = get_state(request)
    mark = _mark(state, token)
    if mark is None or (kind == "click" and not mark.url):
        _metrics(state).hits.labels(kind, "forged").inc()
        log.info("tracking.forged", kind=kind)
        return None
    refused = await _refusal(state, mark)
    if refused is not None:
        _metrics(state).hits.labels(kind, refused).inc()
        log.info("tracking.not_recorded", kind=kind, reason=refused)
        return mark
    if kind == "open":
        await _record(state, mark, "email_opened", {})
    else:
        await _record(state, mark, "email_clicked", {"url": mark.url})
    _metrics(state).hits.labels(kind, "recorded").inc()
    return mark


async def _record(state: ServiceState, mark: Mark, name: str, extra: dict[str, Any]) -> None:
    ingest: Ingest = state.extras[INGEST]
    event = {
        "event_id": _event_id(mark, name, extra.get("url")),
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
    else:
        await _hit(request, token, "open")
    headers = {"Cache-Control": "no-store, max-age=0"}
    return Response(PIXEL_GIF, media_type="image/gif", headers=headers)


@router.get("/t/c/{token}")
async def clicked(request: Request, token: str) -> Response:
    if wait := _over_limit(request, token):
        raise too_many("too many requests for tracked links; try again later", wait)
    mark = await _hit(request, token, "click")
    if mark is None or not mark.url:
        raise ProblemError(404, "Not found", "unknown link")
    return RedirectResponse(mark.url, status_code=302)
