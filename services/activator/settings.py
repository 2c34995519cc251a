from pydantic import Field

from shared.settings import ServiceSettings


class ActivatorSettings(ServiceSettings):
    service_name: str = "activator"
    port: int = Field(default=8084, ge=0, le=65535)
    http_max_connections: int = Field(
        default=100, ge=1, description="Open connections to HTTP providers and webhooks."
    )
