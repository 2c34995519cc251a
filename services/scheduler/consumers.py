"""The scheduler's NATS handlers: ``timers.schedule`` and ``timers.cancel`` commands, each
fetched batch stored in one transaction. Bad commands are poison: dead-lettered, never
retried, never in the way of the others."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.repository import TimerRepository
from services.scheduler.settings import SchedulerSettings
from shared import bus, db
from shared.clock import Clock
from shared.timers import (
    CANCEL_SUBJECTS,
    SCHEDULE_SUBJECTS,
    TimerCancel,
    TimerSchedule,
    subject_workspace,
)
from shared.topology import TIMERS

SCHEDULE_DURABLE = "scheduler"
CANCEL_DURABLE = "scheduler-cancel"

Command = TypeVar("Command", TimerSchedule, TimerCancel)


def parse(msg: Msg, model: type[Command]) -> Command:
    try:
        command = model.model_validate_json(msg.data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)[:3]
        raise bus.Poison(f"not a {model.__name__}: {errors}") from exc
    if subject_workspace(msg.subject) != command.workspace_id:
        raise bus.Poison(f"workspace {command.workspace_id!r} is not that of {msg.subject}")
    return command


class CommandStore:
    """Stores commands; tells the release loop when new timers may fall due sooner."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        on_scheduled: Callable[[datetime], None],
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._on_scheduled = on_scheduled

    async def schedule(self, msgs: Sequence[Msg]) -> None:
        commands = [parse(m, TimerSchedule) for m in msgs]
        async with db.transaction(self._sessions) as session:
            await TimerRepository(session).add_pending(commands)
        self._on_scheduled(min(c.due_at for c in commands))

    async def cancel(self, msgs: Sequence[Msg]) -> None:
        commands = [parse(m, TimerCancel) for m in msgs]
        async with db.transaction(self._sessions) as session:
            await TimerRepository(session).cancel(commands, self._clock.now())


async def start_consumers(
    js: JetStreamContext,
    store: CommandStore,
    settings: SchedulerSettings,
    metrics: bus.ConsumerMetrics,
) -> list[bus.Consumer]:
    """Schedules and cancels on separate durables: their order does not matter, because
    a cancel that comes first leaves a tombstone the schedule then respects."""
    consumers = [
        _consumer(js, SCHEDULE_DURABLE, SCHEDULE_SUBJECTS, store.schedule, settings, metrics),
        _consumer(js, CANCEL_DURABLE, CANCEL_SUBJECTS, store.cancel, settings, metrics),
    ]
    for consumer in consumers:
        await consumer.start()
    return consumers


def _consumer(
    js: JetStreamContext,
    durable: str,
    subjects: str,
    handle: Callable[[Sequence[Msg]], Awaitable[None]],
    settings: SchedulerSettings,
    metrics: bus.ConsumerMetrics,
) -> bus.Consumer:
    spec = bus.ConsumerSpec(
        stream=TIMERS.name,
        durable=durable,
        filter_subject=subjects,
        batch=settings.command_batch,
        max_ack_pending=max(10_000, 2 * settings.command_batch),
    )

    async def one(msg: Msg) -> None:
        await handle([msg])

    async def many(msgs: list[Msg]) -> None:
        await handle(msgs)

    return bus.Consumer(js, spec, one, metrics=metrics, batch_handler=many)
