"""Request and response bodies of the designer's API (the journey body is shared.journey)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from shared import jsonpath
from shared.connectors import WEBHOOK_SECRET_PREFIX, ConnectorType
from shared.durations import Duration
from shared.identity import Role

Name = Annotated[str, Field(min_length=1, max_length=200)]
Id = Annotated[str, Field(min_length=1, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkspaceIn(Strict):
    name: Name


class WorkspaceOut(BaseModel):
    id: str
    name: str


class ApiKeyIn(Strict):
    name: Name
    role: Role
    folder_ids: Annotated[list[Id], Field(max_length=100)] = []
    workspace_id: Id | None = None


class ApiKeyOut(BaseModel):
    id: str
    name: str
    role: Role
    folder_ids: list[str]
    workspace_id: str
    created_at: datetime


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Shown only in this answer; store it now.")


class FolderIn(Strict):
    name: Name
    parent_id: Id | None = None


class FolderOut(BaseModel):
    id: str
    name: str
    parent_id: str | None


class JourneyStatus(StrEnum):
    DRAFT = "draft"
    LIVE = "live"
    PAUSED = "paused"
    STOPPED = "stopped"


class PublishIn(Strict):
    in_flight: Literal["stay", "migrate"] = "stay"


class MigrationPosition(BaseModel):
    version: int = Field(description="The version the profiles are on now.")
    stage: str
    step: str | None = Field(description="The step they wait at (none: between steps).")
    move: int = Field(description="How many would move onto the draft.")
    stay: int = Field(description="How many would stay on their version.")
    reason: str | None = Field(description="Why those stay (their stage or step is gone).")


class MigrationPreviewOut(BaseModel):
    """A dry run of ``POST /v1/journeys/{id}/publish {"in_flight": "migrate"}``."""

    version: int = Field(description="The draft version the profiles would move onto.")
    active: int
    would_move: int
    would_stay: int
    steps: list[MigrationPosition]


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    WEBHOOK = "webhook"


MAX_DATA_KEYS = 50
DataKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
DataValue = Annotated[str, Field(max_length=10_000)]


class TemplateIn(Strict):
    name: Name
    channel: Channel
    subject: Annotated[str, Field(max_length=1000)] | None = None
    body: Annotated[str, Field(max_length=200_000)]
    html: Annotated[str, Field(max_length=500_000)] | None = None
    title: Annotated[str, Field(max_length=1000)] | None = Field(
        default=None, description="push: the notification's title (a template)."
    )
    data: Annotated[dict[DataKey, DataValue], Field(max_length=MAX_DATA_KEYS)] | None = Field(
        default=None, description="push: key-value data sent with it (each value a template)."
    )
    status: Literal["draft", "ready"] = "draft"


class TemplatePatch(Strict):
    """A partial update: only the fields given change (``{"status": "ready"}``)."""

    name: Name | None = None
    channel: Channel | None = None
    subject: Annotated[str, Field(max_length=1000)] | None = None
    body: Annotated[str, Field(max_length=200_000)] | None = None
    html: Annotated[str, Field(max_length=500_000)] | None = None
    title: Annotated[str, Field(max_length=1000)] | None = None
    data: Annotated[dict[DataKey, DataValue], Field(max_length=MAX_DATA_KEYS)] | None = None
    status: Literal["draft", "ready"] | None = None


class TemplateOut(BaseModel):
    id: str
    name: str
    channel: Channel
    subject: str | None
    body: str
    html: str | None
    title: str | None = None
    data: dict[str, str] | None = None
    status: str
    created_at: datetime
    updated_at: datetime


class PreviewIn(Strict):
    profile: dict[str, Any] = {}
    event: dict[str, Any] = {}


class PreviewOut(BaseModel):
    subject: str | None
    body: str
    html: str | None
    title: str | None = None
    data: dict[str, str] | None = None


class ConnectorIn(Strict):
    name: Name
    type: ConnectorType
    config: dict[str, Any]


class ConnectorOut(BaseModel):
    id: str
    name: str
    type: ConnectorType
    config: dict[str, Any]
    created_at: datetime


class ConnectorTestIn(Strict):
    to: Annotated[str, Field(min_length=1, max_length=500)]
    subject: Annotated[str, Field(max_length=1000)] | None = None
    body: Annotated[str, Field(max_length=10_000)] = "Test message from Waypost"


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class FrequencyCap(Strict):
    channel: Channel
    max: Annotated[int, Field(ge=1, le=10_000)]
    per: Duration


class QuietHours(Strict):
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("a time of day as HH:MM")
        return value


class WorkspaceSettingsBody(Strict):
    frequency_caps: Annotated[list[FrequencyCap], Field(max_length=20)] = []
    quiet_hours: QuietHours | None = None
    consent_mode: Literal["opt_out", "opt_in"] = "opt_out"
    default_timezone: str = "UTC"
    require_event_triggers: bool = Field(
        default=True,
        description="Publishing needs a published event trigger for every event a journey "
        "names (off for workspaces created before event triggers existed).",
    )

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone '{value}'") from None
        return value


class WorkspaceSettingsPatch(Strict):
    """PUT accepts a partial body: only the fields given change."""

    frequency_caps: Annotated[list[FrequencyCap], Field(max_length=20)] | None = None
    quiet_hours: QuietHours | None = None
    consent_mode: Literal["opt_out", "opt_in"] | None = None
    default_timezone: str | None = None
    require_event_triggers: bool | None = None


class WebhookMapping(Strict):
    """Where the event's fields are in a partner's payload: ``$.a.b`` or ``$.items[0].id``."""

    profile_id: Annotated[str, Field(max_length=500)]
    name: Annotated[str, Field(max_length=500)]
    timestamp: Annotated[str, Field(max_length=500)] | None = None
    event_id: Annotated[str, Field(max_length=500)] | None = None

    @field_validator("profile_id", "name", "timestamp", "event_id")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            jsonpath.parse(value)
        return value


# A source secret: "whsec_" + base64 of this many key bytes (Standard Webhooks issues 24 to
# 64), or a passphrase of at least WEBHOOK_SECRET_MIN characters; either way a guessable
# one (few distinct characters or bytes) is refused.
WEBHOOK_KEY_BYTES = (24, 64)
WEBHOOK_SECRET_MIN = 24
WEBHOOK_SECRET_DISTINCT = 8


def webhook_secret(value: str) -> str:
    """The secret in the ``whsec_<base64>`` form the gateway verifies with: a ``whsec_``
    secret as given, a passphrase as the base64 of its UTF-8 bytes."""
    if value.startswith(WEBHOOK_SECRET_PREFIX):
        encoded = value.removeprefix(WEBHOOK_SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            raise ValueError("a whsec_ secret must be followed by base64") from None
        low, high = WEBHOOK_KEY_BYTES
        if not low <= len(key) <= high:
            raise ValueError(f"a whsec_ secret must carry {low} to {high} bytes, not {len(key)}")
        if len(set(key)) < WEBHOOK_SECRET_DISTINCT:
            raise ValueError("the key is too repetitive to be secret: use random bytes")
        return value
    if len(value) < WEBHOOK_SECRET_MIN:
        raise ValueError(
            f"must be whsec_ followed by base64 of {WEBHOOK_KEY_BYTES[0]} to "
            f"{WEBHOOK_KEY_BYTES[1]} random bytes, or at least {WEBHOOK_SECRET_MIN} characters"
        )
    if len(set(value)) < WEBHOOK_SECRET_DISTINCT:
        raise ValueError("the secret is too repetitive to be secret: use random characters")
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(value.encode()).decode()


SourceSecret = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        description=(
            '"whsec_" followed by base64 of 24 to 64 random bytes (as Standard Webhooks '
            "issues them), or a passphrase of at least 24 characters, used as its UTF-8 "
            "bytes. Never returned."
        ),
    ),
    AfterValidator(webhook_secret),
]


class WebhookSourceIn(Strict):
    name: Name
    secret: SourceSecret
    mapping: WebhookMapping


class WebhookSecretIn(Strict):
    """The new secret of a source; the old one stays valid for the grace period."""

    secret: SourceSecret


class WebhookSourceOut(BaseModel):
    id: str
    name: str
    mapping: WebhookMapping
    created_at: datetime
    rotated_at: datetime | None = Field(
        default=None, description="When the secret was last rotated."
    )
    rotation_grace_until: datetime | None = Field(
        default=None,
        description="Until when deliveries signed with the secret before the last rotation "
        "are still accepted; null when only the current secret is.",
    )


# An event name as ingestion takes it, but addressable in a URL path: no slash.
TriggerName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^/\x00-\x1f]+$")]


class EventTriggerIn(Strict):
    """An event the workspace's systems send. ``properties`` and ``required`` are a JSON
    Schema object's keywords: each property's schema uses type (string, number, integer,
    boolean, object, array), enum, format (date-time), properties, required and items."""

    name: TriggerName = Field(description="The event name, unique in the workspace.")
    description: Annotated[str, Field(max_length=2000)] = ""
    properties: Annotated[dict[str, Any], Field(max_length=200)] = Field(
        default={}, description='Property name -> schema, e.g. {"total": {"type": "number"}}.'
    )
    required: Annotated[list[str], Field(max_length=200)] = Field(
        default=[], description="Properties every event must have."
    )
    status: Literal["draft", "published"] = "draft"


class EventTriggerOut(BaseModel):
    id: str
    name: str
    description: str
    properties: dict[str, Any]
    required: list[str]
    status: str
    created_at: datetime
    updated_at: datetime


class SchemaViolation(BaseModel):
    event_id: str
    at: datetime = Field(description="When the event was accepted.")
    paths: list[str] = Field(description='Where it broke the declaration: "path: why".')


class EventTriggerDetail(EventTriggerOut):
    """The trigger with what the runtime received of its event since it was declared."""

    received_total: int = Field(description="Events of this name the runtime applied.")
    last_received_at: datetime | None = Field(description="When the last one was accepted.")
    schema_violations: int = Field(description="Events whose properties broke the declaration.")
    violation_samples: list[SchemaViolation] = Field(
        description="The first few violations, oldest first."
    )
