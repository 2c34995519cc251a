"""``waypost``: run the whole system (``up``), one service, the migrations, or the demo."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import typer

from shared.settings import ClockMode
from waypost.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from waypost.supervisor import ChildSpec, Supervisor

app = typer.Typer(
    help="Waypost: real-time customer-journey orchestration.",
    no_args_is_help=True,
    add_completion=False,
)

SERVICES: dict[str, str] = {
    "gateway": "gateway.app",
    "designer": "services.designer.app",
    "runtime": "services.runtime.app",
    "scheduler": "services.scheduler.app",
    "activator": "services.activator.app",
}
# The order services stop in: the gateway first (no new work comes in), then those that
# drain what they hold into NATS and PostgreSQL, and the designer last, since they ask it
# for journeys, rules and templates until they are done.
STOP_WAVES = {"gateway": 0, "runtime": 1, "scheduler": 1, "activator": 1, "designer": 2}
MIGRATED = (
    "services.designer",
    "services.runtime",
    "services.scheduler",
    "services.activator",
    "gateway",
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(envvar="WAYPOST_DATABASE_URL", help="Use this PostgreSQL (asyncpg URL)."),
]
NatsUrl = Annotated[
    str | None, typer.Option(envvar="WAYPOST_NATS_URL", help="Use this NATS server.")
]


def say(message: str) -> None:
    typer.echo(f"[waypost] {message}", err=True)


def migrate_all(database_url: str) -> None:
    from shared.migrations import upgrade

    for package in MIGRATED:
        upgrade(package, database_url)


@app.command()
def migrate(
    database_url: DatabaseUrl = None,
    bootstrap: Annotated[
        bool, typer.Option(help="Also create the first workspace and its admin key.")
    ] = False,
) -> None:
    """Apply every service's migrations (one alembic history per schema)."""
    from shared.settings import CommonSettings

    url = database_url or CommonSettings().database_url
    migrate_all(url)
    say("migrations applied: " + ", ".join(p.rsplit(".", 1)[-1] for p in MIGRATED))
    if bootstrap:
        _print_bootstrap(url)


def _serve(name: str) -> None:
    import importlib

    import uvicorn

    fastapi_app = importlib.import_module(SERVICES[name]).create_app()
    settings = fastapi_app.state.settings
    uvicorn.run(
        fastapi_app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


def _service_command(name: str) -> None:
    def run() -> None:
        _serve(name)

    run.__doc__ = f"Run the {name} alone, configured by WAYPOST_* environment variables."
    app.command(name)(run)


for _name in SERVICES:
    _service_command(_name)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another 'waypost up' is using {data_dir}")
            raise typer.Exit(1) from None
        yield


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Where embedded data and logs live.")] = Path(
        ".waypost"
    ),
    port: Annotated[int, typer.Option(help="Port of the gateway.")] = 8080,
    clock: Annotated[ClockMode, typer.Option(help="real, or virtual for tests.")] = ClockMode.REAL,
    database_url: DatabaseUrl = None,
    nats_url: NatsUrl = None,
    nats_sync: Annotated[
        bool, typer.Option(help="Embedded NATS fsyncs every write (slower, power-loss safe).")
    ] = False,
) -> None:
    """Start PostgreSQL, NATS, the gateway and the four services; Ctrl-C stops them all."""
    data_dir = data_dir.resolve()
    with _locked(data_dir):
        pg = None if database_url else EmbeddedPostgres(data_dir / "postgres")
        nats = None if nats_url else EmbeddedNats(data_dir / "nats", sync_always=nats_sync)
        try:
            if pg is not None:
                say(f"starting PostgreSQL (data in {pg.data_dir})")
                database_url = pg.start()
            if nats is not None:
                say(f"starting NATS JetStream (data in {nats.data_dir})")
                nats_url = nats.start()
            assert database_url is not None
            assert nats_url is not None
            say("applying migrations")
            migrate_all(database_url)
            # What `waypost status` and `waypost keys create` need to reach this system.
            say(f"database {database_url}; NATS {nats_url}")
            _print_bootstrap(database_url)
            code = asyncio.run(_run_services(data_dir, port, clock, database_url, nats_url))
        finally:
            # The services are stopped (they drained into NATS and PostgreSQL); now the
            # servers, in their own sessions so that the Ctrl-C did not reach them. A
            # second Ctrl-C meanwhile does not cut this short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if nats is not None:
                say("stopping NATS")
                nats.stop()
            if pg is not None:
                say("stopping PostgreSQL")
                pg.stop()
            say("stopped")
    raise typer.Exit(code)


@app.command()
def demo(
    key: Annotated[
        str,
        typer.Option(
            envvar=["WAYPOST_API_KEY", "WAYPOST_ADMIN_KEY"],
            help="An admin API key of the workspace to load the examples into.",
        ),
    ],
    url: Annotated[str, typer.Option(help="The gateway.")] = "http://127.0.0.1:8080",
    journey: Annotated[
        list[str] | None,
        typer.Option(help="Only this example (repeatable); all of examples/ by default."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each message.")] = 60.0,
) -> None:
    """Load the example journeys into a running Waypost with local sinks and play their
    events; every message is printed as it arrives."""
    from waypost import demo as demo_module

    names = journey or demo_module.example_names()
    unknown = sorted(set(names) - set(demo_module.example_names()))
    if unknown:
        say(f"no example named {', '.join(unknown)}; there are {demo_module.example_names()}")
        raise typer.Exit(2)
    try:
        code = asyncio.run(demo_module.run(url, key, names, timeout, say))
    except (demo_module.DemoError, httpx.HTTPError) as exc:
        say(f"demo stopped: {exc}")
        code = 1
    raise typer.Exit(code)


def _print_bootstrap(database_url: str) -> None:
    from services.designer.bootstrap import ensure_bootstrap
    from shared import db

    async def run() -> str | None:
        engine = db.create_engine(database_url, pool_size=1)
        try:
            async with db.transaction(db.make_sessionmaker(engine)) as session:
                result = await ensure_bootstrap(session, os.environ.get("WAYPOST_ADMIN_KEY"))
        finally:
            await engine.dispose()
        return result.new_key

    key = asyncio.run(run())
    if key:
        say(f"admin key (shown once, keep it): {key}")


def secrets_key(data_dir: Path, name: str = "secrets.key") -> str:
    """A key made once per data dir and kept there (connector secrets, tracking tokens)."""
    from services.designer.secrets import SecretBox

    path = data_dir / name
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(SecretBox.new_key())
    return path.read_text().strip()


def service_token(data_dir: Path, name: str = "service.token") -> str:
    """The token the processes of this data dir show each other, made once and kept there
    (readable by its owner only)."""
    path = data_dir / name
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def child_specs(
    data_dir: Path,
    port: int,
    clock: ClockMode,
    database_url: str,
    nats_url: str,
    replicas: int = 1,
) -> list[ChildSpec]:
    """Every service's process, ``replicas`` of each (named ``runtime-2`` and so on when
    more than one); the services reach each other at the first replica of each."""
    ports = {
        name: [port if (name, i) == ("gateway", 0) else free_port() for i in range(replicas)]
        for name in SERVICES
    }
    common = {
        "WAYPOST_SECRETS_KEY": secrets_key(data_dir),
        "WAYPOST_TRACKING_SECRET": secrets_key(data_dir, "tracking.key"),
        "WAYPOST_SERVICE_TOKEN": service_token(data_dir),
        "WAYPOST_PUBLIC_URL": f"http://127.0.0.1:{port}",
        # One machine, local sinks: connectors may reach loopback and private addresses.
        "WAYPOST_ALLOW_PRIVATE_CONNECTORS": "true",
        **os.environ,
        "WAYPOST_DATABASE_URL": database_url,
        "WAYPOST_NATS_URL": nats_url,
        "WAYPOST_CLOCK": clock.value,
        **{f"WAYPOST_{n.upper()}_URL": f"http://127.0.0.1:{p[0]}" for n, p in ports.items()},
    }
    return [
        ChildSpec(
            name=label,
            argv=[sys.executable, "-m", "waypost", name],
            env={**common, "WAYPOST_PORT": str(ports[name][i])},
            log_file=data_dir / "logs" / f"{label}.log",
            stop_wave=STOP_WAVES[name],
        )
        for name in SERVICES
        for i in range(replicas)
        for label in [name if replicas == 1 else f"{name}-{i + 1}"]
    ]


async def _run_services(
    data_dir: Path, port: int, clock: ClockMode, database_url: str, nats_url: str
) -> int:
    supervisor = Supervisor(child_specs(data_dir, port, clock, database_url, nats_url), say)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    say("starting gateway, designer, runtime, scheduler, activator")
    await supervisor.start()
    code = 0
    try:
        url = f"http://127.0.0.1:{port}"
        if await _wait_ready(url, stop, timeout_s=120):
            say(f"Waypost is up at {url} (clock: {clock.value}; logs in {data_dir / 'logs'})")
            say("press Ctrl-C to stop")
            await stop.wait()
        elif not stop.is_set():
            say(f"not ready after 120s; see the logs in {data_dir / 'logs'}")
            code = 1
    finally:
        say("stopping services")
        await supervisor.stop()
    return code


async def _wait_ready(url: str, stop: asyncio.Event, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline and not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.25)
    return False


def _operator_commands() -> None:
    from waypost import ops

    app.add_typer(ops.keys, name="keys")
    app.command("status")(ops.status)


_operator_commands()
