"""Tables of the ``gateway`` schema: the inbox of accepted events."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
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
)
