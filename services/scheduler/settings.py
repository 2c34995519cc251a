from pydantic import Field

from shared.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    service_name: str = "scheduler"
    port: int = Field(default=8083, ge=0, le=65535)
    claim_batch: int = Field(
        default=1000, ge=1, le=50_000, description="Due timers claimed per release transaction."
    )
    max_in_flight: int = Field(
        default=1000, ge=1, le=50_000, description="Fired-timer publishes awaiting their ack."
    )
    idle_poll_s: float = Field(
        default=1.0, gt=0, le=60, description="Longest sleep of the release loop when idle."
    )
    command_batch: int = Field(
        default=1000, ge=1, le=10_000, description="Commands fetched and stored per transaction."
    )
    publish_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a released batch waits for its acks."
    )
    pending_refresh_s: float = Field(
        default=5.0, gt=0, description="How often the pending-timers gauge is recounted."
    )
    keep_settled_s: float = Field(
        default=86_400.0,
        gt=0,
        description="How long fired and cancelled timers are kept (so late duplicates of "
        "their commands still find them) before they are deleted.",
    )
