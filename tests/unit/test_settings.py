from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from services.activator.settings import ActivatorSettings
from services.designer.settings import DesignerSettings
from services.runtime.settings import RuntimeSettings
from services.scheduler.settings import SchedulerSettings
from shared.settings import ClockMode
from waypost.cli import child_specs


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


def test_connectors_reach_public_addresses_only_unless_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WAYPOST_ALLOW_PRIVATE_CONNECTORS", raising=False)
    assert not DesignerSettings().allow_private_connectors
    assert not ActivatorSettings().allow_private_connectors
    monkeypatch.setenv("WAYPOST_ALLOW_PRIVATE_CONNECTORS", "true")
    assert DesignerSettings().allow_private_connectors
    assert ActivatorSettings().allow_private_connectors


def test_up_allows_private_connectors_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("WAYPOST_ALLOW_PRIVATE_CONNECTORS", raising=False)
    specs = child_specs(tmp_path, 8080, ClockMode.REAL, "postgresql+asyncpg://x/y", "nats://n")
    assert {s.env["WAYPOST_ALLOW_PRIVATE_CONNECTORS"] for s in specs} == {"true"}
    monkeypatch.setenv("WAYPOST_ALLOW_PRIVATE_CONNECTORS", "false")
    specs = child_specs(tmp_path, 8080, ClockMode.REAL, "postgresql+asyncpg://x/y", "nats://n")
    assert {s.env["WAYPOST_ALLOW_PRIVATE_CONNECTORS"] for s in specs} == {"false"}


def test_the_container_image_and_compose_leave_private_connectors_off() -> None:
    root = Path(__file__).resolve().parents[2]
    assert "WAYPOST_ALLOW_PRIVATE_CONNECTORS=false" in (root / "Dockerfile").read_text()
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    assert compose["x-waypost-env"]["WAYPOST_ALLOW_PRIVATE_CONNECTORS"] == "false"
