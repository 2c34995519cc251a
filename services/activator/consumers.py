"""The activator's NATS handlers: ``activations.requested``, each fetched batch decided and
stored in one transaction; ``timers.release`` (quiet-hours timers the scheduler
released), each batch of held deliveries made due in one transaction; and
``activations.erase`` (deleted profiles). A message that does not fit its contract is
poison (dead-lettered with the reason); a designer outage is not: the batch is retried
with backoff."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import BaseModel, ValidationError

from services.activator.erasures import Erasures
from services.activator.holds import Releases
from services.activator.intake import Intake
from services.activator.schemas import ActivationRequested
from services.activator.settings import ActivatorSettings
from services.activator.stops import JourneyChanged, Stops
from shared import bus, erasure
from shared.timers import RELEASE_SUBJECTS, TimerFired, release_subject
from shared.topology import ACTIVATIONS, JOURNEYS, TIMERS

SUBJECT_PREFIX = "activations.requested."
SUBJECTS = SUBJECT_PREFIX + ">"

M = TypeVar("M", bound=BaseModel)


def _decode(msg: Msg, model: type[M], what: str) -> M:
    try:
        return model.model_validate_json(msg.data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)[:3]
        raise bus.Poison(f"not {what}: {errors}") from exc


def _same_workspace(msg: Msg, subject: str, workspace_id: str) -> None:
    """The body's workspace is the one the subject names."""
    if subject != msg.subject:
        raise bus.Poison(f"workspace {workspace_id!r} is not that of {msg.subject}")


def parse(msg: Msg) -> ActivationRequested:
    request = _decode(msg, ActivationRequested, "an activation request")
    _same_workspace(msg, SUBJECT_PREFIX + request.workspace_id, request.workspace_id)
    return request


def parse_release(msg: Msg) -> TimerFired:
    fired = _decode(msg, TimerFired, "a released timer")
    _same_workspace(msg, release_subject(fired.workspace_id), fired.workspace_id)
    return fired


def parse_change(msg: Msg) -> JourneyChanged:
    return _decode(msg, JourneyChanged, "a journey change")


def parse_erasure(msg: Msg) -> erasure.ProfileErased:
    erased = _decode(msg, erasure.ProfileErased, "a profile erasure")
    _same_workspace(msg, erased.subject, erased.workspace_id)
    return erased


async def _consume(
    js: JetStreamContext,
    spec: bus.ConsumerSpec,
    parse_one: Callable[[Msg], M],
    take: Callable[[Sequence[M]], Awaitable[None]],
    metrics: bus.ConsumerMetrics,
) -> bus.Consumer:
    """A consumer handing each fetched batch, parsed, to ``take`` (one message at a time
    when the batch fails, so a poison message is dead-lettered alone)."""

    async def one(msg: Msg) -> None:
        await take([parse_one(msg)])

    async def many(msgs: list[Msg]) -> None:
        await take([parse_one(m) for m in msgs])

    consumer = bus.Consumer(js, spec, one, metrics, batch_handler=many)
    await consumer.start()
    return consumer


async def start_intake(
    js: JetStreamContext, intake: Intake, settings: ActivatorSettings,
    metrics: bus.ConsumerMetrics,
) -> bus.Consumer:  # fmt: skip
    spec = bus.ConsumerSpec(
        stream=ACTIVATIONS.name,
        durable=settings.consumer_durable,
        filter_subject=SUBJECTS,
        batch=settings.intake_batch,
        max_deliver=settings.intake_max_deliver,
    )
    return await _consume(js, spec, parse, intake.take, metrics)


async def start_releases(
    js: JetStreamContext, releases: Releases, settings: ActivatorSettings,
    metrics: bus.ConsumerMetrics,
) -> bus.Consumer:  # fmt: skip
    spec = bus.ConsumerSpec(
        stream=TIMERS.name,
        durable=settings.release_durable,
        filter_subject=RELEASE_SUBJECTS,
        batch=settings.intake_batch,
    )
    return await _consume(js, spec, parse_release, releases.take, metrics)


async def start_erasures(
    js: JetStreamContext, erasures: Erasures, settings: ActivatorSettings,
    metrics: bus.ConsumerMetrics,
) -> bus.Consumer:  # fmt: skip
    spec = bus.ConsumerSpec(
        stream=ACTIVATIONS.name,
        durable=settings.erase_durable,
        filter_subject=erasure.SUBJECTS,
        batch=settings.intake_batch,
    )
    return await _consume(js, spec, parse_erasure, erasures.take, metrics)


async def start_stops(
    js: JetStreamContext, stops: Stops, settings: ActivatorSettings,
    metrics: bus.ConsumerMetrics,
) -> bus.Consumer:  # fmt: skip
    spec = bus.ConsumerSpec(
        stream=JOURNEYS.name,
        durable=settings.journeys_durable,
        filter_subject="journeys.changed",
        batch=settings.intake_batch,
    )
    return await _consume(js, spec, parse_change, stops.take, metrics)
