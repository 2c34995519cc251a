"""The runtime's NATS handlers: events (per partition, in order), fired timers and journey
changes. Each decodes, hands a batch to the processor, and lets the bus ack or retry."""

from __future__ import annotations

import time

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from services.runtime.processor import FiredTimer, Processor
from shared import bus
from shared.events import AcceptedEvent
from shared.timers import TimerFired
from shared.topology import EVENTS, JOURNEYS, TIMERS


def _event(msg: Msg) -> AcceptedEvent:
    try:
        return AcceptedEvent.model_validate_json(msg.data)  # parses and checks in one pass
    except ValidationError as exc:
        raise bus.Poison(f"not an accepted event: {exc.errors()[:3]}") from exc


def _fired(msg: Msg) -> FiredTimer:
    try:
        fired = TimerFired.model_validate(bus.decode(msg))
    except ValidationError as exc:
        raise bus.Poison(f"not a fired timer: {exc.errors()[:3]}") from exc
    return FiredTimer(
        fired.timer_id, fired.workspace_id, fired.profile_id, fired.journey_id, fired.due_at,
        fired.kind.value,
    )  # fmt: skip


async def partition_consumer(
    js: JetStreamContext, processor: Processor, partition: int, batch: int
) -> bus.Consumer:
    """The one consumer of ``events.*.<partition>``; at most a batch unacked, so a
    replica taking the partition over gets the unacked ones again before anything newer."""
    spec = bus.ConsumerSpec(
        stream=EVENTS.name,
        durable=f"runtime-p{partition}",
        filter_subject=f"events.*.{partition}",
        batch=batch,
        max_ack_pending=batch,
        ack_wait_s=10,
        ordered=True,
    )

    async def one(msg: Msg) -> None:
        for reason in (await processor.apply_events([_event(msg)], time.monotonic())).values():
            raise bus.Poison(reason)

    async def many(msgs: list[Msg]) -> dict[int, str]:
        """Undecodable events and events of unknown workspaces are dead-lettered; the rest
        are applied in one transaction."""
        poisoned: dict[int, str] = {}
        events: list[tuple[int, AcceptedEvent]] = []
        for index, msg in enumerate(msgs):
            try:
                events.append((index, _event(msg)))
            except bus.Poison as exc:
                poisoned[index] = str(exc)
        refused = await processor.apply_events([e for _, e in events], time.monotonic())
        return poisoned | {events[i][0]: reason for i, reason in refused.items()}

    consumer = bus.Consumer(js, spec, one, batch_handler=many)
    await consumer.start()
    return consumer


async def timer_consumer(js: JetStreamContext, processor: Processor) -> bus.Consumer:
    spec = bus.ConsumerSpec(
        stream=TIMERS.name, durable="runtime-timers", filter_subject="timers.fired.>", batch=500
    )

    async def one(msg: Msg) -> None:
        await processor.apply_timers([_fired(msg)])

    async def many(msgs: list[Msg]) -> None:
        await processor.apply_timers([_fired(m) for m in msgs])

    consumer = bus.Consumer(js, spec, one, batch_handler=many)
    await consumer.start()
    return consumer


async def journey_consumer(js: JetStreamContext, processor: Processor) -> bus.Consumer:
    spec = bus.ConsumerSpec(
        stream=JOURNEYS.name, durable="runtime-journeys", filter_subject="journeys.changed",
        batch=10,
    )  # fmt: skip

    async def one(msg: Msg) -> None:
        change = bus.decode(msg)
        if not isinstance(change, dict) or "journey_id" not in change:
            raise bus.Poison("not a journey change")
        if change.get("change") in ("stopped", "resumed"):
            await processor.apply_change(
                str(change["workspace_id"]), str(change["journey_id"]), str(change["change"])
            )

    consumer = bus.Consumer(js, spec, one)
    await consumer.start()
    return consumer
