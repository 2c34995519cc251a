from pydantic import Field

from shared.settings import ServiceSettings


class RuntimeSettings(ServiceSettings):
    service_name: str = "runtime"
    port: int = Field(default=8082, ge=0, le=65535)
