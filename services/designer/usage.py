"""Which journeys still use a template or a connector: a live or paused journey's published
versions may have profiles on any of them, so each one counts. Deleting what such a
journey uses would fail its messages; drafts and stopped journeys do not hold it."""

from __future__ import annotations

from sqlalchemy import select, true

from services.designer.context import Ctx
from services.designer.journeys import _references
from services.designer.models import Journey, JourneyVersion
from shared.problems import ProblemError, conflict

# Journeys named in a refusal at most; the count says how many there are.
NAMED = 20


async def journeys_using(ctx: Ctx, key: str, resource_id: str) -> list[tuple[str, str]]:
    """(id, name) of the live or paused journeys one of whose published versions names
    ``resource_id`` under ``key`` (``template_id``, ``connector_id``), by name."""
    rows = await ctx.session.execute(
        select(Journey.id, Journey.name, JourneyVersion.body)
        .join(JourneyVersion, JourneyVersion.journey_id == Journey.id)
        .where(
            Journey.workspace_id == ctx.identity.workspace_id,
            Journey.status.in_(("live", "paused")),
            JourneyVersion.published.is_(true()),
        )
    )
    found = {jid: name for jid, name, body in rows if resource_id in _references(body)[key]}
    return sorted(found.items(), key=lambda item: (item[1], item[0]))


def in_use(what: str, journeys: list[tuple[str, str]]) -> ProblemError:
    """409 naming the journeys that use it."""
    named = ", ".join(f"'{name}' ({jid})" for jid, name in journeys[:NAMED])
    more = f" and {len(journeys) - NAMED} more" if len(journeys) > NAMED else ""
    return conflict(
        f"{what} is used by {len(journeys)} live or paused journey(s): {named}{more}; "
        "stop them or publish versions without it first"
    )
