"""Faults under a steady load: every service killed with SIGKILL in turn and started again,
NATS and PostgreSQL killed and started again on the same data; then with a three-node NATS
cluster (streams replicated three times) and two replicas of every service, one NATS node
killed. Afterwards every accepted event has had its effect exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.checks import assert_exactly_once, journey
from tests.faults.load import Load, running
from tests.faults.system import SERVICES, System, running_system
from tests.helpers import eventually
from tests.sinks import Mailbox, run_mailbox
from tests.stack import Workspace, new_workspace
from waypost.embedded import EmbeddedNats, EmbeddedNatsCluster

pytestmark = pytest.mark.faults

# Events accepted after each recovery before the next fault: the system works again.
RECOVERED = 30


def step(what: str) -> None:
    """What the test is doing, with the time, shown when it fails (next to the logs)."""
    print(time.strftime("%H:%M:%S"), what, flush=True)


@pytest.fixture
def box() -> Iterator[Mailbox]:
    yield from run_mailbox()


async def delivering(load: Load, box: Mailbox) -> None:
    """More events accepted and more emails delivered than before: the system recovered."""
    sent = len(box.messages)
    await load.accepting(RECOVERED)

    async def more_mail() -> bool:
        return len(box.messages) >= sent + RECOVERED

    await eventually(more_mail, f"{RECOVERED} more emails", 120)
    step(f"delivering: {len(load.accepted)} accepted, {len(box.messages)} emails")


async def caught_up(system: System, ws: Workspace, load: Load) -> None:
    """More events accepted, and every profile accepted so far has had its email sent (with
    a replica down, the other did its share too)."""
    await load.accepting(RECOVERED)
    profiles = len(load.profiles())

    async def sent() -> bool:
        (row,) = await system.rows(
            "SELECT count(*) AS n FROM activator.deliveries WHERE workspace_id = $1 "
            "AND status = 'sent'", ws.id,
        )  # fmt: skip
        return bool(row["n"] >= profiles)

    await eventually(sent, f"the first {profiles} profiles' emails", 120)


async def kill_services(system: System, ws: Workspace, load: Load, box: Mailbox) -> None:
    """The first replica of each service, in turn: killed, met by the load, started. With
    two replicas it stays down until the other has done all the work so far (but the
    designer: the other services reach it at its first replica's address)."""
    for name in SERVICES:
        first, *others = system.replicas(name)
        step(f"kill {first.name}")
        await first.kill()
        await load.attempted(3)
        if others and name != "designer":
            await caught_up(system, ws, load)
            step(f"caught up without {first.name}")
        await first.start()
        await system.wait_ready([first])
        step(f"{first.name} ready again")
        await delivering(load, box)


async def kill_postgres(system: System, load: Load, box: Mailbox) -> None:
    step("kill PostgreSQL")
    await asyncio.to_thread(system.pg.kill)
    await load.attempted(3)
    await asyncio.to_thread(system.pg.start)
    step("PostgreSQL started")
    await delivering(load, box)


async def kill_nats_node(system: System, node: EmbeddedNats, load: Load, box: Mailbox) -> None:
    step(f"kill NATS at {node.url}")
    await asyncio.to_thread(node.kill)
    await load.attempted(3)
    await asyncio.to_thread(node.start)
    step("NATS started")
    await delivering(load, box)


@pytest.mark.timeout(300)
async def test_every_service_nats_and_postgres_killed_under_load(
    tmp_path: Path, box: Mailbox
) -> None:
    async with running_system(tmp_path) as system:
        ws = await new_workspace(system.stack)
        journey_id = await journey(ws, box.port)
        load = Load(system.gateways, await ws.key("ingest"), lambda: len(box.messages))
        async with running(load):
            await delivering(load, box)
            await kill_services(system, ws, load, box)
            assert isinstance(system.nats, EmbeddedNats)
            await kill_nats_node(system, system.nats, load, box)
            await kill_postgres(system, load, box)
        step(f"load stopped; unanswered posts: {dict(load.failures)}")
        step(f"exits on their own: { {s.name: s.exits for s in system.services if s.exits} }")
        await load.settle()
        step("every event accepted")
        assert load.repeated > 0
        await assert_exactly_once(system, ws, journey_id, load, box)


@pytest.mark.timeout(300)
async def test_a_nats_node_and_service_replicas_killed_in_a_cluster(
    tmp_path: Path, box: Mailbox
) -> None:
    async with running_system(tmp_path, replicas=2, nats_nodes=3) as system:
        ws = await new_workspace(system.stack)
        journey_id = await journey(ws, box.port)
        load = Load(system.gateways, await ws.key("ingest"), lambda: len(box.messages))
        async with running(load):
            await delivering(load, box)
            assert isinstance(system.nats, EmbeddedNatsCluster)
            await kill_nats_node(system, system.nats.nodes[0], load, box)
            await kill_postgres(system, load, box)
            await kill_services(system, ws, load, box)
        step(f"load stopped; unanswered posts: {dict(load.failures)}")
        step(f"exits on their own: { {s.name: s.exits for s in system.services if s.exits} }")
        await load.settle()
        step("every event accepted")
        await assert_exactly_once(system, ws, journey_id, load, box)
