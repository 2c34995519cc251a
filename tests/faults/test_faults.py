"""Faults under a steady load: every service killed with SIGKILL in turn and started again,
NATS and PostgreSQL killed and started again on the same data; then with a three-node NATS
cluster (streams replicated three times) and two replicas of every service, one NATS node
killed. Afterwards every accepted event has had its effect exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.checks import assert_exactly_once, journey
from tests.faults.load import Load, running
from tests.faults.system import SERVICES, System, running_system
from tests.helpers import eventually
from tests.sinks import Mailbox, run_mailbox
from tests.stack import new_workspace
from waypost.embedded import EmbeddedNats, EmbeddedNatsCluster

pytestmark = pytest.mark.faults

# Events accepted after each recovery before the next fault: the system works again.
RECOVERED = 30


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


async def kill_services(system: System, load: Load, box: Mailbox) -> None:
    """The first replica of each service, in turn: killed, met by the load, started."""
    for name in SERVICES:
        service = system.replicas(name)[0]
        await service.kill()
        await load.attempted(3)
        await service.start()
        await system.wait_ready([service])
        await delivering(load, box)


async def kill_nats_node(system: System, node: EmbeddedNats, load: Load, box: Mailbox) -> None:
    await asyncio.to_thread(node.kill)
    await load.attempted(3)
    await asyncio.to_thread(node.start)
    await delivering(load, box)


@pytest.mark.timeout(300)
async def test_every_service_nats_and_postgres_killed_under_load(
    tmp_path: Path, box: Mailbox
) -> None:
    async with running_system(tmp_path) as system:
        ws = await new_workspace(system.stack)
        journey_id = await journey(ws, box.port)
        load = Load(system.gateways, await ws.key("ingest"))
        async with running(load):
            await delivering(load, box)
            await kill_services(system, load, box)
            assert isinstance(system.nats, EmbeddedNats)
            await kill_nats_node(system, system.nats, load, box)
            await asyncio.to_thread(system.pg.kill)
            await load.attempted(3)
            await asyncio.to_thread(system.pg.start)
            await delivering(load, box)
        await load.settle()
        assert load.repeated > 0
        await assert_exactly_once(system, ws, journey_id, load, box)


@pytest.mark.timeout(300)
async def test_a_nats_node_and_service_replicas_killed_in_a_cluster(
    tmp_path: Path, box: Mailbox
) -> None:
    async with running_system(tmp_path, replicas=2, nats_nodes=3) as system:
        ws = await new_workspace(system.stack)
        journey_id = await journey(ws, box.port)
        load = Load(system.gateways, await ws.key("ingest"))
        async with running(load):
            await delivering(load, box)
            assert isinstance(system.nats, EmbeddedNatsCluster)
            await kill_nats_node(system, system.nats.nodes[0], load, box)
            await kill_services(system, load, box)
        await load.settle()
        await assert_exactly_once(system, ws, journey_id, load, box)
