"""All SQL of the scheduler. Callers own the transaction; nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    CursorResult,
    Row,
    Text,
    and_,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import TableValuedAlias

from services.scheduler.models import Timer, TimerState
from shared.timers import TimerCancel, TimerSchedule

PENDING = TimerState.PENDING.value
FIRED = TimerState.FIRED.value
CANCELLED = TimerState.CANCELLED.value
# Inline, not a parameter: only a literal lets the planner match the partial indexes'
# predicates under a prepared statement's generic plan.
PENDING_SQL: ColumnElement[str] = literal_column(f"'{PENDING}'")

# What the release loop needs of a due timer to announce it.
DUE_COLUMNS = (
    Timer.timer_id,
    Timer.workspace_id,
    Timer.profile_id,
    Timer.journey_id,
    Timer.kind,
    Timer.due_at,
    Timer.payload,
)


class TimerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_pending(self, commands: Sequence[TimerSchedule]) -> None:
        """Arm each timer unless its id is known: a repeat, a fired timer or a tombstone
        left by an earlier cancel all stay as they are."""
        unique = _by_timer_id(commands)
        if not unique:
            return
        rows = _unnest(
            (Timer.timer_id, [c.timer_id for c in unique]),
            (Timer.workspace_id, [c.workspace_id for c in unique]),
            (Timer.profile_id, [c.profile_id for c in unique]),
            (Timer.journey_id, [c.journey_id for c in unique]),
            (Timer.kind, [c.kind.value for c in unique]),
            (Timer.due_at, [c.due_at for c in unique]),
            (Timer.payload, [c.payload for c in unique]),
            (Timer.state, [PENDING] * len(unique)),
        )
        stmt = insert(Timer).from_select(list(rows.c.keys()), select(rows))
        await self.session.execute(stmt.on_conflict_do_nothing(index_elements=[Timer.timer_id]))

    async def cancel(self, commands: Sequence[TimerCancel], at: datetime) -> None:
        """Cancel pending timers; leave a tombstone for ids not seen yet. Fired timers stay
        fired: a late cancel cannot take back a release."""
        unique = _by_timer_id(commands)
        if not unique:
            return
        rows = _unnest(
            (Timer.timer_id, [c.timer_id for c in unique]),
            (Timer.workspace_id, [c.workspace_id for c in unique]),
            (Timer.state, [CANCELLED] * len(unique)),
            (Timer.cancelled_at, [at] * len(unique)),
        )
        stmt = insert(Timer).from_select(list(rows.c.keys()), select(rows))
        stmt = stmt.on_conflict_do_update(
            index_elements=[Timer.timer_id],
            set_={"state": CANCELLED, "cancelled_at": stmt.excluded.cancelled_at},
            where=Timer.state == PENDING,
        )
        await self.session.execute(stmt)

    async def claim_due(self, now: datetime, limit: int) -> Sequence[Row[Any]]:
        """Lock up to ``limit`` pending timers due by ``now``, earliest first; rows another
        transaction holds are skipped, so replicas claim disjoint batches."""
        stmt = (
            select(*DUE_COLUMNS)
            .where(_pending(), Timer.due_at <= now)
            .order_by(Timer.due_at, Timer.timer_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (await self.session.execute(stmt)).all()

    async def mark_fired(self, timer_ids: Sequence[str], at: datetime) -> None:
        if timer_ids:
            ids = bindparam("ids", list(timer_ids), type_=ARRAY(Text))
            await self.session.execute(
                update(Timer)
                .where(Timer.timer_id == any_(ids), Timer.state == PENDING)
                .values(state=FIRED, fired_at=at)
                .execution_options(synchronize_session=False)
            )

    async def mark_dead(self, timer_ids: Sequence[str], at: datetime) -> None:
        """Timers whose message can never be published: settled as cancelled (they will
        not fire), their dead-letter record saying why."""
        if timer_ids:
            ids = bindparam("ids", list(timer_ids), type_=ARRAY(Text))
            await self.session.execute(
                update(Timer)
                .where(Timer.timer_id == any_(ids), Timer.state == PENDING)
                .values(state=CANCELLED, cancelled_at=at)
                .execution_options(synchronize_session=False)
            )

    async def next_due(self) -> datetime | None:
        return await self.session.scalar(select(func.min(Timer.due_at)).where(_pending()))

    async def pending_stats(self, workspace_id: str | None = None) -> tuple[int, datetime | None]:
        """How many timers are pending and when the first falls due (in one workspace)."""
        stmt = select(func.count(), func.min(Timer.due_at)).where(_pending())
        if workspace_id is not None:
            stmt = stmt.where(Timer.workspace_id == workspace_id)
        count, first = (await self.session.execute(stmt)).one()
        return int(count), first

    async def prune_settled(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` fired or cancelled timers settled before ``before``."""
        settled_at = func.coalesce(Timer.fired_at, Timer.cancelled_at)
        oldest = (
            select(Timer.timer_id)
            .where(and_(Timer.state != PENDING_SQL, settled_at < before))
            .limit(limit)
            .scalar_subquery()
        )
        result = await self.session.execute(delete(Timer).where(Timer.timer_id.in_(oldest)))
        assert isinstance(result, CursorResult)
        return int(result.rowcount)


def _pending() -> ColumnElement[bool]:
    return Timer.state == PENDING_SQL


Command = TypeVar("Command", TimerSchedule, TimerCancel)


def _by_timer_id(commands: Sequence[Command]) -> list[Command]:
    """One command per timer id, in id order: concurrent batches then lock rows in the
    same order and cannot deadlock each other."""
    unique = {c.timer_id: c for c in reversed(commands)}  # the first of repeats wins
    return [unique[k] for k in sorted(unique)]


def _unnest(*columns: tuple[InstrumentedAttribute[Any], list[Any]]) -> TableValuedAlias:
    """Rows from one array per column: a whole batch in a few parameters, which Postgres
    parses and plans far faster than a multi-row VALUES of thousands."""
    arrays = [bindparam(None, values, type_=ARRAY(column.type)) for column, values in columns]
    names = (column.key for column, _ in columns)
    return func.unnest(*arrays).table_valued(*names).render_derived(name="batch")
