"""What the gateway does when a profile is erased.

The runtime announces each erasure on ``activations.erase.<workspace>``
(:mod:`shared.erasure`). The gateway's durable consumer ``gateway-erase`` (shared by every
replica) then, in one transaction per batch:

- deletes the profile's rows from the event inbox that were accepted up to the erasure,
  published or not (the inbox would otherwise keep them for ``inbox_retention_h``, and one
  not yet published would reach the runtime after the erasure), and its feedback rows
  (opens and clicks recorded in the moment before this consumer saw the erasure); other
  rows accepted later belong to the profile made again, and stay;
- remembers the erasure (a digest of the profile id and when), so a tracking token issued
  before it records nothing (:func:`erased_at`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from nats.aio.msg import Msg
from pydantic import ValidationError
from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.models import Erasures, EventInbox
from gateway.settings import GatewaySettings
from shared import bus
from shared.app import ServiceState
from shared.erasure import FEEDBACK, SUBJECTS, ProfileErased, profile_key
from shared.logging import get_logger
from shared.topology import ACTIVATIONS

log = get_logger(__name__)


def parse(msg: Msg) -> ProfileErased:
    try:
        erased = ProfileErased.model_validate_json(msg.data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)[:3]
        raise bus.Poison(f"not a profile erasure: {errors}") from exc
    if erased.subject != msg.subject:
        raise bus.Poison(f"workspace {erased.workspace_id!r} is not that of {msg.subject}")
    return erased


async def erase(session: AsyncSession, erasures: Sequence[ProfileErased]) -> int:
    """Delete the profiles' inbox rows accepted up to their erasure and remember the
    erasures; how many rows were deleted."""
    deleted = 0
    for e in sorted(erasures, key=lambda e: (e.workspace_id, e.profile_id)):
        result = await session.execute(
            delete(EventInbox).where(
                EventInbox.c.workspace_id == e.workspace_id,
                EventInbox.c.profile_id == e.profile_id,
                or_(EventInbox.c.accepted_at <= e.erased_at, EventInbox.c.name.in_(FEEDBACK)),
            )
        )
        deleted += int(getattr(result, "rowcount", 0) or 0)
        stmt = insert(Erasures).values(
            workspace_id=e.workspace_id, profile_key=profile_key(e.profile_id),
            erased_at=e.erased_at,
        )  # fmt: skip
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Erasures.c.workspace_id, Erasures.c.profile_key],
                set_={"erased_at": func.greatest(Erasures.c.erased_at, stmt.excluded.erased_at)},
            )
        )
    return deleted


async def erased_at(
    sessions: async_sessionmaker[AsyncSession], workspace_id: str, profile_id: str
) -> datetime | None:
    """When the profile was last erased, if it was."""
    async with sessions() as session:
        at: datetime | None = await session.scalar(
            select(Erasures.c.erased_at).where(
                Erasures.c.workspace_id == workspace_id,
                Erasures.c.profile_key == profile_key(profile_id),
            )
        )
    return at


@asynccontextmanager
async def running(state: ServiceState) -> AsyncIterator[None]:
    """The erasure consumer, for the lifespan of the gateway."""
    settings = state.settings
    assert isinstance(settings, GatewaySettings)

    async def take(erasures: Sequence[ProfileErased]) -> None:
        async with state.sessions() as session, session.begin():
            deleted = await erase(session, erasures)
        log.info("erasure.inbox_deleted", profiles=len(erasures), rows=deleted)

    async def one(msg: Msg) -> None:
        await take([parse(msg)])

    async def many(msgs: list[Msg]) -> None:
        await take([parse(m) for m in msgs])

    spec = bus.ConsumerSpec(
        stream=ACTIVATIONS.name, durable=settings.erase_durable, filter_subject=SUBJECTS
    )
    metrics = bus.ConsumerMetrics(state.registry)
    consumer = bus.Consumer(state.js, spec, one, metrics, batch_handler=many)
    await consumer.start()
    try:
        yield
    finally:
        await consumer.stop()
