"""Tables of the ``designer`` schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import schema_metadata
from shared.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = schema_metadata("designer")


Outbox = outbox_table(Base.metadata)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    is_bootstrap: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = _now()


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(Workspace.id, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    folder_ids: Mapped[list[str]] = mapped_column(JSONB, default=list)
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Folder(Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("workspace_id", "parent_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(Workspace.id, ondelete="CASCADE"))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("designer.folders.id"), default=None)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()


class Journey(Base):
    """A journey's identity and lifecycle; its definitions are its versions."""

    __tablename__ = "journeys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(Workspace.id, ondelete="CASCADE"))
    folder_id: Mapped[str | None] = mapped_column(ForeignKey(Folder.id), default=None)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    latest_version: Mapped[int] = mapped_column(default=1)
    live_version: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class JourneyVersion(Base):
    __tablename__ = "journey_versions"

    journey_id: Mapped[str] = mapped_column(
        ForeignKey(Journey.id, ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(primary_key=True)
    published: Mapped[bool] = mapped_column(default=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Template(Base):
    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(Workspace.id, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(Text, default=None)
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text, default=None)
    title: Mapped[str | None] = mapped_column(Text, default=None)
    data: Mapped[dict[str, str] | None] = mapped_column(JSONB, default=None)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Connector(Base):
    __tablename__ = "connectors"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(Workspace.id, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)  # secrets removed
    secrets: Mapped[str | None] = mapped_column(Text, default=None)  # encrypted JSON
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class EventTrigger(Base):
    """An event the workspace's systems send, with the properties it declares."""

    __tablename__ = "event_triggers"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(Workspace.id, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    required: Mapped[list[str]] = mapped_column(JSONB, default=list)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WorkspaceSettings(Base):
    __tablename__ = "workspace_settings"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey(Workspace.id, ondelete="CASCADE"), primary_key=True
    )
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = _now()


class WebhookSource(Base):
    """A partner's signed webhooks, mapped to events."""

    __tablename__ = "webhook_sources"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(Workspace.id, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    mapping: Mapped[dict[str, str]] = mapped_column(JSONB)
    secret: Mapped[str] = mapped_column(Text)  # encrypted JSON
    created_at: Mapped[datetime] = _now()
