"""Routes for the other services only (never routed by the gateway): the connector test the
designer runs, activation counts for the runtime's analytics, and the preview of a journey
simulation's messages under the live rules."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import uuid4

import aiohttp
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, ValidationError

from services.activator import preview
from services.activator.api import DESIGNER
from services.activator.designer import Designer, DesignerUnavailable
from services.activator.repository import DeliveryRepository
from services.activator.schemas import ActivationCounts, ActivationRequested
from services.activator.senders import (
    DeliveryError,
    OutgoingMessage,
    TransientDeliveryError,
    send,
)
from shared.app import RequestSession, get_state
from shared.connectors import ConnectorType, DestinationGuard, config_errors, parse_config
from shared.problems import FieldError, ProblemError, invalid
from shared.rendering import Renderer

router = APIRouter(prefix="/internal", tags=["internal"], include_in_schema=False)

HTTP = "http"
GUARD = "guard"
RENDERER = "renderer"
TEST_SUBJECT = "Waypost connector test"
TEST_BODY = "This is a test message from Waypost: the connector works."


Session = RequestSession


class ConnectorTest(BaseModel):
    type: ConnectorType
    config: dict[str, Any]
    to: str = Field(min_length=1, max_length=512)
    subject: str | None = Field(default=None, max_length=998)
    body: str | None = Field(default=None, max_length=64 * 1024)


class ConnectorTestResult(BaseModel):
    ok: bool


@router.post("/connectors/test")
async def test_connector(test: ConnectorTest, request: Request) -> ConnectorTestResult:
    """Sends one message through an (unsaved) connector config; 502 names why it failed."""
    try:
        config = parse_config(test.type, test.config)
    except ValidationError as exc:
        errors = config_errors(exc)
        raise ProblemError(
            422, "Validation failed", f"{len(errors)} problem(s) in the request", errors
        ) from None
    # A fresh id per test: a provider deduplicating on it would swallow a repeated test.
    message = OutgoingMessage(
        activation_id=f"test-{uuid4().hex}",
        to=test.to,
        subject=test.subject or TEST_SUBJECT,
        body=test.body or TEST_BODY,
        html=None,
        metadata={"test": True},
    )
    extras = get_state(request).extras
    http: aiohttp.ClientSession = extras[HTTP]
    guard: DestinationGuard | None = extras[GUARD]
    try:
        await send(test.type, config, message, http, guard)
    except DeliveryError as exc:
        kind = "temporary" if isinstance(exc, TransientDeliveryError) else "permanent"
        raise ProblemError(502, "Connector test failed", f"{kind} failure: {exc.reason}") from None
    return ConnectorTestResult(ok=True)


@router.get("/workspaces/{workspace_id}/journeys/{journey_id}/activations")
async def activation_counts(
    session: Session,
    workspace_id: str,
    journey_id: str,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> ActivationCounts:
    """How many of the journey's activations (of one version, if given) are in each status."""
    counts = await DeliveryRepository(session).counts(workspace_id, journey_id, version)
    return ActivationCounts.model_validate(counts)


class OutcomesAsked(BaseModel):
    activation_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=500)
    ]


@router.post("/workspaces/{workspace_id}/deliveries/outcomes")
async def delivery_outcomes(
    session: Session, workspace_id: str, asked: OutcomesAsked
) -> dict[str, dict[str, Any]]:
    """What became of these activations (the runtime shows it on a profile's timeline):
    status, reason, attempts, sent_at, per activation id this workspace has."""
    rows = await DeliveryRepository(session).outcomes(workspace_id, asked.activation_ids)
    return {
        r.activation_id: {
            "status": r.status, "reason": r.reason, "attempts": r.attempts,
            "sent_at": r.sent_at, "channel": r.channel,
        }
        for r in rows
    }  # fmt: skip


@router.post("/workspaces/{workspace_id}/previews")
async def preview_messages(
    workspace_id: str, body: preview.PreviewIn, request: Request
) -> preview.PreviewOut:
    """What the live rules would do with each requested message, at the time it was
    requested, and the message rendered; nothing is stored or sent."""
    errors = [
        FieldError(f"requests[{i}]", problem)
        for i, r in enumerate(body.requests)
        if (problem := _preview_problem(r, workspace_id)) is not None
    ]
    if errors:
        raise invalid(errors)
    state = get_state(request)
    designer: Designer = state.extras[DESIGNER]
    renderer: Renderer = state.extras[RENDERER]
    spread_s = getattr(state.settings, "quiet_hours_spread_s", 0.0)
    try:
        return await preview.preview(designer, renderer, workspace_id, body.requests, spread_s)
    except DesignerUnavailable as exc:
        raise ProblemError(503, "Service unavailable", str(exc)) from None


def _preview_problem(r: ActivationRequested, workspace_id: str) -> str | None:
    if r.workspace_id != workspace_id:
        return "a request of another workspace"
    if r.requested_at is None:
        return "requested_at is required: the time the message was requested at"
    return None
