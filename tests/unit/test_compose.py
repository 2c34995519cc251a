"""The container deployment: ``docker-compose.yml`` and the ``Dockerfile`` agree with the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from waypost.cli import SERVICES, app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

NATS_NODES = ("nats-1", "nats-2", "nats-3")
SERVICE_PORTS = {
    "gateway": 8080,
    "designer": 8081,
    "runtime": 8082,
    "scheduler": 8083,
    "activator": 8084,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict), "docker-compose.yml is not a mapping"
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict), "docker-compose.yml has no services"
    return found


@pytest.fixture(scope="module")
def built(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services whose image comes from this repository's Dockerfile."""
    return {name: svc for name, svc in services.items() if _builds_dockerfile(svc)}


@pytest.fixture(scope="module")
def cli_commands() -> set[str]:
    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _builds_dockerfile(service: dict[str, Any]) -> bool:
    build = service.get("build")
    if build is None:
        return False
    if isinstance(build, str):
        return Path(ROOT, build).resolve() == ROOT
    context = Path(ROOT, build.get("context", ".")).resolve()
    return context == ROOT and build.get("dockerfile", "Dockerfile") == "Dockerfile"


def _env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): v for k, v in raw.items()}


def _flag(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_compose_parses_with_the_expected_infrastructure(
    services: dict[str, dict[str, Any]],
) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    nats = {name for name, svc in services.items() if str(svc.get("image", "")).startswith("nats")}
    assert nats == set(NATS_NODES)


@pytest.mark.parametrize("node", NATS_NODES)
def test_each_nats_node_is_a_jetstream_cluster_member_routing_to_all(
    services: dict[str, dict[str, Any]], node: str
) -> None:
    argv = services[node]["command"]
    assert "--jetstream" in argv
    assert _flag(argv, "--server_name") == node
    assert _flag(argv, "--cluster_name") == "waypost"
    assert _flag(argv, "--cluster").endswith(":6222")
    routes = set(_flag(argv, "--routes").split(","))
    assert routes == {f"nats://{n}:6222" for n in NATS_NODES}
    store = _flag(argv, "--store_dir")
    assert any(v.endswith(f":{store}") for v in services[node]["volumes"])


def test_every_built_service_runs_an_existing_cli_command(
    built: dict[str, dict[str, Any]], cli_commands: set[str]
) -> None:
    assert built, "no service is built from the Dockerfile"
    for name, svc in built.items():
        command = svc.get("command")
        assert isinstance(command, list), f"{name} has no command list"
        assert command, f"{name} has an empty command"
        assert command[0] in cli_commands, f"{name} runs unknown command {command[0]!r}"


def test_all_services_and_migrate_are_deployed(
    built: dict[str, dict[str, Any]], cli_commands: set[str]
) -> None:
    assert {*SERVICES, "migrate"} <= cli_commands
    assert set(built) == {*SERVICES, "migrate"}
    for name, svc in built.items():
        assert svc["command"][0] == name


def test_every_option_in_a_command_exists_in_the_cli(built: dict[str, dict[str, Any]]) -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name, svc in built.items():
        known = {opt for param in commands[name].params for opt in param.opts}
        for option in svc["command"][1:]:
            assert option in known, f"{name}: {option} is not an option of waypost {name}"


def test_migrate_runs_once_after_postgres(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert migrate["restart"] == "no"  # an unquoted no would load as False
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "deploy" not in migrate or migrate["deploy"].get("replicas", 1) == 1


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_waits_for_migrations_and_is_replicated(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    svc = services[name]
    assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert svc["deploy"]["replicas"] >= 2
    assert "container_name" not in svc, "a fixed container name prevents replicas"


@pytest.mark.parametrize("name", sorted({*SERVICES, "migrate"}))
def test_service_environment_targets_the_cluster(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    env = _env(services[name])
    assert env["WAYPOST_STREAM_REPLICAS"] == "3"
    nats_urls = {u.strip() for u in env["WAYPOST_NATS_URL"].split(",")}
    assert nats_urls == {f"nats://{n}:4222" for n in NATS_NODES}
    assert re.fullmatch(
        r"postgresql\+asyncpg://[^@]+@postgres:5432/\w+", env["WAYPOST_DATABASE_URL"]
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_listens_on_its_port_and_checks_readiness_there(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    svc = services[name]
    env = _env(svc)
    assert env["WAYPOST_PORT"] == str(SERVICE_PORTS[name])
    test = svc["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "/readyz" in test[3]
    assert "WAYPOST_PORT" in test[3] or f":{SERVICE_PORTS[name]}/" in test[3]


def test_gateway_points_at_services_by_dns_name_and_publishes_8080(
    services: dict[str, dict[str, Any]],
) -> None:
    gateway = services["gateway"]
    env = _env(gateway)
    for name in SERVICES.keys() - {"gateway"}:
        assert name in services
        assert (
            env[f"WAYPOST_{name.upper()}_URL"]
            == f"http://{name}:{_env(services[name])['WAYPOST_PORT']}"
        )
    published = [str(p) for p in gateway["ports"]]
    assert len(published) == 1
    host, _, container = published[0].rpartition(":")
    assert container == "8080"
    first, _, last = host.partition("-")
    assert first == "8080"
    # One host port per replica: two replicas cannot share one.
    assert int(last or first) - int(first) + 1 >= gateway["deploy"]["replicas"]


def test_dockerfile_runs_waypost_as_non_root() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    entrypoints = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints, "Dockerfile has no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["waypost"]
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "Dockerfile has no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "WAYPOST_HOST=0.0.0.0" in env
