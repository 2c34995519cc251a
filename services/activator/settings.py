from pydantic import Field, SecretStr

from shared.settings import ConnectorSettings


class ActivatorSettings(ConnectorSettings):
    service_name: str = "activator"
    port: int = Field(default=8084, ge=0, le=65535)
    http_max_connections: int = Field(
        default=100, ge=1, description="Open connections to HTTP providers and webhooks."
    )
    designer_url: str = Field(
        default="http://127.0.0.1:8081",
        description="Designer base URL (connectors, templates, workspace settings).",
    )
    designer_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="Longest wait for one designer answer."
    )
    lookup_cache_s: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long a connector or template fetched from the designer is reused.",
    )
    event_partitions: int = Field(
        default=16, ge=1, le=1024, description="Event partitions; the same as the gateway's."
    )
    consumer_durable: str = Field(
        default="activator",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Durable consumer of activations.requested shared by every replica.",
    )
    release_durable: str = Field(
        default="activator-release",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Durable consumer of timers.release (quiet-hours releases).",
    )
    erase_durable: str = Field(
        default="activator-erase",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Durable consumer of activations.erase (deleted profiles).",
    )
    journeys_durable: str = Field(
        default="activator-journeys",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Durable consumer of journeys.changed (stopped journeys).",
    )
    intake_batch: int = Field(
        default=200, ge=1, le=5000, description="Requests decided per transaction."
    )
    intake_max_deliver: int = Field(
        default=1000,
        ge=2,
        description="Deliveries of a request before it is dead-lettered (a designer outage "
        "must not lose requests, so this is high).",
    )
    claim_batch: int = Field(
        default=200, ge=1, le=10_000, description="Due deliveries claimed per pass."
    )
    max_in_flight: int = Field(
        default=500,
        ge=1,
        le=50_000,
        description="Deliveries this process holds at once, waiting for a rate limit or sending.",
    )
    send_concurrency: int = Field(
        default=64, ge=1, le=10_000, description="Sends at once, over all connectors."
    )
    send_batch: int = Field(
        default=64,
        ge=1,
        le=5000,
        description="Deliveries of one connector sent and recorded in one transaction.",
    )
    rate_limit_wait_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Longest a delivery waits for its connector's send rate limit; beyond "
        "it the connector's deliveries wait, unclaimed, for their turn.",
    )
    idle_poll_s: float = Field(
        default=1.0, gt=0, le=60, description="Longest sleep of the delivery loop when idle."
    )
    max_attempts: int = Field(
        default=10, ge=1, le=100, description="Send attempts before a delivery fails."
    )
    retry_base_s: float = Field(
        default=10.0, gt=0, description="Backoff before the second attempt (doubles after)."
    )
    retry_max_s: float = Field(default=3600.0, gt=0, description="Longest backoff.")
    quiet_hours_spread_s: float = Field(
        default=600.0,
        ge=0,
        description="Messages held by quiet hours are released spread over this long after "
        "the window opens.",
    )
    outbox_retention_s: float = Field(
        default=3600,
        gt=0,
        description="Published outbox rows (feedback events, quiet-hours timers) are deleted "
        "after this long.",
    )
    tracking_secret: SecretStr | None = Field(
        default=None,
        description="Signs open and click tracking in HTML email (the gateway's secret too); "
        "no tracking without it.",
    )
    public_url: str | None = Field(
        default=None, description="The gateway's public URL, where tracking links point."
    )
    render_workers: int = Field(
        default=2, ge=1, le=64, description="Worker processes for templates that may run long."
    )
    render_time_limit_s: float = Field(
        default=2.0, gt=0, le=60, description="Wall-clock budget of one template render."
    )
    render_memory_mib: int = Field(
        default=256, ge=16, description="Memory budget of a rendering worker process."
    )
