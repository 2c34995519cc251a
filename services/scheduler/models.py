"""Tables of the ``scheduler`` schema."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import schema_metadata


class Base(DeclarativeBase):
    metadata = schema_metadata("scheduler")


class TimerState(StrEnum):
    PENDING = "pending"
    FIRED = "fired"
    CANCELLED = "cancelled"


class Timer(Base):
    """One timer. A cancel that arrives before its schedule leaves a ``cancelled`` row with
    no details (a tombstone), so the schedule that follows finds it and does nothing."""

    __tablename__ = "timers"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'fired', 'cancelled')", name="state"),
        CheckConstraint("state <> 'pending' OR due_at IS NOT NULL", name="pending_has_due_at"),
        # Claiming reads only pending rows in due order: the index stays as small as the
        # backlog, however many settled rows the table holds.
        Index(
            "ix_timers_pending_due",
            "due_at",
            "timer_id",
            postgresql_where=text("state = 'pending'"),
        ),
        Index(
            "ix_timers_settled",
            text("coalesce(fired_at, cancelled_at)"),
            postgresql_where=text("state <> 'pending'"),
        ),
    )

    timer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(Text)
    profile_id: Mapped[str | None] = mapped_column(Text)
    journey_id: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(String(32))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
