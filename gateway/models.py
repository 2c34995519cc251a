"""Tables of the ``gateway`` schema: the inbox of accepted events, and erased profiles."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase

from shared.db import schema_metadata

SCHEMA = "gateway"


class Base(DeclarativeBase):
    metadata = schema_metadata(SCHEMA)


# The record of every accepted event and profile upsert. ``seq`` is the acceptance order
# the relay publishes in; (workspace_id, event_id) makes a repeated event a no-op.
EventInbox = Table(
    "event_inbox",
    Base.metadata,
    Column("seq", BigInteger, Identity(), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("profile_id", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    Column("properties", JSONB, nullable=False),
    Column("traits", JSONB, nullable=False),
    Column("published_at", DateTime(timezone=True)),
    UniqueConstraint("workspace_id", "event_id", name="uq_event_inbox_workspace_event"),
    Index("ix_event_inbox_unpublished", "seq", postgresql_where=Column("published_at").is_(None)),
    Index("ix_event_inbox_profile", "workspace_id", "profile_id"),  # erasure finds its rows
)

# Erased profiles (a digest of the id, not the id): a tracking token issued before the
# erasure records nothing.
Erasures = Table(
    "erasures",
    Base.metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("profile_key", LargeBinary, primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False),
)
