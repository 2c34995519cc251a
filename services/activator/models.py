"""Tables of the ``activator`` schema: one row per activation, and the outbox (feedback
events and quiet-hours timers)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Double, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import schema_metadata
from shared.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = schema_metadata("activator")


Outbox = outbox_table(Base.metadata)


class Status(StrEnum):
    PENDING = "pending"
    HELD = "held"  # by quiet hours, until the scheduler releases it
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"


class SkipReason(StrEnum):
    NO_CONSENT = "no_consent"
    NO_RECIPIENT = "no_recipient"
    FREQUENCY_CAP = "frequency_cap"
    PROFILE_ERASED = "profile_erased"
    JOURNEY_STOPPED = "journey_stopped"


TS = DateTime(timezone=True)


class Delivery(Base):
    """One requested activation, from its decision to its final status.

    The activation id is the key: a request seen again finds its row and changes nothing.
    Times are on the product's clock. A ``held`` delivery waits for its quiet-hours timer
    (``next_attempt_at`` says when it falls due); the release makes it ``pending`` and due.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'held', 'sent', 'skipped', 'failed')", name="status"
        ),
        Index("ix_deliveries_listing", "workspace_id", "created_at", "activation_id"),
        Index("ix_deliveries_journey", "workspace_id", "journey_id", "status"),
        Index("ix_deliveries_caps", "workspace_id", "profile_id", "channel", "status"),
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    activation_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64))
    profile_id: Mapped[str] = mapped_column(String(200))
    journey_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    step_id: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    connector_id: Mapped[str] = mapped_column(String(64))
    template_id: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str | None] = mapped_column(String(1000))
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS)
    sent_at: Mapped[datetime | None] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)


class Erasure(Base):
    """A deleted profile: requests for it made before ``erased_at`` are skipped."""

    __tablename__ = "erasures"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(TS)


class StoppedJourney(Base):
    """A stopped journey (stopping is final): its deliveries not gone out were skipped,
    and a request of it that arrives after the stop is skipped on arrival."""

    __tablename__ = "stopped_journeys"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stopped_at: Mapped[datetime] = mapped_column(TS)


class SendTurns(Base):
    """A connector's send schedule shared by every activator replica: ``next_at`` is the
    earliest moment (seconds since the epoch on the database's clock) its next message may
    go, so ``rate_limit_per_s`` holds across replicas, not per process."""

    __tablename__ = "send_turns"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connector_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_at: Mapped[float] = mapped_column(Double)
    first_at: Mapped[float] = mapped_column(Double)
    granted: Mapped[int]
