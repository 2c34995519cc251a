from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from services.activator.settings import ActivatorSettings
from services.designer.settings import DesignerSettings
from services.runtime.settings import RuntimeSettings
from services.scheduler.settings import SchedulerSettings
from shared.settings import ClockMode


def test_each_service_has_its_own_name_schema_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAYPOST_PORT", raising=False)
    classes = [GatewaySettings, DesignerSettings, RuntimeSettings, SchedulerSettings,
               ActivatorSettings]  # fmt: skip
    settings = [cls() for cls in classes]
    assert [s.service_name for s in settings] == [
        "gateway", "designer", "runtime", "scheduler", "activator"
    ]  # fmt: skip
    assert len({s.port for s in settings}) == 5
    assert settings[2].db_schema == "runtime"


def test_environment_with_prefix_configures_every_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAYPOST_DATABASE_URL", "postgresql+asyncpg://u@db:5432/w")
    monkeypatch.setenv("WAYPOST_NATS_URL", "nats://a:4222,nats://b:4222")
    monkeypatch.setenv("WAYPOST_CLOCK", "virtual")
    monkeypatch.setenv("WAYPOST_PORT", "9000")
    monkeypatch.setenv("WAYPOST_DESIGNER_URL", "http://designer:8081")
    monkeypatch.setenv("DATABASE_URL", "postgresql://ignored")
    runtime = RuntimeSettings()
    gateway = GatewaySettings()
    assert runtime.database_url == "postgresql+asyncpg://u@db:5432/w"
    assert runtime.clock is ClockMode.VIRTUAL
    assert runtime.port == 9000
    assert gateway.service_urls()["designer"] == "http://designer:8081"


@pytest.mark.parametrize(
    ("name", "value"),
    [("WAYPOST_PORT", "not-a-port"), ("WAYPOST_PORT", "70000"), ("WAYPOST_CLOCK", "sundial"),
     ("WAYPOST_STREAM_REPLICAS", "0")],
)  # fmt: skip
def test_bad_values_are_rejected_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        SchedulerSettings()
