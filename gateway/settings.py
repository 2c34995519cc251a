from pydantic import Field, IPvAnyNetwork, SecretStr

from shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    port: int = Field(default=8080, ge=0, le=65535)
    designer_url: str = Field(default="http://127.0.0.1:8081", description="Designer base URL.")
    runtime_url: str = Field(default="http://127.0.0.1:8082", description="Runtime base URL.")
    scheduler_url: str = Field(default="http://127.0.0.1:8083", description="Scheduler base URL.")
    activator_url: str = Field(default="http://127.0.0.1:8084", description="Activator base URL.")
    upstream_timeout_s: float = Field(default=30.0, gt=0, description="Per upstream request.")
    upstream_connections: int = Field(default=200, ge=1, description="Pooled upstream conns.")

    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Largest request body.")
    rate_limit_per_s: float = Field(default=200.0, gt=0, description="Requests/s per API key.")
    rate_limit_burst: int = Field(default=400, ge=1, description="Burst per API key.")
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default=[],
        description="Proxies (addresses or CIDR networks) whose X-Forwarded-For names the "
        "client; the socket peer is the client otherwise.",
    )
    open_rate_limit_per_s: float = Field(
        default=20.0, gt=0, description="Requests/s per client address to /t/* and /hooks/*."
    )
    open_rate_limit_burst: int = Field(
        default=200, ge=1, description="Burst per client address to /t/* and /hooks/*."
    )
    tracking_rate_limit_per_s: float = Field(
        default=0.2, gt=0, description="Hits/s per tracking token (one email's pixel or link)."
    )
    tracking_rate_limit_burst: int = Field(default=20, ge=1, description="Burst per token.")
    auth_failure_rate_per_s: float = Field(
        default=0.5,
        gt=0,
        description="Failed authentications/s per client address.",
    )
    auth_failure_burst: int = Field(
        default=20, ge=1, description="Failed authentications allowed at once before 429."
    )
    auth_cache_s: float = Field(
        default=1.0, ge=0, le=1.0, description="How long a key lookup is reused (revocation delay)."
    )

    max_event_bytes: int = Field(
        default=64 * 1024, ge=1024, le=512 * 1024, description="Largest event, as JSON."
    )
    max_profile_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        le=256 * 1024,
        description="Largest profile attributes (an update, an event's traits, the merged "
        "profile: the runtime's setting of the same name), as JSON.",
    )

    ingest_batch_window_ms: float = Field(
        default=2.0, ge=0, le=1000, description="Longest an accepted event waits to share a commit."
    )
    ingest_batch_max: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Most events in one commit (a batch stays whole).",
    )
    event_partitions: int = Field(
        default=16, ge=1, le=1024, description="Subjects per workspace on EVENTS (profile hash)."
    )
    relay_poll_s: float = Field(
        default=1.0, gt=0, description="How often the relay looks for unpublished events anyway."
    )
    relay_batch: int = Field(default=1000, ge=1, description="Events the relay publishes at once.")
    inbox_retention_h: float = Field(
        default=168.0, gt=0, description="How long published events stay in the inbox (dedup)."
    )

    tracking_secret: SecretStr | None = Field(
        default=None,
        description="Verifies open and click tracking tokens (the activator's secret too).",
    )
    tracking_token_max_age_days: float = Field(
        default=90.0,
        gt=0,
        description="Tracking tokens older than this (from when the activator signed them) "
        "record nothing.",
    )
    erase_durable: str = Field(
        default="gateway-erase",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Durable consumer of activations.erase (deleted profiles' inbox rows).",
    )

    def service_urls(self) -> dict[str, str]:
        return {
            "designer": self.designer_url,
            "runtime": self.runtime_url,
            "scheduler": self.scheduler_url,
            "activator": self.activator_url,
        }
