"""All SQL of the runtime."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.runtime.codec import dump_state, load_state
from services.runtime.engine.engine import Catalog
from services.runtime.engine.state import Explanation, JourneyState, TimelineEntry
from services.runtime.models import (
    CounterRow,
    ExplanationRow,
    MemberRow,
    MembershipRow,
    Outbox,
    ProcessedRow,
    ProfileRow,
    TimelineRow,
)
from shared.events import AcceptedEvent


class RuntimeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # Profiles ---------------------------------------------------------------------------

    async def lock_profiles(
        self, workspace_id: str, profile_ids: Iterable[str], *, create: bool
    ) -> dict[str, ProfileRow]:
        """Lock the profiles' rows (creating missing ones if ``create``), in one order,
        so two batches touching the same profiles wait for each other, never deadlock."""
        ids = sorted(set(profile_ids))
        if create and ids:
            await self.session.execute(
                insert(ProfileRow).on_conflict_do_nothing(),
                [{"workspace_id": workspace_id, "profile_id": p} for p in ids],
            )
        rows = await self.session.scalars(
            select(ProfileRow)
            .where(ProfileRow.workspace_id == workspace_id, ProfileRow.profile_id.in_(ids))
            .order_by(ProfileRow.profile_id)
            .with_for_update()
        )
        return {row.profile_id: row for row in rows}

    async def profile(self, workspace_id: str, profile_id: str) -> ProfileRow | None:
        return await self.session.get(ProfileRow, (workspace_id, profile_id))

    async def delete_profile(self, workspace_id: str, profile_id: str) -> bool:
        found = False
        for model in (ProfileRow, MembershipRow, TimelineRow, ExplanationRow):
            result = await self.session.execute(
                delete(model).where(
                    model.workspace_id == workspace_id, model.profile_id == profile_id
                )
            )
            found = found or (model is ProfileRow and result.rowcount > 0)  # type: ignore[attr-defined]
        return found

    # Dedup ------------------------------------------------------------------------------

    async def claim_events(self, workspace_id: str, event_ids: Sequence[str]) -> set[str]:
        """The ids not applied before; from now on they count as applied."""
        if not event_ids:
            return set()
        rows = await self.session.scalars(
            insert(ProcessedRow).on_conflict_do_nothing().returning(ProcessedRow.event_id),
            [{"workspace_id": workspace_id, "event_id": e} for e in sorted(set(event_ids))],
        )
        return set(rows)

    # Memberships ------------------------------------------------------------------------

    async def states(
        self, workspace_id: str, profile_ids: Sequence[str]
    ) -> dict[str, dict[str, JourneyState]]:
        rows = await self.session.scalars(
            select(MembershipRow).where(
                MembershipRow.workspace_id == workspace_id,
                MembershipRow.profile_id.in_(profile_ids),
            )
        )
        out: dict[str, dict[str, JourneyState]] = {p: {} for p in profile_ids}
        for row in rows:
            out[row.profile_id][row.journey_id] = load_state(row.state)
        return out

    async def save_states(
        self, workspace_id: str, states: dict[str, dict[str, JourneyState]], catalog: Catalog
    ) -> None:
        values = [
            _membership_values(workspace_id, profile_id, jid, state, catalog)
            for profile_id in sorted(states)
            for jid, state in sorted(states[profile_id].items())
        ]
        if not values:
            return
        await self.session.execute(_UPSERT_MEMBERSHIP, values)

    async def active_profiles(
        self, workspace_id: str, journey_id: str, flow: str | None = None
    ) -> list[str]:
        stmt = select(MembershipRow.profile_id).where(
            MembershipRow.workspace_id == workspace_id,
            MembershipRow.journey_id == journey_id,
            MembershipRow.active,
        )
        if flow is not None:
            stmt = stmt.where(MembershipRow.flow == flow)
        return list(await self.session.scalars(stmt))

    async def memberships_of(self, workspace_id: str, profile_id: str) -> Sequence[MembershipRow]:
        return (
            await self.session.scalars(
                select(MembershipRow)
                .where(
                    MembershipRow.workspace_id == workspace_id,
                    MembershipRow.profile_id == profile_id,
                    MembershipRow.entered_at.is_not(None),
                )
                .order_by(MembershipRow.entered_at)
            )
        ).all()

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

    async def active_counts(
        self, workspace_id: str, journey_id: str, version: int | None
    ) -> Sequence[Any]:
        stmt = (
            select(MembershipRow.stage, MembershipRow.step_id, func.count())
            .where(
                MembershipRow.workspace_id == workspace_id,
                MembershipRow.journey_id == journey_id,
                MembershipRow.active,
            )
            .group_by(MembershipRow.stage, MembershipRow.step_id)
        )
        if version is not None:
            stmt = stmt.where(MembershipRow.version == version)
        return (await self.session.execute(stmt)).all()

    # Timeline, explanations, counters ---------------------------------------------------

    async def add_timeline(
        self, workspace_id: str, entries: Sequence[tuple[str, TimelineEntry]]
    ) -> None:
        if entries:
            await self.session.execute(
                insert(TimelineRow),
                [
                    {"workspace_id": workspace_id, "profile_id": profile_id, "at": e.at,
                     "journey_id": e.journey_id, "version": e.version, "kind": e.kind,
                     "stage": e.stage, "step_id": e.step_id, "detail": e.detail,
                     "cause": e.cause}
                    for profile_id, e in entries
                ],
            )  # fmt: skip

    async def add_explanations(
        self, workspace_id: str, items: Sequence[tuple[str, AcceptedEvent, Explanation]]
    ) -> None:
        if items:
            await self.session.execute(
                insert(ExplanationRow),
                [
                    {"workspace_id": workspace_id, "profile_id": profile_id,
                     "event_id": event.event_id, "name": event.name, "at": event.timestamp,
                     "journey_id": x.journey_id, "outcome": x.outcome, "reasons": x.reasons}
                    for profile_id, event, x in items
                ],
            )  # fmt: skip

    async def add_commands(self, commands: Sequence[tuple[str, dict[str, Any], str]]) -> None:
        """Outbox rows (subject, payload, Nats-Msg-Id), published after the commit."""
        if commands:
            await self.session.execute(
                insert(Outbox),
                [{"subject": s, "payload": p, "msg_id": m} for s, p, m in commands],
            )

    async def bump(
        self, workspace_id: str, increments: dict[tuple[str, int, str], int], shard: int
    ) -> None:
        if not increments:
            return
        await self.session.execute(
            _BUMP,
            [
                {"workspace_id": workspace_id, "journey_id": j, "version": v, "key": k,
                 "shard": shard, "value": n}
                for (j, v, k), n in sorted(increments.items())
            ],
        )  # fmt: skip

    async def counters(
        self, workspace_id: str, journey_id: str, version: int | None
    ) -> dict[str, int]:
        stmt = select(CounterRow.key, func.sum(CounterRow.value)).where(
            CounterRow.workspace_id == workspace_id, CounterRow.journey_id == journey_id
        )
        if version is not None:
            stmt = stmt.where(CounterRow.version == version)
        rows = await self.session.execute(stmt.group_by(CounterRow.key))
        return {key: int(value) for key, value in rows.all()}

    async def timeline(
        self, workspace_id: str, profile_id: str, after: int | None, limit: int
    ) -> Sequence[TimelineRow]:
        stmt = select(TimelineRow).where(
            TimelineRow.workspace_id == workspace_id, TimelineRow.profile_id == profile_id
        )
        if after is not None:
            stmt = stmt.where(TimelineRow.id > after)
        return (await self.session.scalars(stmt.order_by(TimelineRow.id).limit(limit))).all()

    async def explanations(
        self, workspace_id: str, profile_id: str, journey_id: str | None, limit: int
    ) -> Sequence[ExplanationRow]:
        stmt = select(ExplanationRow).where(
            ExplanationRow.workspace_id == workspace_id, ExplanationRow.profile_id == profile_id
        )
        if journey_id is not None:
            stmt = stmt.where(ExplanationRow.journey_id == journey_id)
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


# Where a profile was when it left stays readable: these keep their last values.
KEEP_WHEN_LEFT = ("version", "stage", "step_id", "entered_at")


def _upsert_membership() -> Any:
    """One statement for any number of rows (executemany): compiled once, not per batch."""
    stmt = insert(MembershipRow)
    kept = MembershipRow.__table__.c
    keys = ("workspace_id", "profile_id", "journey_id")
    columns = {
        c.name: func.coalesce(stmt.excluded[c.name], c) if c.name in KEEP_WHEN_LEFT
        else stmt.excluded[c.name]
        for c in kept
        if c.name not in keys
    }  # fmt: skip
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=columns)


def _bump() -> Any:
    stmt = insert(CounterRow)
    return stmt.on_conflict_do_update(
        index_elements=["workspace_id", "journey_id", "version", "key", "shard"],
        set_={"value": CounterRow.value + stmt.excluded.value},
    )


_UPSERT_MEMBERSHIP = _upsert_membership()
_BUMP = _bump()


def _membership_values(
    workspace_id: str, profile_id: str, journey_id: str, state: JourneyState, catalog: Catalog
) -> dict[str, Any]:
    m = state.membership
    values: dict[str, Any] = dict.fromkeys(KEEP_WHEN_LEFT) | {
        "workspace_id": workspace_id,
        "profile_id": profile_id,
        "journey_id": journey_id,
        "state": dump_state(state),
        "active": m is not None,
        "outcome": None
        if m
        else (state.history.last_outcome.value if state.history.last_outcome else None),
        "left_at": None if m else state.history.last_left_at,
    }
    if m is not None:
        live = catalog.journeys.get(journey_id)
        compiled = live.versions.get(m.version) if live else None
        values |= {
            "version": m.version,
            "stage": compiled.stages[m.stage].name if compiled else None,
            "step_id": m.step_id,
            "flow": m.flow.value,
            "entered_at": m.entered_at,
        }
    else:
        values["flow"] = None
    return values
