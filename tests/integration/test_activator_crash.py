"""kill -9 of an activator between a provider accepting a message and the outcome being
recorded: the restarted activator sends it again with the same idempotency key (never a
new one), and a request seen again after ``sent`` is acknowledged without a send.

The activators run as real processes on a database of their own, so no other activator of
the test session can claim the delivery in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import nats.js.errors
import pytest
from fastapi import FastAPI, Request, Response
from nats.aio.client import Client as NATS
from sqlalchemy.engine import make_url

from services.designer.app import create_app as create_designer
from services.designer.secrets import SecretBox
from services.designer.settings import DesignerSettings
from shared import bus
from shared.identity import Identity, Role
from shared.topology import ACTIVATIONS, TIMERS
from tests.conftest import Servers
from tests.helpers import eventually, serving
from tests.stack import SERVICE_TOKEN, service_headers
from waypost.cli import migrate_all
from waypost.embedded import die_with_parent, free_port

DURABLE = f"activator-crash-{uuid.uuid4().hex[:8]}"
RELEASES = f"{DURABLE}-release"


def _dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
async def database(servers: Servers) -> AsyncIterator[str]:
    """A database of this module's own, migrated; yields its SQLAlchemy URL."""
    name = f"crash_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_dsn(servers.database_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = make_url(servers.database_url).set(database=name).render_as_string(False)
        await asyncio.to_thread(migrate_all, url)
        yield url
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def designer(servers: Servers, database: str) -> AsyncIterator[str]:
    settings = DesignerSettings(
        database_url=database, nats_url=servers.nats_url, secrets_key=SecretBox.new_key(),
        allow_private_connectors=True, service_token=SERVICE_TOKEN,
    )  # fmt: skip
    async with serving(create_designer(settings)) as url:
        yield url
    nc = await bus.connect(servers.nats_url, "tests-cleanup")
    try:
        for stream, durable in ((ACTIVATIONS.name, DURABLE), (TIMERS.name, RELEASES)):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_consumer(stream, durable)
    finally:
        await nc.close()


@dataclass
class Provider:
    """Records every request; holds the first one unanswered, so its sender can be killed
    with the message received and no outcome yet; answers 202 after that."""

    url: str = ""
    keys: list[str] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    never: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    state = Provider()
    app = FastAPI()

    @app.post("/sms")
    async def sms(request: Request) -> Response:
        state.keys.append(request.headers["idempotency-key"])
        state.bodies.append(await request.json())
        if len(state.keys) == 1:
            await state.never.wait()
        return Response(status_code=202)

    async with serving(app) as url:
        state.url = f"{url}/sms"
        try:
            yield state
        finally:
            state.never.set()


async def start_activator(servers: Servers, database: str, designer: str) -> Any:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")},
        "WAYPOST_DATABASE_URL": database,
        "WAYPOST_NATS_URL": servers.nats_url,
        "WAYPOST_DESIGNER_URL": designer,
        "WAYPOST_SERVICE_TOKEN": SERVICE_TOKEN,
        "WAYPOST_PORT": str(free_port()),
        "WAYPOST_CONSUMER_DURABLE": DURABLE,
        "WAYPOST_RELEASE_DURABLE": RELEASES,
        "WAYPOST_ALLOW_PRIVATE_CONNECTORS": "true",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "waypost", "activator", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )  # fmt: skip


async def new_workspace(designer: str) -> tuple[str, dict[str, str]]:
    """A workspace, and the headers the gateway would send for an admin key of it."""
    root = Identity("k-root", "root", Role.ADMIN, bootstrap=True)
    async with httpx.AsyncClient(base_url=designer, headers=service_headers(root)) as c:
        r = await c.post("/v1/workspaces", json={"name": f"ws-{uuid.uuid4().hex[:8]}"})
        assert r.status_code == 201, r.text
    ws = r.json()["id"]
    return ws, service_headers(Identity("k-admin", ws, Role.ADMIN))


async def delivery(database: str, activation_id: str) -> dict[str, Any] | None:
    conn = await asyncpg.connect(_dsn(database))
    try:
        row = await conn.fetchrow(
            "SELECT status, attempts, last_error FROM activator.deliveries "
            "WHERE activation_id = $1",
            activation_id,
        )
    finally:
        await conn.close()
    return dict(row) if row else None


async def publish(nc: NATS, ws: str, ids: tuple[str, str], aid: str, msg_id: str) -> None:
    connector_id, template_id = ids
    payload = {
        "activation_id": aid, "workspace_id": ws, "profile_id": "ada", "journey_id": "j1",
        "version": 1, "step_id": "a1", "channel": "sms", "connector_id": connector_id,
        "template_id": template_id, "to": "+15550100", "consent": {},
        "context": {"profile": {"first_name": "Ada"}},
        "requested_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    await bus.publish(nc.jetstream(), f"activations.requested.{ws}", payload, msg_id)


async def test_a_kill_between_send_and_record_resends_only_with_the_same_key(
    servers: Servers, database: str, designer: str, provider: Provider, nc: NATS
) -> None:
    ws, headers = await new_workspace(designer)
    async with httpx.AsyncClient(base_url=designer, headers=headers) as c:
        r = await c.post("/v1/connectors", json={
            "name": "sms", "type": "sms_http",
            "config": {"url": provider.url, "timeout_s": 120}})  # fmt: skip
        assert r.status_code == 201, r.text
        connector_id = r.json()["id"]
        r = await c.post("/v1/templates", json={
            "name": "hi", "channel": "sms", "body": "Hi {{ profile.first_name }}",
            "status": "ready"})  # fmt: skip
        assert r.status_code == 201, r.text
        ids = (connector_id, r.json()["id"])
    aid = f"act_{uuid.uuid4().hex}"

    first = await start_activator(servers, database, designer)
    second = None
    try:
        await publish(nc, ws, ids, aid, f"activation:{aid}")
        await eventually(lambda: _ready(provider.keys), "the provider to receive the message")
        first.send_signal(signal.SIGKILL)
        await first.wait()
        # Received by the provider, but no outcome recorded: still pending, no attempt counted.
        assert await delivery(database, aid) == {
            "status": "pending",
            "attempts": 0,
            "last_error": None,
        }

        second = await start_activator(servers, database, designer)

        async def sent() -> dict[str, Any] | None:
            found = await delivery(database, aid)
            return found if found and found["status"] == "sent" else None

        recorded = await eventually(sent, "the restarted activator to record it sent")
        assert recorded["attempts"] == 1
        assert provider.keys == [aid, aid]  # sent again, under the same idempotency key
        assert provider.bodies[0] == provider.bodies[1]

        # The same request once more (another Nats-Msg-Id, so JetStream keeps it), then one
        # behind it: once that one is sent, the repeat was handled, and sent nothing.
        await publish(nc, ws, ids, aid, f"again:{aid}")
        behind = f"act_{uuid.uuid4().hex}"
        await publish(nc, ws, ids, behind, f"activation:{behind}")
        await eventually(
            lambda: _is_sent(database, behind), "the request behind the repeat to be sent"
        )
        info = await nc.jetstream().consumer_info(ACTIVATIONS.name, DURABLE)
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await process.wait()
    assert provider.keys == [aid, aid, behind]
    assert await delivery(database, aid) == {"status": "sent", "attempts": 1, "last_error": None}


async def _is_sent(database: str, activation_id: str) -> bool:
    found = await delivery(database, activation_id)
    return found is not None and found["status"] == "sent"


async def _ready(condition: object) -> bool:
    return bool(condition)
