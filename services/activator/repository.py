"""All SQL of the activator. Callers own the transaction; nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    CursorResult,
    Select,
    String,
    all_,
    bindparam,
    case,
    delete,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.activator.models import (
    Delivery,
    Erasure,
    Outbox,
    SkipReason,
    Status,
    StoppedJourney,
)
from services.activator.ratelimit import ConnectorKey

PENDING = Status.PENDING.value
HELD = Status.HELD.value
SENT = Status.SENT.value
FAILED = Status.FAILED.value
SKIPPED = Status.SKIPPED.value

_IDS = ARRAY(String)

# What a delivery of an erased profile shows in place of its error.
ERASED_ERROR = "removed with the erased profile"


@dataclass(frozen=True)
class Filters:
    workspace_id: str
    journey_id: str | None = None
    profile_id: str | None = None
    status: str | None = None


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # Quiet-hours releases ---------------------------------------------------------------

    async def release(self, holds: Sequence[tuple[str, int]], now: datetime) -> int:
        """Make due now each delivery still held by the hold ``(activation_id, attempts)``
        names; a release of an older hold of the same delivery changes nothing."""
        if not holds:
            return 0
        result = await self.session.execute(
            update(Delivery)
            .where(
                Delivery.status == HELD,
                tuple_(Delivery.activation_id, Delivery.attempts).in_(list(holds)),
            )
            .values(status=PENDING, next_attempt_at=now, updated_at=now)
        )
        assert isinstance(result, CursorResult)
        return int(result.rowcount)

    # Erasure ----------------------------------------------------------------------------

    async def erase(self, workspace_id: str, profile_id: str, erased_at: datetime,
                    now: datetime) -> int:  # fmt: skip
        """Remember the erasure; deliveries not gone out are skipped, and every delivery of
        the profile loses its recipient, request and error text (which carry the profile's
        data), and its feedback events waiting in the outbox lose their error text too.
        How many deliveries were skipped."""
        stmt = pg_insert(Erasure).values(
            workspace_id=workspace_id, profile_id=profile_id, erased_at=erased_at
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Erasure.workspace_id, Erasure.profile_id],
                set_={"erased_at": func.greatest(Erasure.erased_at, stmt.excluded.erased_at)},
            )
        )
        mine = (Delivery.workspace_id == workspace_id, Delivery.profile_id == profile_id)
        waiting = Delivery.status.in_((PENDING, HELD))
        skipped = await self.session.execute(
            update(Delivery)
            .where(*mine, waiting)
            .values(status=SKIPPED, reason=SkipReason.PROFILE_ERASED.value,
                    next_attempt_at=None, updated_at=now)
        )  # fmt: skip
        # Errors quote what the provider said, often with the address in it; a failed
        # delivery's reason is its last error.
        await self.session.execute(
            update(Delivery)
            .where(*mine)
            .values(
                recipient=None, request={}, updated_at=now,
                last_error=case((Delivery.last_error.is_(None), None), else_=ERASED_ERROR),
                reason=case((Delivery.status == FAILED, ERASED_ERROR), else_=Delivery.reason),
            )
        )  # fmt: skip
        await self._erase_feedback(workspace_id, profile_id)
        assert isinstance(skipped, CursorResult)
        return int(skipped.rowcount)

    async def stop_journey(self, workspace_id: str, journey_id: str, now: datetime) -> int:
        """Remember the stop; the journey's deliveries not gone out (pending or held) are
        skipped with ``journey_stopped``. How many were skipped."""
        stmt = pg_insert(StoppedJourney).values(
            workspace_id=workspace_id, journey_id=journey_id, stopped_at=now
        )
        await self.session.execute(stmt.on_conflict_do_nothing())
        skipped = await self.session.execute(
            update(Delivery)
            .where(Delivery.workspace_id == workspace_id, Delivery.journey_id == journey_id,
                   Delivery.status.in_((PENDING, HELD)))
            .values(status=SKIPPED, reason=SkipReason.JOURNEY_STOPPED.value,
                    next_attempt_at=None, updated_at=now)
        )  # fmt: skip
        assert isinstance(skipped, CursorResult)
        return int(skipped.rowcount)

    async def _erase_feedback(self, workspace_id: str, profile_id: str) -> None:
        """The profile's rows in the outbox: those published go, those waiting lose their
        error text (the runtime drops them for an erased profile anyway). The outbox keeps
        published rows for ``outbox_retention_s`` only, so this looks at few rows."""
        mine = (
            Outbox.c.payload["workspace_id"].astext == workspace_id,
            Outbox.c.payload["profile_id"].astext == profile_id,
        )
        await self.session.execute(delete(Outbox).where(*mine, Outbox.c.published_at.is_not(None)))
        await self.session.execute(
            update(Outbox)
            .where(*mine, Outbox.c.payload["properties"].has_key("reason"))
            .values(payload=Outbox.c.payload.delete_path(["properties", "reason"]))
        )

    # Delivery loop ----------------------------------------------------------------------

    async def due(
        self, now: datetime, limit: int, held: Sequence[str], busy: Sequence[ConnectorKey]
    ) -> list[Delivery]:
        """Up to ``limit`` pending deliveries due by ``now``, earliest first, leaving out
        those this process holds, those through connectors at their rate limit, and those
        another transaction is sending right now."""
        stmt = (
            _waiting(held, busy)
            .where(Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(await self.session.scalars(stmt))

    async def next_due(self, held: Sequence[str], busy: Sequence[ConnectorKey]) -> datetime | None:
        stmt = _waiting(held, busy).with_only_columns(func.min(Delivery.next_attempt_at))
        return await self.session.scalar(stmt)

    # Reading ----------------------------------------------------------------------------

    async def page(
        self, filters: Filters, after: tuple[datetime, str] | None, limit: int
    ) -> list[Delivery]:
        """Newest first; ``after`` is the (created_at, id) of the last row already shown."""
        stmt = select(Delivery).where(Delivery.workspace_id == filters.workspace_id)
        if filters.journey_id is not None:
            stmt = stmt.where(Delivery.journey_id == filters.journey_id)
        if filters.profile_id is not None:
            stmt = stmt.where(Delivery.profile_id == filters.profile_id)
        if filters.status is not None:
            stmt = stmt.where(Delivery.status == filters.status)
        if after is not None:
            stmt = stmt.where(tuple_(Delivery.created_at, Delivery.activation_id) < after)
        order = (Delivery.created_at.desc(), Delivery.activation_id.desc())
        return list(await self.session.scalars(stmt.order_by(*order).limit(limit)))

    async def outcomes(
        self, workspace_id: str, activation_ids: Sequence[str]
    ) -> Sequence[Delivery]:
        stmt = select(Delivery).where(
            Delivery.workspace_id == workspace_id,
            Delivery.activation_id.in_(sorted(set(activation_ids))),
        )
        return (await self.session.scalars(stmt)).all()

    async def counts(
        self, workspace_id: str, journey_id: str, version: int | None
    ) -> dict[str, int]:
        stmt = (
            select(Delivery.status, func.count())
            .where(Delivery.workspace_id == workspace_id, Delivery.journey_id == journey_id)
            .group_by(Delivery.status)
        )
        if version is not None:
            stmt = stmt.where(Delivery.version == version)
        return {status: int(n) for status, n in (await self.session.execute(stmt)).all()}


def _waiting(held: Sequence[str], busy: Sequence[ConnectorKey]) -> Select[Any]:
    stmt = select(Delivery).where(Delivery.status == PENDING)
    if held:
        stmt = stmt.where(Delivery.activation_id != all_(_ids("held", held)))
    if busy:
        stmt = stmt.where(tuple_(Delivery.workspace_id, Delivery.connector_id).not_in(busy))
    return stmt


def _ids(name: str, values: Sequence[str]) -> Any:
    """One array parameter rather than IN (...): the same statement whatever the count."""
    return bindparam(name, list(values), type_=_IDS)
