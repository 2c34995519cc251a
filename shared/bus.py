"""NATS JetStream: connection, stream setup, publishing with dedup ids, and a consumer loop.

The consumer's ack rules are explicit:
- the handler returns            -> ack (after the handler committed its work);
- the handler raises ``Poison``  -> the message goes to the dead-letter stream with the
  reason, then ``term()`` so it is never redelivered;
- anything else it raises        -> ``nak`` with exponential backoff, until ``max_deliver``
  deliveries; the last failure is dead-lettered with its error as the reason;
- it raises because a dependency cannot be reached (``shared.outages.is_outage``: the
  database, NATS or another service down) -> ``nak`` with backoff however many times: the
  message is not at fault, so an outage longer than the retries dead-letters nothing.
A consumer that dies without acking leaves its messages to be redelivered after ``ack_wait``.
The server itself never gives up on a message (its ``max_deliver`` is unlimited): were it
to stop at the consumer's limit, a last delivery lost with a crashed process would drop
the message without a dead-letter record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, PubAck, StorageType, StreamConfig
from prometheus_client import CollectorRegistry, Counter

from shared.logging import bind_correlation, correlation_headers, get_logger
from shared.outages import is_outage
from shared.topology import ALL_STREAMS, StreamSpec, dead_letter_subject

log = get_logger(__name__)

MSG_ID = "Nats-Msg-Id"
DEAD_REASON = "Waypost-Dead-Reason"
DEAD_SUBJECT = "Waypost-Original-Subject"
DEAD_SEQ = "Waypost-Original-Seq"
DEAD_DELIVERIES = "Waypost-Deliveries"
# Set on a dead-letter record whose original body did not fit beside its headers: the
# body's size; the record then carries the headers only.
DEAD_DROPPED = "Waypost-Body-Dropped"
# Room a dead-letter record leaves for the headers publishing adds (its id, the request and
# trace ids).
COPY_HEADROOM = 1024
PULL_EXPIRES_S = 1.0  # how long one pull request stays open at the server
EXPIRY_GRACE_S = 0.25  # how much later than here the server may still deliver to it


class Poison(Exception):
    """A message that can never be processed; it is dead-lettered with this reason."""


class TooLarge(Poison):
    """A message larger than the server's ``max_payload``: it can never be published.

    Sending it anyway would not just fail: a NATS server closes the connection of a client
    that sends more than its limit, which would take every other publish with it. A handler
    whose work would publish such a message is given poison, so it is dead-lettered at once.
    """


def header_bytes(headers: Mapping[str, str] | None) -> int:
    """The size of the header block a client sends with ``headers`` (``NATS/1.0``, each
    ``key: value`` line, the blank line): the server counts it against ``max_payload``."""
    if not headers:
        return 0
    lines = sum(len(k.strip().encode()) + len(v.strip().encode()) + 4 for k, v in headers.items())
    return len(b"NATS/1.0\r\n") + lines + 2


def max_payload(js: JetStreamContext) -> int:
    """The largest message (headers and body) the connected server takes."""
    return int(js._nc.max_payload)


def wire_size(data: bytes, headers: Mapping[str, str] | None) -> int:
    return len(data) + header_bytes(headers)


def check_size(js: JetStreamContext, subject: str, data: bytes, headers: Mapping[str, str]) -> None:
    """:class:`TooLarge` if the server would refuse the message."""
    size, limit = wire_size(data, headers), max_payload(js)
    if size > limit:
        raise TooLarge(f"a message to {subject} is {size} bytes; the server takes {limit} at most")


def fitting_copy(
    js: JetStreamContext, data: bytes, headers: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    """A dead-letter record that can be published: the original body when it fits beside
    ``headers``, else the headers alone and the body's size in :data:`DEAD_DROPPED`."""
    if wire_size(data, headers) + COPY_HEADROOM <= max_payload(js):
        return data, headers
    return b"", {**headers, DEAD_DROPPED: str(len(data))}


async def connect(url: str, name: str) -> NATS:
    """Connect with unbounded reconnects; a NATS restart pauses work, it does not end it."""
    nc = NATS()

    async def on_disconnect() -> None:
        if not (nc.is_closed or nc.is_draining):
            log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        log.info("nats.reconnected")

    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc))

    await nc.connect(
        servers=[u.strip() for u in url.split(",") if u.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
    )
    return nc


async def ensure_streams(
    js: JetStreamContext, specs: Iterable[StreamSpec] = ALL_STREAMS, replicas: int = 1
) -> None:
    """Create or update each stream; safe to call from every replica at every start."""
    for spec in specs:
        config = StreamConfig(
            name=spec.name,
            subjects=list(spec.subjects),
            description=spec.description,
            storage=StorageType.FILE,
            max_age=spec.max_age_s,
            duplicate_window=spec.duplicate_window_s,
            num_replicas=replicas,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def decode(msg: Msg) -> Any:
    """JSON body of a message; undecodable bodies are poison."""
    try:
        return json.loads(msg.data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Poison(f"undecodable JSON: {exc}") from exc


async def publish(
    js: JetStreamContext,
    subject: str,
    payload: bytes | Any,
    msg_id: str,
    headers: Mapping[str, str] | None = None,
    ack_timeout_s: float = 5.0,
) -> PubAck:
    """Publish once per ``msg_id``: JetStream drops a repeat inside the duplicate window.
    :class:`TooLarge` (nothing sent) for a message the server would refuse."""
    data = payload if isinstance(payload, bytes) else encode(payload)
    all_headers = {**correlation_headers(), **(headers or {}), MSG_ID: msg_id}
    check_size(js, subject, data, all_headers)
    return await js.publish(subject, data, headers=all_headers, timeout=ack_timeout_s)


class ReadyFetcher:
    """Pulls from a durable consumer and hands over messages as soon as there are any.

    ``PullSubscription.fetch(n)`` waits, once its first message arrived on a lingering pull,
    for the other ``n - 1`` or the timeout: a trickle of messages waits up to the whole
    timeout to fill a batch. Here one pull request of ``batch`` messages is kept open at a
    time and whatever of it has arrived is taken at once (at least one message), so a
    message waits only while the batch before it is handled, and batches grow by
    themselves when messages come faster than they are handled.
    """

    def __init__(
        self, sub: JetStreamContext.PullSubscription, batch: int, expires_s: float
    ) -> None:
        self._sub = sub
        self._batch = batch
        self._expires_s = expires_s
        self._open_until = 0.0  # monotonic time the open pull request expires
        self._left = 0  # messages the open pull request may still deliver

    def delivering(self) -> bool:
        """Whether messages delivered here are waiting, or the open request may bring more:
        until a little after it expires here, since the server counts its expiry from when
        the request reached it."""
        if not self._core._pending_queue.empty():
            return True
        if self._left <= 0:
            return False
        return asyncio.get_running_loop().time() < self._open_until + EXPIRY_GRACE_S

    async def fetch(self, timeout_s: float) -> list[Msg]:
        """At least one message, at most ``batch``, asking for more whenever the open
        request is over; ``TimeoutError`` after ``timeout_s``."""
        return await self._next(asyncio.get_running_loop().time() + timeout_s, more=True)

    async def rest(self) -> AsyncIterator[list[Msg]]:
        """What is delivered here already and what the open request still brings, batch by
        batch, asking for nothing more; it ends once the request is over."""
        while self.delivering():
            try:
                yield await self._next(self._open_until + EXPIRY_GRACE_S, more=False)
            except TimeoutError:
                return

    async def _next(self, deadline: float, more: bool) -> list[Msg]:
        msgs = self._take_queued(self._batch)
        if msgs:
            return msgs
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if now >= deadline or (not more and self._left <= 0):
                raise TimeoutError
            if more and (self._left <= 0 or now >= self._open_until):
                await self._request(now)
            until = min(deadline, self._open_until) if more else deadline
            try:
                msg = await self._core.next_msg(timeout=max(until - loop.time(), 0.001))
            except nats.errors.TimeoutError:
                continue
            if self._settle(msg):
                return [msg, *self._take_queued(self._batch - 1)]

    @property
    def _core(self) -> Any:
        return self._sub._sub  # the inbox subscription the server delivers the pull to

    async def _request(self, now: float) -> None:
        request = {"batch": self._batch, "expires": int(self._expires_s * 1e9)}
        await self._sub._nc.publish(
            self._sub._nms, json.dumps(request).encode(), self._sub._deliver
        )
        self._open_until = now + self._expires_s
        self._left = self._batch

    def _settle(self, msg: Msg) -> bool:
        """Whether ``msg`` is a message to handle; a status ends the open request (but a
        heartbeat)."""
        status = JetStreamContext.is_status_msg(msg)
        if not status:
            self._left -= 1
            return True
        if status != "100":  # 100 is an idle heartbeat; 404/408/409 end a pull request
            self._left = 0
        return False

    def _take_queued(self, most: int) -> list[Msg]:
        queue = self._core._pending_queue
        msgs: list[Msg] = []
        while len(msgs) < most and not queue.empty():
            msg = queue.get_nowait()
            self._core._pending_size -= len(msg.data)
            if self._settle(msg):
                msgs.append(msg)
        return msgs


Handler = Callable[[Msg], Awaitable[None]]
# A batch handler may name messages of the batch it could not use (index -> reason): those
# are dead-lettered and the rest acked. Raising instead retries the batch one by one.
BatchHandler = Callable[[list[Msg]], Awaitable[Mapping[int, str] | None]]


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subject: str
    max_deliver: int = 5
    ack_wait_s: float = 30.0
    batch: int = 100
    max_ack_pending: int = 10_000
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0
    # In order: when a failed batch is handled again one message at a time, the first
    # message to be retried holds back the rest (retried with it), so none overtakes it.
    ordered: bool = False


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["stream", "consumer"]
        self.handled = Counter(
            "waypost_bus_messages_handled_total", "Messages acked", labels, registry=registry
        )
        self.retried = Counter(
            "waypost_bus_messages_retried_total", "Messages nak'ed", labels, registry=registry
        )
        self.dead = Counter(
            "waypost_bus_messages_dead_lettered_total",
            "Messages dead-lettered",
            labels,
            registry=registry,
        )


class Consumer:
    """A durable pull consumer running ``handler`` for each message with explicit acks."""

    def __init__(
        self,
        js: JetStreamContext,
        spec: ConsumerSpec,
        handler: Handler,
        metrics: ConsumerMetrics | None = None,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        """``batch_handler``, when given, takes each fetched batch at once (one transaction
        for many messages); if it raises, the batch is handled again one message at a
        time with ``handler``, so one bad message cannot hold the others back."""
        self._js = js
        self.spec = spec
        self._handler = handler
        self._batch_handler = batch_handler
        self._metrics = metrics
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._fetcher: ReadyFetcher | None = None

    def config(self) -> ConsumerConfig:
        s = self.spec
        return ConsumerConfig(
            name=s.durable,
            durable_name=s.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait_s,
            max_deliver=-1,  # the consumer dead-letters; see the module's docstring
            filter_subject=s.filter_subject,
            max_ack_pending=s.max_ack_pending,
        )

    async def start(self) -> None:
        # Created, or updated to this configuration if an earlier version made it.
        await self._js.add_consumer(self.spec.stream, self.config())
        self._sub = await self._js.pull_subscribe_bind(
            durable=self.spec.durable, stream=self.spec.stream
        )
        self._fetcher = ReadyFetcher(self._sub, self.spec.batch, PULL_EXPIRES_S)
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.spec.durable}")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop after the batch in hand is handled and acked (cancel it past ``grace_s``)."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=grace_s)
            except TimeoutError:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _run(self) -> None:
        assert self._fetcher is not None
        while not self._stopping.is_set():
            try:
                msgs = await self._fetcher.fetch(timeout_s=1.0)
            except TimeoutError:  # nats.errors.TimeoutError is one too: nothing to do now
                continue
            except Exception as exc:
                # The loop must outlive any fetch failure (NATS restarting, a slow server).
                log.warning("bus.fetch_failed", consumer=self.spec.durable, error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            await self._handle_or_log(msgs)
        # What the open pull request still delivers is handled too: left unacked, it would
        # come back only after ack_wait, behind newer messages another replica took.
        try:
            async for msgs in self._fetcher.rest():
                await self._handle_or_log(msgs)
        except Exception as exc:
            log.warning("bus.fetch_failed", consumer=self.spec.durable, error=repr(exc))

    async def _handle_or_log(self, msgs: list[Msg]) -> None:
        try:
            await self._handle(msgs)
        except Exception as exc:
            # An ack that could not be sent: the message comes back after ack_wait.
            log.warning("bus.ack_failed", consumer=self.spec.durable, error=repr(exc))

    async def _handle(self, msgs: list[Msg]) -> None:
        if self._batch_handler is not None and len(msgs) > 1:
            await self.process_batch(msgs)
            return
        await self._one_by_one(msgs)

    async def _one_by_one(self, msgs: list[Msg]) -> None:
        for index, msg in enumerate(msgs):
            retry_in = await self.process(msg)
            if retry_in is not None and self.spec.ordered:
                for later in msgs[index + 1 :]:
                    await later.nak(delay=retry_in)
                await self._hold_back_delivered(retry_in)
                return

    async def _hold_back_delivered(self, delay: float) -> None:
        """After a retry on an ordered consumer, what the open pull request delivered or
        still delivers comes after the retried message: it is retried with it, not handled
        before it."""
        assert self._fetcher is not None
        async for later in self._fetcher.rest():
            for msg in later:
                await msg.nak(delay=delay)

    async def process_batch(self, msgs: list[Msg]) -> None:
        assert self._batch_handler is not None
        try:
            poisoned = await self._batch_handler(msgs) or {}
        except Exception as exc:
            log.warning(
                "bus.batch_failed", consumer=self.spec.durable, size=len(msgs),
                error=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
            await self._one_by_one(msgs)
            return
        for index, msg in enumerate(msgs):
            if index in poisoned:
                await self._dead_letter(msg, poisoned[index])
            else:
                await msg.ack()
        if self._metrics:
            handled = len(msgs) - len(poisoned)
            self._metrics.handled.labels(self.spec.stream, self.spec.durable).inc(handled)

    async def process(self, msg: Msg) -> float | None:
        """Handle one message; None when it is settled (acked or dead-lettered), else the
        seconds until it comes back."""
        bind_correlation(dict(msg.headers or {}))
        labels = (self.spec.stream, self.spec.durable)
        try:
            await self._handler(msg)
        except Poison as exc:
            await self._dead_letter(msg, str(exc))
        except Exception as exc:
            delivered = msg.metadata.num_delivered
            if delivered >= self.spec.max_deliver and not is_outage(exc):
                await self._dead_letter(
                    msg, f"failed {delivered} deliveries: {type(exc).__name__}: {exc}"
                )
                return None
            delay = float(min(self.spec.retry_max_s, self.spec.retry_base_s * 2 ** (delivered - 1)))
            log.warning(
                "bus.handler_failed",
                consumer=self.spec.durable,
                subject=msg.subject,
                delivered=delivered,
                retry_in_s=delay,
                error=f"{type(exc).__name__}: {exc}",
            )
            if self._metrics:
                self._metrics.retried.labels(*labels).inc()
            await msg.nak(delay=delay)
            return delay
        await msg.ack()
        if self._metrics:
            self._metrics.handled.labels(*labels).inc()
        return None

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        meta = msg.metadata
        headers = {
            DEAD_REASON: reason[:1000],
            DEAD_SUBJECT: msg.subject,
            DEAD_SEQ: str(meta.sequence.stream),
            DEAD_DELIVERIES: str(meta.num_delivered),
        }
        subject = dead_letter_subject(self.spec.stream, self.spec.durable)
        dl_id = f"dl:{self.spec.stream}:{self.spec.durable}:{meta.sequence.stream}"
        # The copy carries more headers than the original: it may no longer fit.
        data, headers = fitting_copy(self._js, msg.data, headers)
        try:
            await publish(self._js, subject, data, dl_id, headers)
        except Exception as exc:
            # Not recorded, so not dropped: it comes back after a delay.
            log.error("bus.dead_letter_failed", error=str(exc), subject=msg.subject)
            await msg.nak(delay=self.spec.retry_max_s)
            return
        log.error(
            "bus.dead_lettered", subject=msg.subject, reason=reason, consumer=self.spec.durable
        )
        if self._metrics:
            self._metrics.dead.labels(self.spec.stream, self.spec.durable).inc()
        await msg.term()
