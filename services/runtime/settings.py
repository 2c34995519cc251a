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
    simulate_workers: int = Field(
        default=1, ge=1, le=64, description="Worker processes for journey simulations."
    )
    simulate_time_limit_s: float = Field(
        default=10.0, gt=0, le=300, description="Wall-clock budget of one simulation."
    )
    simulate_memory_mib: int = Field(
        default=512, ge=32, description="Memory budget of a simulation worker process."
    )
    simulate_max_event_steps: int = Field(
        default=20_000, ge=1, description="Most events times journey steps one simulation runs."
    )
    simulate_max_timers: int = Field(
        default=10_000, ge=1, description="Most timers one simulation fires."
    )
    simulate_max_answer_entries: int = Field(
        default=20_000, ge=1, description="Most path entries and messages one simulation answers."
    )
    simulate_max_messages: int = Field(
        default=5_000,
        ge=0,
        le=5_000,  # the most the activator decides and renders in one preview
        description="Most messages one simulation requests (each decided by the activator's "
        "live rules and rendered).",
    )
    experiment_check_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="How often the experiments still collecting are checked for a decision.",
    )
