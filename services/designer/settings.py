from pydantic import Field

from shared.settings import ConnectorSettings


class DesignerSettings(ConnectorSettings):
    service_name: str = "designer"
    port: int = Field(default=8081, ge=0, le=65535)
    secrets_key: str = Field(
        default="",
        description="Fernet key that encrypts connector secrets at rest (required).",
    )
    activator_url: str = Field(
        default="http://127.0.0.1:8084", description="Activator base URL (connector tests)."
    )
    runtime_url: str = Field(
        default="http://127.0.0.1:8082", description="Runtime base URL (in-flight migration)."
    )
    webhook_secret_grace_s: float = Field(
        default=86_400.0,
        ge=0,
        description="How long a webhook source's secret stays valid after a rotation.",
    )
    limit_stages: int = Field(default=8, ge=1)
    limit_steps_per_stage: int = Field(default=40, ge=1)
    limit_steps_per_journey: int = Field(default=120, ge=1)
    limit_activations_per_journey: int = Field(default=50, ge=1)
    limit_exit_rules_per_journey: int = Field(default=20, ge=0)
    limit_jumps_per_journey: int = Field(default=20, ge=0)
    render_workers: int = Field(
        default=1, ge=1, le=64, description="Worker processes for template previews."
    )
    render_time_limit_s: float = Field(
        default=2.0, gt=0, le=60, description="Wall-clock budget of one template preview."
    )
    render_memory_mib: int = Field(
        default=256, ge=16, description="Memory budget of a rendering worker process."
    )
