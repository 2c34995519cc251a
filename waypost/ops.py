"""Operator commands that need no working key: ``waypost status`` (is each service up, how
far behind each consumer is, how many timers wait, what was dead-lettered) and ``waypost
keys create`` (a new key, admin by default, for whoever lost theirs). Both read NATS and
the database directly, so they work when the API would refuse the caller."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

DatabaseUrl = Annotated[
    str | None,
    typer.Option(envvar="WAYPOST_DATABASE_URL", help="The PostgreSQL of the system (asyncpg URL)."),
]
NatsUrl = Annotated[
    str | None, typer.Option(envvar="WAYPOST_NATS_URL", help="The NATS server of the system.")
]
# The services the gateway's readiness probes (gateway/settings.py ``service_urls``).
BEHIND_GATEWAY = ("designer", "runtime", "scheduler", "activator")

keys = typer.Typer(help="API keys, made with database access.", no_args_is_help=True)


def _database_url(given: str | None) -> str:
    from shared.settings import CommonSettings

    return given or CommonSettings().database_url


@keys.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, editor, viewer or ingest.")] = "admin",
    workspace: Annotated[
        str | None, typer.Option(help="The workspace's id (default: the first workspace).")
    ] = None,
    name: Annotated[str, typer.Option(help="The key's name, as lists show it.")] = "recovery",
    database_url: DatabaseUrl = None,
) -> None:
    """Make a key and print it once (only its hash is kept): for a lost admin key."""
    from services.designer.bootstrap import NoSuchWorkspace, recovery_key
    from shared import db

    if role not in ("admin", "editor", "viewer", "ingest"):
        typer.echo(f"unknown role {role!r}: admin, editor, viewer or ingest", err=True)
        raise typer.Exit(2)
    if not 1 <= len(name) <= 200:
        typer.echo("a name of 1 to 200 characters", err=True)
        raise typer.Exit(2)

    async def run() -> tuple[str, str]:
        engine = db.create_engine(_database_url(database_url), pool_size=1)
        try:
            async with db.transaction(db.make_sessionmaker(engine)) as session:
                return await recovery_key(session, role, workspace, name)
        finally:
            await engine.dispose()

    try:
        workspace_id, key = asyncio.run(run())
    except NoSuchWorkspace as exc:
        typer.echo(f"no workspace {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{role} key for workspace {workspace_id} (shown once, keep it):", err=True)
    typer.echo(key)


# Status ----------------------------------------------------------------------------------


@dataclass
class Status:
    services: dict[str, str] = field(default_factory=dict)  # name -> "up" or why not
    consumers: list[dict[str, Any]] = field(default_factory=list)
    pending_timers: int | None = None
    dead_letters: dict[str, int] = field(default_factory=dict)  # subject -> messages
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems and all(v == "up" for v in self.services.values())


async def _services(status: Status, url: str, credential: str | None) -> None:
    """Each service as the gateway sees it (its readiness names those that are down); the
    detail needs the service token or an admin key."""
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            r = await client.get(f"{url.rstrip('/')}/readyz", headers=headers)
    except httpx.HTTPError as exc:
        status.services["gateway"] = f"unreachable: {type(exc).__name__}"
        return
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    status.services["gateway"] = "up"
    checks: dict[str, Any] = body.get("checks") or {}
    if not checks:
        if r.status_code != 200:
            status.services["gateway"] = f"not ready ({r.status_code})"
        return
    down: dict[str, str] = {}
    for check in checks.values():
        detail = str(check.get("detail", ""))
        if detail.startswith("down: "):
            for part in detail.removeprefix("down: ").split(", "):
                service, _, why = part.partition(": ")
                down[service] = why
    for name in BEHIND_GATEWAY:
        status.services[name] = f"down: {down[name]}" if name in down else "up"
    for name, check in checks.items():
        if not check.get("ok") and not str(check.get("detail", "")).startswith("down: "):
            status.problems.append(f"gateway {name}: {check.get('detail')}")


async def _quiet(exc: Exception) -> None:
    """The client's own error report (a traceback per attempt): the status says it once."""


async def _bus(status: Status, nats_url: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    from shared.topology import ALL_STREAMS, DEADLETTER

    try:
        nc = await asyncio.wait_for(
            nats.connect(nats_url.split(","), connect_timeout=2, allow_reconnect=False,
                         max_reconnect_attempts=0, error_cb=_quiet),
            timeout=5,
        )  # fmt: skip
    except Exception as exc:  # whatever the client raises, NATS is not there
        status.problems.append(f"NATS unreachable: {type(exc).__name__}: {exc}")
        return
    try:
        js = nc.jetstream()
        for stream in ALL_STREAMS:
            try:
                consumers = await js.consumers_info(stream.name)
            except NotFoundError:
                continue
            for c in consumers:
                status.consumers.append({
                    "stream": stream.name, "durable": c.name,
                    "lag": c.num_pending or 0, "unacknowledged": c.num_ack_pending or 0,
                    "redelivered": c.num_redelivered or 0,
                })  # fmt: skip
        try:
            info = await js.stream_info(DEADLETTER.name, subjects_filter=">")
            status.dead_letters = dict(sorted((info.state.subjects or {}).items()))
        except NotFoundError:
            pass
    finally:
        await nc.close()


async def _timers(status: Status, database_url: str) -> None:
    import asyncpg

    from shared import db

    try:
        conn = await asyncpg.connect(db.asyncpg_dsn(database_url), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        status.problems.append(f"PostgreSQL unreachable: {type(exc).__name__}: {exc}")
        return
    try:
        status.pending_timers = int(
            await conn.fetchval("SELECT count(*) FROM scheduler.timers WHERE state = 'pending'")
        )
    except asyncpg.PostgresError as exc:
        status.problems.append(f"timers unreadable: {exc}")
    finally:
        await conn.close()


def _credential(key: str | None, data_dir: Path) -> str | None:
    """An admin key if given; else the service token ``waypost up`` keeps in its data dir."""
    if key:
        return key
    if token := os.environ.get("WAYPOST_SERVICE_TOKEN"):
        return token
    path = data_dir / "service.token"
    return path.read_text().strip() if path.is_file() else None


def _print(status: Status) -> None:
    typer.echo("services")
    for name, state in status.services.items():
        typer.echo(f"  {name:<10} {state}")
    typer.echo("consumers (lag: messages not yet delivered; unacked: delivered, in work)")
    for c in sorted(status.consumers, key=lambda c: (c["stream"], c["durable"])):
        typer.echo(
            f"  {c['stream']:<12} {c['durable']:<28} lag {c['lag']:>8}"
            f"  unacked {c['unacknowledged']:>6}  redelivered {c['redelivered']}"
        )
    shown = "unknown" if status.pending_timers is None else str(status.pending_timers)
    typer.echo(f"pending timers  {shown}")
    total = sum(status.dead_letters.values())
    typer.echo(f"dead letters    {total}")
    for subject, count in status.dead_letters.items():
        typer.echo(f"  {subject:<40} {count}")
    for problem in status.problems:
        typer.echo(f"problem: {problem}")


def status(
    url: Annotated[
        str, typer.Option(envvar="WAYPOST_PUBLIC_URL", help="The gateway.")
    ] = "http://127.0.0.1:8080",
    key: Annotated[
        str | None,
        typer.Option(
            envvar="WAYPOST_ADMIN_KEY",
            help="An admin key (default: the service token of --data-dir).",
        ),
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="The data dir of 'waypost up'.")] = Path(
        ".waypost"
    ),
    database_url: DatabaseUrl = None,
    nats_url: NatsUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Each service up or not, each durable consumer's lag, pending timers, dead letters.
    Exits 1 when something is down or unreachable."""
    from shared.settings import CommonSettings

    common = CommonSettings()
    found = Status()

    async def run() -> None:
        await asyncio.gather(
            _services(found, url, _credential(key, data_dir)),
            _bus(found, nats_url or common.nats_url),
            _timers(found, database_url or common.database_url),
        )

    asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(asdict(found) | {"healthy": found.healthy}, default=str))
    else:
        _print(found)
    raise typer.Exit(0 if found.healthy else 1)
