"""Settings from the environment (prefix ``WAYPOST_``), one class per service on one base."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The gateway drops any x-waypost-* header a client sends, so only a process that was
# given the token can send it.
SERVICE_TOKEN_HEADER = "x-waypost-service-token"


class ClockMode(StrEnum):
    REAL = "real"
    VIRTUAL = "virtual"


class CommonSettings(BaseSettings):
    """What every process needs: where the database and NATS are, the clock, logging."""

    model_config = SettingsConfigDict(env_prefix="WAYPOST_", extra="ignore")

    database_url: str = Field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
        description="SQLAlchemy URL of the PostgreSQL database (asyncpg driver).",
    )
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="NATS server URL(s), comma separated for a cluster.",
    )
    clock: ClockMode = Field(default=ClockMode.REAL, description="real, or virtual for tests.")
    log_level: str = Field(default="INFO", description="Python log level name.")
    log_format: str = Field(default="json", description="json, or console for humans.")
    stream_replicas: int = Field(
        default=1, ge=1, le=5, description="JetStream replicas per stream (3 in a cluster)."
    )
    db_pool_size: int = Field(default=10, ge=1, description="Connections per process.")


class ServiceSettings(CommonSettings):
    """A service process: the common settings plus where it listens."""

    service_name: str = "service"
    host: str = Field(default="127.0.0.1", description="Interface the service listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port the service listens on.")
    service_token: SecretStr | None = Field(
        default=None,
        description="Shared by every process: sent on every call between them, required by "
        "a service's /internal routes and /v1 routes (unset: a service refuses them all; "
        "`waypost up` makes one).",
    )

    @property
    def db_schema(self) -> str:
        return self.service_name

    def service_headers(self) -> dict[str, str]:
        """What this process sends on every call to another service."""
        if self.service_token is None:
            return {}
        return {SERVICE_TOKEN_HEADER: self.service_token.get_secret_value()}


class ConnectorSettings(ServiceSettings):
    """A service that saves connectors (designer) or connects through them (activator)."""

    allow_private_connectors: bool = Field(
        default=False,
        description="Let connectors reach private, loopback and link-local addresses "
        "(local sinks under `waypost up`); off, they reach public addresses only.",
    )
