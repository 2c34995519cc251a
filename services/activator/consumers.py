"""The activator's NATS handlers: ``activations.requested``, each fetched batch decided and
stored in one transaction; ``timers.release`` (quiet-hours timers the scheduler
released), each batch of held deliveries made due in one transaction; and
``activations.erase`` (deleted profiles). A message that does
not fit its contract is poison (dead-lettered with the reason); a designer outage is not:
the batch is retried with backoff."""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from services.activator.erasures import Erasures
from services.activator.holds import Releases
from services.activator.intake import Intake
from services.activator.schemas import ActivationRequested
from services.activator.settings import ActivatorSettings
from shared import bus, erasure
from shared.timers import RELEASE_SUBJECTS, TimerFired, subject_workspace
from shared.topology import ACTIVATIONS, TIMERS

SUBJECT_PREFIX = "activations.requested."
SUBJECTS = SUBJECT_PREFIX + ">"


def parse(msg: Msg) -> ActivationRequested:
    try:
        request = ActivationRequested.model_validate_json(msg.data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)[:3]
        raise bus.Poison(f"not an activation request: {errors}") from exc
    if msg.subject != SUBJECT_PREFIX + request.workspace_id:
        raise bus.Poison(f"workspace {request.workspace_id!r} is not that of {msg.subject}")
    return request


async def start_intake(
    js: JetStreamContext,
    intake: Intake,
    settings: ActivatorSettings,
    metrics: bus.ConsumerMetrics,
) -> bus.Consumer:
    spec = bus.ConsumerSpec(
        stream=ACTIVATIONS.name,
        durable=settings.consumer_durable,
        filter_subject=SUBJECTS,
        batch=settings.intake_batch,
        max_deliver=settings.intake_max_deliver,
    )

    async def one(msg: Msg) -> None:
        await intake.take([parse(msg)])

    async def many(msgs: list[Msg]) -> None:
        await intake.take([parse(m) for m in msgs])

    consumer = bus.Consumer(js, spec, one, metrics, batch_handler=many)
    await consumer.start()
    return consumer


def parse_release(msg: Msg) -> TimerFired:
    try:
        fired = TimerFired.model_validate_json(msg.data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)[:3]
        raise bus.Poison(f"not a released timer: {errors}") from exc
    if subject_workspace(msg.subject) != fired.workspace_id:
        raise bus.Poison(f"workspace {fired.workspace_id!r} is not that of {msg.subject}")
    return fired


async def start_releases(
    js: JetStreamContext,
    releases: Releases,
    settings: ActivatorSettings,
    metrics: bus.ConsumerMetrics,
) -> bus.Consumer:
    spec = bus.ConsumerSpec(
        stream=TIMERS.name,
        durable=settings.release_durable,
        filter_subject=RELEASE_SUBJECTS,
        batch=settings.intake_batch,
    )

    async def one(msg: Msg) -> None:
        await releases.take([parse_release(msg)])

    async def many(msgs: list[Msg]) -> None:
        await releases.take([parse_release(m) for m in msgs])

    consumer = bus.Consumer(js, spec, one, metrics, batch_handler=many)
    await consumer.start()
    return consumer


def parse_erasure(msg: Msg) -> erasure.ProfileErased:
    try:
        erased = erasure.ProfileErased.model_validate_json(msg.data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)[:3]
        raise bus.Poison(f"not a profile erasure: {errors}") from exc
    if msg.subject != erased.subject:
        raise bus.Poison(f"workspace {erased.workspace_id!r} is not that of {msg.subject}")
    return erased


async def start_erasures(
    js: JetStreamContext,
    erasures: Erasures,
    settings: ActivatorSettings,
    metrics: bus.ConsumerMetrics,
) -> bus.Consumer:
    spec = bus.ConsumerSpec(
        stream=ACTIVATIONS.name,
        durable=settings.erase_durable,
        filter_subject=erasure.SUBJECTS,
        batch=settings.intake_batch,
    )

    async def one(msg: Msg) -> None:
        await erasures.take([parse_erasure(msg)])

    async def many(msgs: list[Msg]) -> None:
        await erasures.take([parse_erasure(m) for m in msgs])

    consumer = bus.Consumer(js, spec, one, metrics, batch_handler=many)
    await consumer.start()
    return consumer
