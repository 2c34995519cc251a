"""The scheduler against real PostgreSQL and NATS: commands in, each timer fired once.

Other tests share the TIMERS stream, the scheduler's tables and its durable consumers, so
each test works in a workspace of its own and reads only that workspace's messages.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scheduler.app import create_app
from services.scheduler.consumers import SCHEDULE_DURABLE
from services.scheduler.schemas import TimerStats
from services.scheduler.settings import SchedulerSettings
from shared import bus, db
from shared.clock import VirtualClock
from shared.settings import ClockMode
from shared.timers import (
    TimerCancel,
    TimerFired,
    TimerKind,
    TimerSchedule,
    fired_subject,
    release_subject,
    schedule_subject,
)
from shared.topology import DEADLETTER, TIMERS, dead_letter_subject
from tests.conftest import Servers
from tests.helpers import eventually, serving
from tests.stack import SERVICE_TOKEN, service_headers
from waypost.embedded import die_with_parent, free_port

Command = TimerSchedule | TimerCancel


@pytest.fixture
def ws() -> str:
    return f"ws{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def js(nc: NATS) -> JetStreamContext:
    stream_js = nc.jetstream(publish_async_max_pending=2000)
    await bus.ensure_streams(stream_js)
    return stream_js


@pytest.fixture
async def engine(servers: Servers) -> AsyncIterator[AsyncEngine]:
    database = db.create_engine(servers.database_url, pool_size=2)
    yield database
    await database.dispose()


@asynccontextmanager
async def scheduler(servers: Servers, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A scheduler app serving on a loopback port; yields a client of its HTTP API."""
    settings = SchedulerSettings(
        database_url=servers.database_url,
        nats_url=servers.nats_url,
        service_token=SERVICE_TOKEN,
        **overrides,
    )
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers=service_headers()) as client,
    ):
        yield client


def timer(ws: str, due_at: datetime, name: str = "t", **fields: Any) -> TimerSchedule:
    """Journey ids are unique across workspaces, and so are the timer ids built on them."""
    return TimerSchedule(
        timer_id=f"prof-{name}/journey-{ws}/1/wait/{name}", workspace_id=ws,
        profile_id=f"prof-{name}", journey_id=f"journey-{ws}", kind=TimerKind.WAIT,
        due_at=due_at, **fields,
    )  # fmt: skip


def cancel(command: TimerSchedule) -> TimerCancel:
    return TimerCancel(timer_id=command.timer_id, workspace_id=command.workspace_id)


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def send(js: JetStreamContext, commands: Sequence[Command]) -> None:
    """Publish commands as the runtime's outbox does, with their message ids."""
    acks = [
        await js.publish_async(c.subject, c.json_bytes(), headers={bus.MSG_ID: c.msg_id})
        for c in commands
    ]
    await asyncio.wait_for(asyncio.gather(*acks), timeout=60)


async def fired(js: JetStreamContext, ws: str, subject: str | None = None) -> list[TimerFired]:
    """Every ``timers.fired`` message of ``ws`` (or those on ``subject``) on the stream, in
    stream order."""
    subject = subject or fired_subject(ws)
    info = await js.stream_info(TIMERS.name, subjects_filter=subject)
    total = (info.state.subjects or {}).get(subject, 0)
    if not total:
        return []
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=5.0
    )
    sub = await js.pull_subscribe(subject, stream=TIMERS.name, config=config)
    found: list[TimerFired] = []
    try:
        while len(found) < total:
            msgs = await sub.fetch(min(1000, total - len(found)), timeout=5)
            found += [TimerFired.model_validate_json(m.data) for m in msgs]
    finally:
        await sub.unsubscribe()
    return found


async def fired_count(js: JetStreamContext, ws: str) -> int:
    subject = fired_subject(ws)
    info = await js.stream_info(TIMERS.name, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def all_fired(js: JetStreamContext, ws: str, count: int) -> list[TimerFired]:
    async def probe() -> list[TimerFired] | None:
        return await fired(js, ws) if await fired_count(js, ws) >= count else None

    return await eventually(probe, f"{count} fired timers", within_s=120)


async def stats(client: httpx.AsyncClient, ws: str) -> TimerStats:
    r = await client.get("/internal/timers/stats", params={"workspace_id": ws})
    assert r.status_code == 200, r.text
    return TimerStats.model_validate(r.json())


async def states(engine: AsyncEngine, ws: str) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT timer_id, state FROM scheduler.timers WHERE workspace_id = :ws"),
            {"ws": ws},
        )
        return {row.timer_id: row.state for row in rows}


def once_each(messages: Sequence[TimerFired]) -> Counter[str]:
    return Counter(m.timer_id for m in messages)


async def test_scheduled_timer_fires_once_at_its_due_time(
    servers: Servers, js: JetStreamContext, ws: str
) -> None:
    command = timer(ws, soon(0.5), payload={"step_id": "s3"})
    async with scheduler(servers):
        await send(js, [command])
        (message,) = await all_fired(js, ws, 1)
    assert message.fired_at >= command.due_at
    assert message.model_dump(exclude={"fired_at"}) == command.model_dump()


async def test_quiet_hours_timers_are_released_for_the_activator_not_fired(
    servers: Servers, js: JetStreamContext, ws: str
) -> None:
    wait = timer(ws, soon(0.2), "w")
    quiet = timer(ws, soon(0.2), "q").model_copy(
        update={"kind": TimerKind.QUIET_HOURS, "payload": {"attempts": 0}}
    )
    async with scheduler(servers):
        await send(js, [wait, quiet])
        (released,) = await eventually(
            lambda: fired(js, ws, release_subject(ws)), "the quiet-hours release"
        )
        (fired_wait,) = await all_fired(js, ws, 1)
    assert (released.timer_id, released.kind, released.payload) == (
        quiet.timer_id, TimerKind.QUIET_HOURS, {"attempts": 0}
    )  # fmt: skip
    assert fired_wait.timer_id == wait.timer_id
    last = await js.get_last_msg(TIMERS.name, release_subject(ws))
    assert (last.headers or {})[bus.MSG_ID] == f"release:{quiet.timer_id}"


async def test_duplicate_schedules_fire_one_message(
    servers: Servers, js: JetStreamContext, ws: str
) -> None:
    command = timer(ws, soon(0.3))
    later = timer(ws, soon(0.6), "later")
    sentinel = timer(ws, soon(0), "sentinel")

    async def again(tag: str) -> None:
        """The same command under another message id, so the stream does not drop it."""
        headers = {bus.MSG_ID: f"{ws}-{tag}"}
        await js.publish(command.subject, command.json_bytes(), headers=headers)

    async with scheduler(servers):
        await send(js, [command, command])
        await again("again-1")
        await again("again-2")
        await send(js, [later])
        await all_fired(js, ws, 2)
        await again("after-firing")  # a fired timer is never armed again
        await send(js, [sentinel])
        messages = await all_fired(js, ws, 3)
    assert once_each(messages) == {command.timer_id: 1, later.timer_id: 1, sentinel.timer_id: 1}


async def test_cancelled_timer_never_fires(
    servers: Servers, js: JetStreamContext, engine: AsyncEngine, ws: str
) -> None:
    victim = timer(ws, soon(1.0), "victim")
    sentinel = timer(ws, soon(1.5), "sentinel")
    async with scheduler(servers):
        await send(js, [victim, cancel(victim), sentinel])
        # Timers fire in due order: once the later one has, the victim's time has passed.
        messages = await all_fired(js, ws, 1)
    assert once_each(messages) == {sentinel.timer_id: 1}
    assert (await states(engine, ws))[victim.timer_id] == "cancelled"


async def test_cancel_that_arrives_before_its_schedule_wins(
    servers: Servers, js: JetStreamContext, engine: AsyncEngine, ws: str
) -> None:
    victim = timer(ws, soon(-1), "victim")
    sentinel = timer(ws, soon(0.3), "sentinel")
    async with scheduler(servers):
        await send(js, [cancel(victim)])

        async def tombstone() -> bool:
            return (await states(engine, ws)).get(victim.timer_id) == "cancelled"

        await eventually(tombstone, "the cancel's tombstone")
        await send(js, [victim, sentinel])
        messages = await all_fired(js, ws, 1)
    assert once_each(messages) == {sentinel.timer_id: 1}
    assert await states(engine, ws) == {victim.timer_id: "cancelled", sentinel.timer_id: "fired"}


async def test_cancel_after_firing_changes_nothing(
    servers: Servers, js: JetStreamContext, engine: AsyncEngine, ws: str
) -> None:
    command = timer(ws, soon(0))
    marker = timer(ws, soon(3600), "marker")
    async with scheduler(servers):
        await send(js, [command])
        await all_fired(js, ws, 1)
        await send(js, [cancel(command), cancel(marker)])

        async def marker_seen() -> bool:
            # Cancels are consumed in order: the marker's tombstone comes after the first.
            return (await states(engine, ws)).get(marker.timer_id) == "cancelled"

        await eventually(marker_seen, "both cancels consumed")
    assert (await states(engine, ws))[command.timer_id] == "fired"
    assert len(await fired(js, ws)) == 1


async def test_timers_fire_in_due_order_across_batches(
    servers: Servers, js: JetStreamContext, nc: NATS, ws: str
) -> None:
    clock = await VirtualClock.open(nc.jetstream())
    try:
        # Due an hour ahead on the shared virtual clock: only this test's scheduler, which
        # follows that clock, can release them, and all at once after the advance.
        base = clock.now() + timedelta(hours=1)
        commands = [timer(ws, base + timedelta(seconds=i), f"n{i:03d}") for i in range(60)]
        shuffled = random.sample(commands, len(commands))
        async with scheduler(servers, clock=ClockMode.VIRTUAL, claim_batch=7) as client:
            await send(js, shuffled)

            async def stored() -> bool:
                return (await stats(client, ws)).pending == len(commands)

            await eventually(stored, "every timer stored")
            await clock.advance(timedelta(hours=2))
            messages = await all_fired(js, ws, len(commands))
    finally:
        await clock.close()
    assert [m.timer_id for m in messages] == [c.timer_id for c in commands]


async def test_virtual_clock_fires_a_timer_only_when_advanced_past_it(
    servers: Servers, js: JetStreamContext, nc: NATS, ws: str
) -> None:
    clock = await VirtualClock.open(nc.jetstream())
    try:
        command = timer(ws, clock.now() + timedelta(hours=1))
        async with scheduler(servers, clock=ClockMode.VIRTUAL) as client:
            await send(js, [command])

            async def stored() -> TimerStats | None:
                body = await stats(client, ws)
                return body if body.pending == 1 else None

            before = await eventually(stored, "the timer stored")
            assert before.next_due_at == command.due_at

            async def idle_twice() -> bool:
                # Two idle passes: the second began after the timer was stored.
                return (await stats(client, ws)).idle_passes >= before.idle_passes + 2

            await eventually(idle_twice, "the release loop idle with the timer stored")
            assert await fired_count(js, ws) == 0

            await clock.advance(timedelta(hours=1))
            (message,) = await all_fired(js, ws, 1)
            assert (await stats(client, ws)).pending == 0
    finally:
        await clock.close()
    assert message.timer_id == command.timer_id
    assert message.fired_at >= command.due_at


async def test_new_earlier_timer_wakes_a_sleeping_release_loop(
    servers: Servers, js: JetStreamContext, ws: str
) -> None:
    far = timer(ws, soon(3600), "far")
    near = timer(ws, soon(0.3), "near")
    async with scheduler(servers, idle_poll_s=60) as client:
        await send(js, [far])

        async def asleep() -> bool:
            return (await stats(client, ws)).pending == 1

        await eventually(asleep, "the far timer stored")
        await send(js, [near])
        # Without the wake-up the loop would sleep for up to a minute.
        messages = await all_fired(js, ws, 1)
    assert once_each(messages) == {near.timer_id: 1}


async def test_two_schedulers_fire_ten_thousand_simultaneous_timers_once_each(
    servers: Servers, js: JetStreamContext, engine: AsyncEngine, ws: str
) -> None:
    due = soon(3)
    commands = [timer(ws, due, f"n{i:05d}") for i in range(10_000)]
    async with scheduler(servers, claim_batch=500), scheduler(servers, claim_batch=500):
        await send(js, commands)
        messages = await all_fired(js, ws, len(commands))
    counts = once_each(messages)
    assert set(counts) == {c.timer_id for c in commands}
    assert set(counts.values()) == {1}
    assert set((await states(engine, ws)).values()) == {"fired"}


@contextmanager
def scheduler_process(servers: Servers, log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    environment = {
        **os.environ,
        "WAYPOST_DATABASE_URL": servers.database_url,
        "WAYPOST_NATS_URL": servers.nats_url,
        "WAYPOST_PORT": str(free_port()),
        **env,
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "waypost", "scheduler"], env=environment,
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


async def test_kill_9_while_releasing_then_restart_fires_each_timer_once(
    servers: Servers, js: JetStreamContext, engine: AsyncEngine, ws: str, tmp_path: Path
) -> None:
    count = 20_000
    commands = [timer(ws, soon(6), f"n{i:05d}") for i in range(count)]
    log = tmp_path / "scheduler.log"
    # Small claims keep the release going for seconds, so the kill lands in the middle of it.
    with scheduler_process(servers, log, WAYPOST_CLAIM_BATCH="100") as first:
        await send(js, commands)

        async def stored() -> bool:
            return len(await states(engine, ws)) == count

        await eventually(stored, "every timer stored", within_s=60)

        async def releasing() -> bool:
            return await fired_count(js, ws) > 0

        await eventually(releasing, "the first released timers", within_s=30)
        first.kill()
        first.wait(timeout=10)
    at_kill = await fired_count(js, ws)
    assert at_kill < count, "the release was over before the kill"

    with scheduler_process(servers, log):
        messages = await all_fired(js, ws, count)
    counts = once_each(messages)
    assert set(counts) == {c.timer_id for c in commands}
    assert set(counts.values()) == {1}, log.read_text()[-2000:]
    assert set((await states(engine, ws)).values()) == {"fired"}


async def dead_letters_of(js: JetStreamContext, subject: str) -> list[bytes]:
    """Bodies dead-lettered by the scheduler's command consumer that came from ``subject``."""
    where = dead_letter_subject(TIMERS.name, SCHEDULE_DURABLE)
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=5.0
    )
    sub = await js.pull_subscribe(where, stream=DEADLETTER.name, config=config)
    found: list[bytes] = []
    try:
        while True:
            msgs = await sub.fetch(100, timeout=0.5)
            found += [m.data for m in msgs if (m.headers or {}).get(bus.DEAD_SUBJECT) == subject]
    except TimeoutError:  # nats-py raises either its own subclass or the plain one
        return found
    finally:
        await sub.unsubscribe()


async def test_poison_commands_are_dead_lettered_and_the_rest_fire(
    servers: Servers, js: JetStreamContext, ws: str
) -> None:
    subject = schedule_subject(ws)
    good = timer(ws, soon(0))
    naive = good.model_dump(mode="json") | {"timer_id": "naive", "due_at": "2026-01-01T00:00:00"}
    elsewhere = timer("other-workspace", soon(0), "elsewhere")
    bad = [
        b"\xff{not json " + ws.encode(),
        bus.encode(naive),
        bus.encode({"timer_id": "no-fields", "workspace_id": ws}),
        elsewhere.json_bytes(),  # a body for another workspace on this one's subject
    ]
    async with scheduler(servers):
        for n, body in enumerate(bad):
            await js.publish(subject, body, headers={bus.MSG_ID: f"{ws}-bad-{n}"})
        await send(js, [good])
        messages = await all_fired(js, ws, 1)

        async def all_dead() -> list[bytes] | None:
            dead = await dead_letters_of(js, subject)
            return dead if len(dead) == len(bad) else None

        dead = await eventually(all_dead, "every bad command dead-lettered")
    assert once_each(messages) == {good.timer_id: 1}
    assert sorted(dead) == sorted(bad)
