from pydantic import Field

from shared.settings import ServiceSettings


class DesignerSettings(ServiceSettings):
    service_name: str = "designer"
    port: int = Field(default=8081, ge=0, le=65535)
