"""``waypost status`` and ``waypost keys create`` as an operator runs them: the real
command, in its own process, against the test servers and stack."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

from nats.aio.client import Client as NATS

from shared import bus
from tests.stack import Stack, Workspace
from waypost.embedded import free_port


async def waypost(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "waypost", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"waypost {' '.join(args)} did not finish") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _where(stack: Stack, nats_url: str | None = None) -> list[str]:
    return ["--url", stack.url, "--key", stack.bootstrap_key,
            "--database-url", stack.servers.database_url,
            "--nats-url", nats_url or stack.servers.nats_url]  # fmt: skip


async def test_status_shows_services_consumers_timers_and_dead_letters(
    stack: Stack, nc: NATS
) -> None:
    subject = f"deadletter.EVENTS.status-{uuid.uuid4().hex[:8]}"
    await bus.publish(nc.jetstream(), subject, {"poison": True}, f"dl-{uuid.uuid4().hex}")

    code, out, err = await waypost("status", "--json", *_where(stack))
    assert code == 0, (out, err)
    found: dict[str, Any] = json.loads(out)
    assert found["healthy"] is True
    assert found["services"] == dict.fromkeys(
        ("gateway", "designer", "runtime", "scheduler", "activator"), "up"
    )
    durables = {(c["stream"], c["durable"]) for c in found["consumers"]}
    assert {("JOURNEYS", "runtime-journeys"), ("JOURNEYS", "activator-journeys")} <= durables
    assert all(c["lag"] >= 0 for c in found["consumers"])
    assert isinstance(found["pending_timers"], int)
    assert found["dead_letters"][subject] == 1

    code, out, _ = await waypost("status", *_where(stack))
    assert code == 0
    assert "activator-journeys" in out
    assert subject in out


async def test_status_exits_1_when_nats_is_not_there(stack: Stack) -> None:
    code, out, _ = await waypost(
        "status", "--json", *_where(stack, f"nats://127.0.0.1:{free_port()}")
    )
    assert code == 1
    assert any("NATS unreachable" in p for p in json.loads(out)["problems"])


async def test_keys_create_makes_a_working_admin_key_printed_once(
    workspace: Workspace, stack: Stack
) -> None:
    database = ["--database-url", stack.servers.database_url]
    code, out, err = await waypost("keys", "create", "--role", "admin",
                                   "--workspace", workspace.id, *database)  # fmt: skip
    assert code == 0, err
    key = out.strip()
    assert key.startswith("wp_")
    assert workspace.id in err
    async with stack.client(key) as c:
        me = (await c.get("/v1/me")).json()
        assert (me["workspace_id"], me["role"]) == (workspace.id, "admin")
        # An admin's power: making another key through the API.
        r = await c.post("/v1/api-keys", json={"name": "after-recovery", "role": "viewer"})
        assert r.status_code == 201, r.text

    code, _, err = await waypost("keys", "create", "--workspace", "no-such-ws", *database)
    assert code == 1
    assert "no workspace" in err
    code, _, _ = await waypost("keys", "create", "--role", "owner", *database)
    assert code == 2


async def test_gateway_metrics_count_proxied_requests_by_route_not_path(
    workspace: Workspace, stack: Stack
) -> None:
    profile = f"metrics-{uuid.uuid4().hex}"
    async with workspace.client() as c:
        assert (await c.get(f"/v1/profiles/{profile}/timeline")).status_code == 200
    async with stack.client(stack.bootstrap_key) as c:
        metrics = (await c.get("/metrics")).text
    counted = [
        line for line in metrics.splitlines()
        if line.startswith("waypost_http_requests_total{") and 'method="GET"' in line
    ]  # fmt: skip
    assert any('route="/v1/profiles/{id}(/timeline|/explain)?"' in line for line in counted)
    assert not any('route="/v1/{path:path}"' in line and 'status="200"' in line for line in counted)
    assert profile not in metrics


async def test_every_service_metrics_through_the_gateway_for_operators_only(
    workspace: Workspace, stack: Stack
) -> None:
    async with stack.client(stack.bootstrap_key) as c:
        for service in ("designer", "runtime", "scheduler", "activator"):
            r = await c.get(f"/metrics/{service}")
            assert r.status_code == 200, (service, r.text)
            assert "waypost_http_requests_total" in r.text
            # The service's own registry, not the gateway's.
            assert "waypost_gateway_rate_limited_total" not in r.text
        assert (await c.get("/metrics/nothing")).status_code == 404
    async with workspace.client(await workspace.key("editor")) as c:
        assert (await c.get("/metrics/runtime")).status_code == 403
    async with stack.client(None) as c:
        assert (await c.get("/metrics/runtime")).status_code == 401
