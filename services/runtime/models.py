"""Tables of the ``runtime`` schema: profiles and their place in each journey."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import schema_metadata
from shared.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = schema_metadata("runtime")


Outbox = outbox_table(Base.metadata)


class ProfileRow(Base):
    __tablename__ = "profiles"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    consent: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class MembershipRow(Base):
    """A profile's state in one journey: the engine's JourneyState plus columns to query."""

    __tablename__ = "memberships"
    __table_args__ = (Index("ix_memberships_journey", "journey_id", "active", "stage"),)

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSONB)
    active: Mapped[bool]
    version: Mapped[int | None]
    stage: Mapped[str | None] = mapped_column(String(200))
    step_id: Mapped[str | None] = mapped_column(String(100))
    flow: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(16))
    entered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    left_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ErasureRow(Base):
    """An erased profile's tombstone: events accepted before ``erased_at`` and feedback on
    its old messages are dropped rather than bringing it back. ``profile_key`` is a digest
    of the profile id, so the tombstone does not keep the id itself."""

    __tablename__ = "erasures"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile_key: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProcessedRow(Base):
    """Event ids already applied: the same event delivered twice has effect once."""

    __tablename__ = "processed"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class TimelineRow(Base):
    __tablename__ = "timeline"
    __table_args__ = (Index("ix_timeline_profile", "workspace_id", "profile_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64))
    profile_id: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    journey_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    kind: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str | None] = mapped_column(String(200))
    step_id: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB)
    cause: Mapped[dict[str, Any]] = mapped_column(JSONB)


class ExplanationRow(Base):
    """Why one event did or did not move the profile: ``journeys`` holds, per journey,
    ``{"journey_id", "outcome", "reasons"}``."""

    __tablename__ = "explanations"
    __table_args__ = (Index("ix_explanations_profile", "workspace_id", "profile_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64))
    profile_id: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    journeys: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)


class CounterRow(Base):
    """Exact analytics counters, incremented in the transaction that moves the profile.

    Each key is spread over shards so concurrent batches add to different rows instead of
    waiting on one; a reader sums the shards."""

    __tablename__ = "counters"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class MemberRow(Base):
    """Runtime replicas alive now: each takes a fair share of the event partitions."""

    __tablename__ = "members"

    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TriggerStatsRow(Base):
    """What was received of one event trigger's event (services/runtime/triggers.py), in
    shards so concurrent batches add to different rows; a reader sums them."""

    __tablename__ = "trigger_stats"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    trigger_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    received_total: Mapped[int] = mapped_column(BigInteger)
    last_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    schema_violations: Mapped[int] = mapped_column(BigInteger)
    samples: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
