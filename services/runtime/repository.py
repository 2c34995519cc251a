"""The SQL of the runtime's reads (its API) and replica bookkeeping; a batch's writes are in
:mod:`services.runtime.store`."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.runtime.models import (
    CounterRow,
    ExplanationRow,
    MemberRow,
    MembershipRow,
    ProfileRow,
    TimelineRow,
)


class RuntimeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # Profiles ---------------------------------------------------------------------------

    async def profile(self, workspace_id: str, profile_id: str) -> ProfileRow | None:
        return await self.session.get(ProfileRow, (workspace_id, profile_id))

    async def search_profiles(
        self,
        workspace_id: str,
        wanted: Sequence[Sequence[dict[str, Any]]],
        after: str | None,
        limit: int,
    ) -> Sequence[ProfileRow]:
        """Profiles whose attributes contain, for every group of ``wanted``, one of its
        documents (each ``{attribute: value}``): containment, so the GIN index on
        ``attributes`` answers it. Ordered by profile id."""
        stmt = select(ProfileRow).where(ProfileRow.workspace_id == workspace_id)
        for group in wanted:
            stmt = stmt.where(or_(*(ProfileRow.attributes.contains(doc) for doc in group)))
        if after is not None:
            stmt = stmt.where(ProfileRow.profile_id > after)
        return (await self.session.scalars(stmt.order_by(ProfileRow.profile_id).limit(limit))).all()

    # Memberships ------------------------------------------------------------------------

    async def memberships_of(
        self, workspace_id: str, profile_id: str, journeys: Collection[str] | None = None
    ) -> Sequence[MembershipRow]:
        """``journeys``: only these (a key limited to folders); None: all."""
        stmt = select(MembershipRow).where(
            MembershipRow.workspace_id == workspace_id,
            MembershipRow.profile_id == profile_id,
            MembershipRow.entered_at.is_not(None),
        )
        if journeys is not None:
            stmt = stmt.where(MembershipRow.journey_id.in_(list(journeys)))
        return (await self.session.scalars(stmt.order_by(MembershipRow.entered_at))).all()

    async def journey_members(
        self,
        workspace_id: str,
        journey_id: str,
        stage: str | None,
        active: bool | None,
        after: str | None,
        limit: int,
    ) -> Sequence[MembershipRow]:
        stmt = select(MembershipRow).where(
            MembershipRow.workspace_id == workspace_id,
            MembershipRow.journey_id == journey_id,
            MembershipRow.entered_at.is_not(None),
        )
        if stage is not None:
            stmt = stmt.where(MembershipRow.stage == stage)
        if active is not None:
            stmt = stmt.where(MembershipRow.active.is_(active))
        if after is not None:
            stmt = stmt.where(MembershipRow.profile_id > after)
        return (
            await self.session.scalars(stmt.order_by(MembershipRow.profile_id).limit(limit))
        ).all()

    async def member_counts(
        self, workspace_id: str, journey_id: str
    ) -> list[tuple[int | None, str | None, str | None, str | None, int]]:
        """Profiles inside the journey by (version, stage, step, flow)."""
        stmt = (
            select(MembershipRow.version, MembershipRow.stage, MembershipRow.step_id,
                   MembershipRow.flow, func.count())
            .where(
                MembershipRow.workspace_id == workspace_id,
                MembershipRow.journey_id == journey_id,
                MembershipRow.active,
            )
            .group_by(MembershipRow.version, MembershipRow.stage, MembershipRow.step_id,
                      MembershipRow.flow)
        )  # fmt: skip
        return [(v, s, st, f, int(n)) for v, s, st, f, n in (await self.session.execute(stmt))]

    # Timeline, explanations, counters ---------------------------------------------------

    async def counters_by_version(
        self, workspace_id: str, journey_id: str
    ) -> dict[int, dict[str, int]]:
        """Version -> counter key -> value, the shards summed."""
        stmt = (
            select(CounterRow.version, CounterRow.key, func.sum(CounterRow.value))
            .where(CounterRow.workspace_id == workspace_id, CounterRow.journey_id == journey_id)
            .group_by(CounterRow.version, CounterRow.key)
        )
        out: dict[int, dict[str, int]] = {}
        for version, key, value in (await self.session.execute(stmt)).all():
            out.setdefault(int(version), {})[key] = int(value)
        return out

    async def timeline(
        self,
        workspace_id: str,
        profile_id: str,
        after: int | None,
        limit: int,
        journeys: Collection[str] | None = None,
    ) -> Sequence[TimelineRow]:
        """``journeys``: only entries of these (a key limited to folders); None: all."""
        stmt = select(TimelineRow).where(
            TimelineRow.workspace_id == workspace_id, TimelineRow.profile_id == profile_id
        )
        if journeys is not None:
            stmt = stmt.where(TimelineRow.journey_id.in_(list(journeys)))
        if after is not None:
            stmt = stmt.where(TimelineRow.id > after)
        return (await self.session.scalars(stmt.order_by(TimelineRow.id).limit(limit))).all()

    async def explanations(
        self, workspace_id: str, profile_id: str, journey_id: str | None, limit: int
    ) -> Sequence[ExplanationRow]:
        """The newest events' explanations; with ``journey_id``, of events that concern it."""
        stmt = select(ExplanationRow).where(
            ExplanationRow.workspace_id == workspace_id, ExplanationRow.profile_id == profile_id
        )
        if journey_id is not None:
            stmt = stmt.where(ExplanationRow.journeys.contains([{"journey_id": journey_id}]))
        return (
            await self.session.scalars(stmt.order_by(ExplanationRow.id.desc()).limit(limit))
        ).all()

    # Replicas ---------------------------------------------------------------------------

    async def heartbeat(self, member_id: str, now: datetime) -> None:
        stmt = insert(MemberRow).values(member_id=member_id, heartbeat_at=now)
        await self.session.execute(
            stmt.on_conflict_do_update(index_elements=["member_id"], set_={"heartbeat_at": now})
        )

    async def live_members(self, since: datetime) -> int:
        count = await self.session.scalar(
            select(func.count()).select_from(MemberRow).where(MemberRow.heartbeat_at >= since)
        )
        return int(count or 0)

    async def leave_members(self, member_id: str) -> None:
        await self.session.execute(delete(MemberRow).where(MemberRow.member_id == member_id))
