"""The activator's NATS handler: ``activations.requested``, each fetched batch decided and
stored in one transaction. A request that does not fit the contract is poison (dead-lettered
with the reason); a designer outage is not: the batch is retried with backoff."""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from services.activator.intake import Intake
from services.activator.schemas import ActivationRequested
from services.activator.settings import ActivatorSettings
from shared import bus
from shared.topology import ACTIVATIONS

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
