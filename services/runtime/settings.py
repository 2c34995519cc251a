from pydantic import Field

from shared.settings import ServiceSettings


class RuntimeSettings(ServiceSettings):
    service_name: str = "runtime"
    port: int = Field(default=8082, ge=0, le=65535)
    designer_url: str = Field(
        default="http://127.0.0.1:8081", description="Designer base URL (live journeys)."
    )
    activator_url: str = Field(
        default="http://127.0.0.1:8084", description="Activator base URL (delivery counts)."
    )
    event_partitions: int = Field(
        default=16, ge=1, le=1024, description="Event partitions; the same as the gateway's."
    )
    event_batch: int = Field(default=256, ge=1, le=5000, description="Events per transaction.")
    consumers: bool = Field(
        default=True, description="Consume the bus (off only for API-only processes)."
    )
    max_profile_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        le=256 * 1024,
        description="Largest profile attributes, as JSON: an update that would make a profile "
        "larger is refused and dead-lettered (the gateway's setting of the same name).",
    )
    outbox_retention_s: float = Field(
        default=3600, gt=0, description="Published outbox rows are deleted after this long."
    )
    experiment_check_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="How often the experiments still collecting are checked for a decision.",
    )
