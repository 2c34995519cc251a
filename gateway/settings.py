from pydantic import Field

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
    auth_cache_s: float = Field(
        default=1.0, ge=0, le=1.0, description="How long a key lookup is reused (revocation delay)."
    )

    def service_urls(self) -> dict[str, str]:
        return {
            "designer": self.designer_url,
            "runtime": self.runtime_url,
            "scheduler": self.scheduler_url,
            "activator": self.activator_url,
        }
