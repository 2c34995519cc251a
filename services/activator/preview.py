"""What the live rules would do with the messages a journey simulation requests, and each
message rendered: the runtime simulates a journey and asks here, so a simulation answers
with the activator's own decisions rather than a copy of them.

Each request is decided as the intake decides it on arrival (``policy``: consent and the
workspace's consent mode, the recipient, frequency caps, quiet hours in the profile's
zone), at the simulated time it was requested, not now. The caps count the messages of the
simulation itself that were admitted before it, each from when it would go out (its hold's
end, for a held one): a sample profile has no deliveries of its own. Then it is prepared as
the delivery loop prepares it (the connector and template from the designer, rendered
under the rendering budgets): a missing connector or template, an unusable connector or a
template that does not render is ``failed`` with the error, as it would be live. Nothing is
stored, counted or sent.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from services.activator import policy
from services.activator.designer import Designer, Missing
from services.activator.models import SkipReason
from services.activator.schemas import ActivationRequested, WorkspaceRules
from shared.rendering import Renderer
from shared.templating import TemplateError

# Most messages one preview decides and renders (a simulation's own limit is the same).
MAX_MESSAGES = 5000


class PreviewIn(BaseModel):
    requests: Annotated[list[ActivationRequested], Field(max_length=MAX_MESSAGES)] = Field(
        description="Requests in the order they were made; each one's ``requested_at`` is the "
        "(simulated) time it was made at."
    )


class RenderedOut(BaseModel):
    subject: str | None
    body: str
    html: str | None
    title: str | None = None
    data: dict[str, str] | None = None


class PreviewItem(BaseModel):
    activation_id: str
    status: Literal["sent", "held", "skipped", "failed"]
    reason: str | None = Field(
        default=None, description="skipped: no_consent, no_recipient or frequency_cap."
    )
    held_until: datetime | None = Field(
        default=None, description="held: when quiet hours let it go out."
    )
    error: str | None = Field(default=None, description="failed, or not renderable: why.")
    recipient: str | None = None
    rendered: RenderedOut | None = None


class PreviewOut(BaseModel):
    items: list[PreviewItem]


@dataclass(frozen=True)
class Decision:
    """What the intake would do with one request: skip it with a reason, or admit it
    (held until a time, or due at once)."""

    reason: SkipReason | None = None
    held_until: datetime | None = None


def decide(
    requests: Sequence[ActivationRequested], rules: WorkspaceRules, spread_s: float
) -> dict[str, Decision]:
    """Each request decided at its own ``requested_at``, in order of it."""
    decided: dict[str, Decision] = {}
    # When each admitted message goes out, per profile and channel: what a later one's
    # caps count (live, a message counts once sent within the period, or while on its way).
    going: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for r in sorted(requests, key=_requested_at):
        at = _requested_at(r)
        reason = policy.refusal(r, rules)
        if reason is None and _capped(r, rules, going[(r.profile_id, r.channel)], at):
            reason = SkipReason.FREQUENCY_CAP
        if reason is not None:
            decided[r.activation_id] = Decision(reason=reason)
            continue
        held = policy.held_until(r, rules, at, spread_s)
        going[(r.profile_id, r.channel)].append(held or at)
        decided[r.activation_id] = Decision(held_until=held)
    return decided


def _capped(
    r: ActivationRequested, rules: WorkspaceRules, going: list[datetime], at: datetime
) -> bool:
    used = {
        policy.CapKey(r.profile_id, r.channel, cap.per): sum(1 for t in going if t > at - cap.per)
        for cap in rules.caps_for(r.channel)
    }
    return r.activation_id in policy.over_caps([r], rules, used)


def _requested_at(r: ActivationRequested) -> datetime:
    assert r.requested_at is not None  # checked by the route
    return r.requested_at


async def preview(
    designer: Designer,
    renderer: Renderer,
    workspace_id: str,
    requests: Sequence[ActivationRequested],
    spread_s: float,
) -> PreviewOut:
    rules = await designer.rules(workspace_id)
    decided = decide(requests, rules, spread_s)
    items = await asyncio.gather(
        *(_item(designer, renderer, r, decided[r.activation_id]) for r in requests)
    )
    return PreviewOut(items=list(items))


async def _item(
    designer: Designer, renderer: Renderer, r: ActivationRequested, decision: Decision
) -> PreviewItem:
    await asyncio.sleep(0)  # a large preview renders between other requests, not before them
    rendered, error = await _prepared(designer, renderer, r)
    item = PreviewItem(
        activation_id=r.activation_id,
        status="sent",
        recipient=policy.recipient_for(r),
        rendered=rendered,
        error=error,
    )
    if decision.reason is not None:
        item.status, item.reason = "skipped", decision.reason.value
    elif error is not None:
        item.status = "failed"
    elif decision.held_until is not None:
        item.status, item.held_until = "held", decision.held_until
    return item


async def _prepared(
    designer: Designer, renderer: Renderer, r: ActivationRequested
) -> tuple[RenderedOut | None, str | None]:
    """The message rendered, or why it could not be sent (as the delivery loop says it)."""
    try:
        connector = await designer.connector(r.workspace_id, r.connector_id)
        template = await designer.template(r.workspace_id, r.template_id)
    except Missing as exc:
        return None, f"{exc} does not exist"
    try:
        out = await renderer.render(template, r.context)
    except TemplateError as exc:
        return None, f"template error: {exc}"
    data: dict[str, Any] | None = dict(out.data) if out.data is not None else None
    rendered = RenderedOut(
        subject=out.subject, body=out.body, html=out.html, title=out.title, data=data
    )
    if connector.config is None:
        return rendered, connector.problem
    return rendered, None
