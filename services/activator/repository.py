"""All SQL of the activator. Callers own the transaction; nothing here commits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    CursorResult,
    Select,
    String,
    all_,
    any_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.activator.models import Delivery, Erasure, Outbox, SkipReason, Status
from services.activator.ratelimit import ConnectorKey
from shared.outbox import fit_msg_id
from shared.timers import TimerSchedule

PENDING = Status.PENDING.value
HELD = Status.HELD.value
SENT = Status.SENT.value
FAILED = Status.FAILED.value
SKIPPED = Status.SKIPPED.value

_IDS = ARRAY(String)


@dataclass(frozen=True)
class Filters:
    workspace_id: str
    journey_id: str | None = None
    profile_id: str | None = None
    status: str | None = None


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # Intake -----------------------------------------------------------------------------

    async def known(self, activation_ids: Sequence[str]) -> set[str]:
        """The ids that already have a row: requests seen before."""
        if not activation_ids:
            return set()
        ids = _ids("ids", activation_ids)
        rows = await self.session.scalars(
            select(Delivery.activation_id).where(Delivery.activation_id == any_(ids))
        )
        return set(rows)

    async def lock_budgets(self, names: Iterable[str]) -> None:
        """Serialise cap decisions per profile and channel across replicas until commit.
        Locks are taken in one order, so two batches wait for each other, never deadlock."""
        keys = sorted({_lock_key(name) for name in names})
        if keys:
            await self.session.execute(
                text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) k"),
                {"keys": keys},
            )

    async def cap_usage(
        self, workspace_id: str, channel: str, profile_ids: Sequence[str], since: datetime
    ) -> dict[str, int]:
        """Per profile: messages on ``channel`` sent after ``since``, plus those still
        pending or held (admitted and on their way, so they hold a place in the cap already)."""
        ids = _ids("profiles", profile_ids)
        stmt = (
            select(Delivery.profile_id, func.count())
            .where(
                Delivery.workspace_id == workspace_id,
                Delivery.channel == channel,
                Delivery.profile_id == any_(ids),
                or_(
                    Delivery.status.in_([PENDING, HELD]),
                    (Delivery.status == SENT) & (Delivery.sent_at > since),
                ),
            )
            .group_by(Delivery.profile_id)
        )
        return {profile: int(n) for profile, n in (await self.session.execute(stmt)).all()}

    async def add(self, rows: Sequence[Mapping[str, Any]]) -> set[str]:
        """Store new deliveries; an id stored meanwhile by another replica is left alone.
        The ids this call stored."""
        if not rows:
            return set()
        stmt = (
            pg_insert(Delivery)
            .on_conflict_do_nothing(index_elements=[Delivery.activation_id])
            .returning(Delivery.activation_id)
        )
        return set(await self.session.scalars(stmt, list(rows)))

    async def put_timers(self, timers: Sequence[TimerSchedule]) -> None:
        """Ask the scheduler for ``timers`` once this transaction commits."""
        rows = [
            {
                "subject": t.subject,
                "msg_id": fit_msg_id(t.msg_id),
                "payload": t.model_dump(mode="json"),
            }
            for t in timers
        ]
        if rows:
            await self.session.execute(insert(Outbox), rows)

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
        the profile loses its recipient and request (which carry the profile's data).
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
        await self.session.execute(
            update(Delivery).where(*mine).values(recipient=None, request={}, updated_at=now)
        )
        assert isinstance(skipped, CursorResult)
        return int(skipped.rowcount)

    async def erased(self, workspace_id: str, profile_ids: Iterable[str]) -> dict[str, datetime]:
        """When each of these profiles was last erased, for those that were."""
        rows = await self.session.execute(
            select(Erasure.profile_id, Erasure.erased_at).where(
                Erasure.workspace_id == workspace_id,
                Erasure.profile_id == any_(_ids("ids", sorted(set(profile_ids)))),
            )
        )
        return {profile: at for profile, at in rows.all()}

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

    async def lock_due(self, activation_ids: Sequence[str], now: datetime) -> list[Delivery]:
        """Those of the deliveries still pending and due that no one else holds, locked
        until commit: whoever gets the lock is the only one sending it."""
        return list(
            await self.session.scalars(
                select(Delivery)
                .where(
                    Delivery.activation_id == any_(_ids("ids", activation_ids)),
                    Delivery.status == PENDING,
                    Delivery.next_attempt_at <= now,
                )
                .order_by(Delivery.next_attempt_at, Delivery.activation_id)
                .with_for_update(skip_locked=True)
            )
        )

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


def budget_name(workspace_id: str, profile_id: str, channel: str) -> str:
    return f"{workspace_id}\x00{profile_id}\x00{channel}"


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for ``name``."""
    digest = hashlib.sha256(f"waypost-activator-cap\x00{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


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
