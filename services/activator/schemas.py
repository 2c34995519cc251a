"""What the activator reads and answers: the runtime's request, the workspace rules, and the
bodies of its routes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.durations import parse_duration
from shared.events import SubjectToken

Channel = Literal["email", "sms", "push", "webhook"]
Id = Annotated[str, Field(min_length=1, max_length=64)]


class ActivationRequested(BaseModel):
    """``activations.requested.<workspace_id>``, as the runtime publishes it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    activation_id: Annotated[str, Field(min_length=1, max_length=190)]
    workspace_id: SubjectToken
    profile_id: Annotated[str, Field(min_length=1, max_length=200)]
    journey_id: Id
    version: int
    step_id: Annotated[str, Field(min_length=1, max_length=100)]
    channel: Channel
    connector_id: Id
    template_id: Id
    to: Any = None
    consent: dict[str, Any] = {}
    context: dict[str, Any] = {}
    requested_at: AwareDatetime | None = None
    # The designer's revision the runtime's catalog was at when it made the request: the
    # workspace rules read at that revision (or later) are the ones that apply.
    rules_revision: Annotated[str, Field(max_length=500)] | None = None


class FrequencyCap(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    channel: str
    max: int = Field(ge=1)
    per: timedelta

    @field_validator("per", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class QuietHours(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: str
    end: str


class WorkspaceRules(BaseModel):
    """The designer's workspace settings, as far as delivery is concerned."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    frequency_caps: list[FrequencyCap] = []
    quiet_hours: QuietHours | None = None
    consent_mode: Literal["opt_out", "opt_in"] = "opt_out"
    default_timezone: str = "UTC"

    def caps_for(self, channel: str) -> list[FrequencyCap]:
        return [cap for cap in self.frequency_caps if cap.channel == channel]


StatusName = Literal["pending", "held", "sent", "skipped", "failed"]


class DeliveryOut(BaseModel):
    id: str = Field(description="The activation id.")
    journey_id: str
    version: int
    step_id: str
    profile_id: str
    channel: str
    status: StatusName
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    reason: str | None = Field(
        description="skipped: no_consent, no_recipient or frequency_cap; failed: the last error."
    )
    created_at: datetime
    next_attempt_at: datetime | None = Field(
        description="While pending: when it is tried next; while held by quiet hours: when "
        "it is released."
    )


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = None


class ActivationCounts(BaseModel):
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    pending: int = 0
    held: int = 0
