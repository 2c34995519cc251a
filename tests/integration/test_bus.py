"""The bus against a real NATS JetStream: dedup, redelivery, dead letters, retries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from shared import bus
from shared.topology import DEADLETTER, StreamSpec, dead_letter_subject
from tests.conftest import Servers
from tests.helpers import eventually


@pytest.fixture
async def stream(nc: NATS) -> AsyncIterator[StreamSpec]:
    """A stream of this test's own, so tests never see each other's messages."""
    tag = uuid.uuid4().hex[:10]
    spec = StreamSpec(f"T_{tag}", (f"t{tag}.>",), "test stream")
    js = nc.jetstream()
    await bus.ensure_streams(js, [spec, DEADLETTER])
    yield spec
    await js.delete_stream(spec.name)


def subject(spec: StreamSpec, leaf: str = "x") -> str:
    return spec.subjects[0].replace(">", leaf)


def consumer_spec(spec: StreamSpec, **overrides: float) -> bus.ConsumerSpec:
    base = {"max_deliver": 3, "ack_wait_s": 1.0, "retry_base_s": 0.05, "retry_max_s": 0.2}
    base.update(overrides)
    return bus.ConsumerSpec(
        stream=spec.name,
        durable=f"c_{uuid.uuid4().hex[:8]}",
        filter_subject=spec.subjects[0],
        **base,  # type: ignore[arg-type]
    )


async def dead_letters(js: JetStreamContext, spec: bus.ConsumerSpec) -> list[Msg]:
    sub = await js.pull_subscribe(
        dead_letter_subject(spec.stream, spec.durable), stream=DEADLETTER.name
    )
    try:
        return await sub.fetch(10, timeout=0.5)
    except TimeoutError:  # nats-py raises either its own subclass or the plain one
        return []
    finally:
        await sub.unsubscribe()


async def test_same_msg_id_is_stored_once(nc: NATS, stream: StreamSpec) -> None:
    js = nc.jetstream()
    first = await bus.publish(js, subject(stream), {"n": 1}, msg_id="evt-1")
    second = await bus.publish(js, subject(stream), {"n": 1}, msg_id="evt-1")
    other = await bus.publish(js, subject(stream), {"n": 2}, msg_id="evt-2")

    assert not first.duplicate
    assert second.duplicate
    assert second.seq == first.seq
    assert not other.duplicate
    assert (await js.stream_info(stream.name)).state.messages == 2


async def test_unacked_message_is_redelivered_after_consumer_dies(
    servers: Servers, nc: NATS, stream: StreamSpec
) -> None:
    js = nc.jetstream()
    spec = consumer_spec(stream, ack_wait_s=1.0)
    await bus.publish(js, subject(stream), {"n": 1}, msg_id="m-1")

    doomed = await bus.connect(servers.nats_url, "doomed")
    sub = await doomed.jetstream().pull_subscribe(
        spec.filter_subject, durable=spec.durable, stream=spec.stream,
        config=bus.Consumer(js, spec, _never).config(),
    )  # fmt: skip
    taken = await sub.fetch(1, timeout=5)
    assert taken[0].metadata.num_delivered == 1
    await doomed.close()  # dies holding the message, never acks

    received: list[Msg] = []

    async def handler(msg: Msg) -> None:
        received.append(msg)

    survivor = bus.Consumer(js, spec, handler)
    await survivor.start()
    try:
        await eventually(lambda: _ready(received), "redelivery to the surviving consumer")
    finally:
        await survivor.stop()
    assert bus.decode(received[0]) == {"n": 1}
    assert received[0].metadata.num_delivered == 2


async def test_a_last_delivery_lost_with_a_crashed_consumer_comes_back(
    servers: Servers, nc: NATS, stream: StreamSpec
) -> None:
    """The server must not give up at the consumer's limit: it is the consumer that
    dead-letters, so a delivery no consumer saw to the end is made again."""
    js = nc.jetstream()
    spec = consumer_spec(stream, max_deliver=2, ack_wait_s=1.0)
    await bus.publish(js, subject(stream), {"n": 1}, msg_id="m-1")
    for delivery in range(1, spec.max_deliver + 1):
        doomed = await bus.connect(servers.nats_url, "doomed")
        sub = await doomed.jetstream().pull_subscribe(
            spec.filter_subject, durable=spec.durable, stream=spec.stream,
            config=bus.Consumer(js, spec, _never).config(),
        )  # fmt: skip
        taken = await sub.fetch(1, timeout=5)
        assert taken[0].metadata.num_delivered == delivery
        await doomed.close()  # dies holding the message, never acks

    received: list[Msg] = []

    async def handler(msg: Msg) -> None:
        received.append(msg)

    survivor = bus.Consumer(js, spec, handler)
    await survivor.start()
    try:
        await eventually(lambda: _ready(received), "redelivery after the limit", within_s=15)
    finally:
        await survivor.stop()
    assert received[0].metadata.num_delivered == spec.max_deliver + 1


async def test_poison_goes_to_dead_letter_with_reason_and_stream_moves_on(
    nc: NATS, stream: StreamSpec
) -> None:
    js = nc.jetstream()
    spec = consumer_spec(stream)
    handled: list[object] = []

    async def handler(msg: Msg) -> None:
        handled.append(bus.decode(msg))

    consumer = bus.Consumer(js, spec, handler)
    await consumer.start()
    try:
        await js.publish(subject(stream, "bad"), b"\xff{not json", headers={bus.MSG_ID: "bad"})
        await bus.publish(js, subject(stream, "good"), {"ok": True}, msg_id="good")
        await eventually(lambda: _ready(handled), "the good message after the poison one")
        dead = await eventually(lambda: dead_letters(js, spec), "the dead letter")
    finally:
        await consumer.stop()

    assert handled == [{"ok": True}]
    assert len(dead) == 1
    headers = dead[0].headers or {}
    assert headers[bus.DEAD_REASON].startswith("undecodable JSON")
    assert headers[bus.DEAD_SUBJECT] == subject(stream, "bad")
    assert dead[0].data == b"\xff{not json"


async def test_failing_handler_is_retried_then_dead_lettered(nc: NATS, stream: StreamSpec) -> None:
    js = nc.jetstream()
    spec = consumer_spec(stream, max_deliver=3)
    attempts: list[int] = []

    async def handler(msg: Msg) -> None:
        attempts.append(msg.metadata.num_delivered)
        raise RuntimeError("provider down")

    consumer = bus.Consumer(js, spec, handler)
    await consumer.start()
    try:
        await bus.publish(js, subject(stream), {"n": 1}, msg_id="m-1")
        dead = await eventually(lambda: dead_letters(js, spec), "the dead letter")
    finally:
        await consumer.stop()

    assert attempts == [1, 2, 3]
    reason = (dead[0].headers or {})[bus.DEAD_REASON]
    assert reason == "failed 3 deliveries: RuntimeError: provider down"


async def test_transient_failure_is_retried_until_it_succeeds(nc: NATS, stream: StreamSpec) -> None:
    js = nc.jetstream()
    spec = consumer_spec(stream, max_deliver=5)
    attempts: list[int] = []

    async def handler(msg: Msg) -> None:
        attempts.append(msg.metadata.num_delivered)
        if len(attempts) < 3:
            raise ConnectionError("flaky")

    consumer = bus.Consumer(js, spec, handler)
    await consumer.start()
    try:
        await bus.publish(js, subject(stream), {"n": 1}, msg_id="m-1")
        await eventually(lambda: _ready(attempts, 3), "the third, successful attempt")
        info = await eventually(lambda: _all_acked(js, spec), "the ack")
    finally:
        await consumer.stop()

    assert info
    assert await dead_letters(js, spec) == []


async def test_an_ordered_consumer_lets_no_message_overtake_one_being_retried(
    nc: NATS, stream: StreamSpec
) -> None:
    """A failed batch handled one by one: the message that fails holds back those after it,
    even when they would succeed now."""
    js = nc.jetstream()
    for n in range(1, 6):
        await bus.publish(js, subject(stream), {"n": n}, msg_id=f"o-{n}")
    spec = consumer_spec(stream, max_deliver=10, batch=5, max_ack_pending=5, ordered=True)
    applied: list[int] = []
    failed_once: set[int] = set()

    async def one(msg: Msg) -> None:
        n = bus.decode(msg)["n"]
        if n == 3 and n not in failed_once:
            failed_once.add(n)
            raise ConnectionError("the database went away for a moment")
        applied.append(n)

    async def many(msgs: list[Msg]) -> None:
        raise ConnectionError("the batch met the same moment")

    consumer = bus.Consumer(js, spec, one, batch_handler=many)
    await consumer.start()
    try:
        await eventually(lambda: _ready(applied, 5), "all five applied")
    finally:
        await consumer.stop()
    assert applied == [1, 2, 3, 4, 5]


async def test_an_outage_is_waited_out_past_max_deliver(nc: NATS, stream: StreamSpec) -> None:
    js = nc.jetstream()
    spec = consumer_spec(stream, max_deliver=2)
    attempts: list[int] = []

    async def handler(msg: Msg) -> None:
        attempts.append(msg.metadata.num_delivered)
        if len(attempts) <= 2 * spec.max_deliver:
            raise OSError("Connect call failed ('127.0.0.1', 5432)")

    consumer = bus.Consumer(js, spec, handler)
    await consumer.start()
    try:
        await bus.publish(js, subject(stream), {"n": 1}, msg_id="m-1")
        await eventually(lambda: _all_acked(js, spec), "the ack after the outage")
    finally:
        await consumer.stop()

    assert attempts == list(range(1, 2 * spec.max_deliver + 2))
    assert await dead_letters(js, spec) == []


async def test_ensure_streams_is_idempotent(nc: NATS, stream: StreamSpec) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js, [stream])
    await bus.ensure_streams(js, [stream])
    info = await js.stream_info(stream.name)
    assert info.config.subjects == list(stream.subjects)


async def _never(_msg: Msg) -> None:
    raise AssertionError("not called")


async def _ready(items: list[object] | list[Msg] | list[int], n: int = 1) -> bool:
    return len(items) >= n


async def _all_acked(js: JetStreamContext, spec: bus.ConsumerSpec) -> bool:
    info = await js.consumer_info(spec.stream, spec.durable)
    return info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_trickle_is_handed_over_without_waiting_for_the_batch_to_fill(
    nc: NATS, stream: StreamSpec
) -> None:
    """A message comes back as soon as it arrived, while its pull request (a batch of 100,
    open a minute) is still open: a fetch that waited for the batch to fill or the request
    to expire would hand it over only once the request was over."""

    async def ignore(msg: Msg) -> None:
        return None

    js = nc.jetstream()
    spec = consumer_spec(stream)
    await js.add_consumer(spec.stream, bus.Consumer(js, spec, ignore).config())
    sub = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
    fetcher = bus.ReadyFetcher(sub, batch=100, expires_s=60)
    try:
        await bus.publish(js, subject(stream), {"n": 1}, msg_id="t-1")
        (first,) = await fetcher.fetch(timeout_s=30)
        assert fetcher.delivering()  # the batch of 100 is not full, the request still open
        for n in (2, 3):
            await bus.publish(js, subject(stream), {"n": n}, msg_id=f"t-{n}")
        later = await fetcher.fetch(timeout_s=30)
        later += [] if len(later) == 2 else await fetcher.fetch(timeout_s=30)
        assert [bus.decode(m)["n"] for m in (first, *later)] == [1, 2, 3]
        for msg in (first, *later):
            await msg.ack()
    finally:
        await sub.unsubscribe()
