"""Transactional outbox: messages written in the same transaction as the state they
announce, published after commit by a relay, so nothing is published that rolled back
and nothing committed is lost.

Each service that publishes has an ``outbox`` table in its own schema. ``enqueue`` adds a
row inside the caller's transaction; the relay publishes unpublished rows in key order
with a ``Nats-Msg-Id`` per row (a crash between publish and marking only causes a
duplicate that JetStream drops) and marks them. It wakes on ``notify`` after a commit that
wrote rows (only then: a round costs a transaction) and also polls, which covers rows left
by a crashed process. A row that can never be published
is moved aside with the reason (see :class:`OutboxRelay`), never retried at the head.

The relay works on any table with a single-column integer primary key (the order) and a
nullable ``published_at``: ``to_message`` turns a row into what is published. The
gateway's event inbox is such a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck
from sqlalchemy import (
    BigInteger,
    Column,
    CursorResult,
    DateTime,
    Identity,
    Index,
    MetaData,
    Row,
    Select,
    String,
    Table,
    Text,
    all_,
    any_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import bus
from shared.logging import correlation_headers, get_logger
from shared.metrics import RelayMetrics
from shared.topology import dead_letter_subject

log = get_logger(__name__)

# Rows a relay could not publish are recorded on deadletter.RELAY.<schema>-<table>.
DEAD_STREAM = "RELAY"
DEAD_MSG_ID = "Waypost-Original-Msg-Id"
DEAD_ROW = "Waypost-Original-Row"


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("msg_id", String(200), nullable=False),
        Column("subject", String(300), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
        Column("published_at", DateTime(timezone=True)),
        Index("ix_outbox_unpublished", "id", postgresql_where=Column("published_at").is_(None)),
    )


MSG_ID_MAX = 200  # the length of the msg_id column


def fit_msg_id(msg_id: str) -> str:
    """``msg_id`` if it fits the column; else a prefix of it and a digest of the whole: the
    same for the same id, so JetStream still drops a repeat, and still readable."""
    if len(msg_id) <= MSG_ID_MAX:
        return msg_id
    digest = hashlib.sha256(msg_id.encode()).hexdigest()
    return f"{msg_id[: MSG_ID_MAX - len(digest) - 1]}~{digest}"


async def enqueue(
    session: AsyncSession, table: Table, subject: str, payload: dict[str, Any], msg_id: str
) -> None:
    await session.execute(
        insert(table).values(subject=subject, payload=payload, msg_id=fit_msg_id(msg_id))
    )


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: where, its dedup id, its bytes."""

    subject: str
    msg_id: str
    data: bytes


ToMessage = Callable[[Row[Any]], Outgoing]


def outbox_message(row: Row[Any]) -> Outgoing:
    """A row of an :func:`outbox_table`, its payload read as JSON text (the relay casts it):
    published as it is stored, not decoded and encoded again."""
    return Outgoing(row.subject, row.msg_id, row.payload.encode())


async def publish_each(
    js: JetStreamContext, messages: Sequence[Outgoing], ack_timeout_s: float
) -> list[Exception | None]:
    """Publish ``messages`` pipelined, in order; for each, None once acknowledged, else what
    went wrong.

    One connection sends them in order, so the stream stores them in order. What was not
    acknowledged is sent again later (and dropped by JetStream as a duplicate if it did
    arrive).
    """
    context = correlation_headers()
    acks: list[asyncio.Future[PubAck]] = []
    unsent: Exception = ConnectionError("not sent")
    try:
        for m in messages:
            headers = {**context, bus.MSG_ID: m.msg_id}
            acks.append(await js.publish_async(m.subject, m.data, headers=headers))
    except Exception as exc:
        unsent = exc
        log.warning("outbox.publish_failed", error=f"{type(exc).__name__}: {exc}")
    if acks:
        _done, late = await asyncio.wait(acks, timeout=ack_timeout_s)
        for future in late:
            future.cancel()  # frees its slot in the client's in-flight window
    results: list[Exception | None] = []
    for future in acks:
        if future.cancelled():
            results.append(TimeoutError(f"no acknowledgement within {ack_timeout_s} s"))
        else:
            error = future.exception()
            results.append(error if isinstance(error, Exception) or error is None else unsent)
    return results + [unsent] * (len(messages) - len(acks))


async def refused(js: JetStreamContext, subject: str, error: Exception) -> bool:
    """Whether the server refused this very message rather than being unreachable, slow or
    unavailable for everyone: an error acknowledgement (a stream limit, say), or no answer
    to its subject because no stream takes it (asked of the server, so a stream between
    leaders is not mistaken for one that does not exist)."""
    if isinstance(error, nats.js.errors.ServiceUnavailableError):
        return False
    if isinstance(error, nats.js.errors.NoStreamResponseError | nats.errors.NoRespondersError):
        try:
            await js.find_stream_name_by_subject(subject)
        except nats.js.errors.NotFoundError:
            return True
        except Exception:
            return False
        return False
    return isinstance(error, nats.js.errors.APIError)


def relay_lock_key(table: Table) -> int:
    """The advisory lock an exclusive relay of ``table`` holds while it works."""
    return zlib.crc32(f"waypost-relay-{table.fullname}".encode())


@dataclass
class _Failing:
    """A row the stream did not take while it took others: its order key waits behind it."""

    order_key: str
    since: float
    attempts: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class _Found:
    key: Any  # the row's primary key
    order_key: str
    message: Outgoing


# Whole-table order is not needed between profiles (or subjects): the rows of one order key
# stay in order, and a row that cannot go out holds back only the later rows of its key.
SUBJECT_ORDER = "subject"


class OutboxRelay:
    """Publishes a table's unpublished rows in key order, then marks them published.

    With ``exclusive``, one relay at a time (in any process) works on the table, taking a
    transaction-scoped advisory lock, so rows reach the stream in key order. Otherwise
    relays share the rows with ``SKIP LOCKED`` and order holds within each batch.
    With ``keep_published_s``, published rows older than that are deleted now and then.

    No row can hold the table. A row larger than the server's ``max_payload`` is never
    sent (the server would close the connection) but moved aside at once: a dead-letter
    record of it is published on ``deadletter.RELAY.<schema>-<table>`` with the reason
    (the body too when it fits) and the row is marked done, so no relay meets it again. So
    is a row no message can be made of. A row the server refuses (an error acknowledgement
    such as a stream limit; no stream for its subject, asked of the server) is retried each
    turn and moved aside the same way once refused for ``give_up_s`` and at least
    ``give_up_attempts`` turns; meanwhile the later rows of its ``order_key`` (an SQL
    expression over the table's columns: the subject, or the profile) wait behind it and
    every other row goes on. A failure that is not the message's own (no answer, NATS away
    or unavailable) counts against no row: the rows wait for NATS, as everything does.
    Acknowledged rows are marked whatever failed before them.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        table: Table,
        js: JetStreamContext,
        poll_s: float = 1.0,
        batch: int = 500,
        *,
        to_message: ToMessage = outbox_message,
        exclusive: bool = False,
        ack_timeout_s: float = 10.0,
        keep_published_s: float | None = None,
        on_published: Callable[[int], None] | None = None,
        pool: asyncpg.Pool | None = None,
        order_key: str = SUBJECT_ORDER,
        give_up_s: float = 60.0,
        give_up_attempts: int = 3,
        metrics: RelayMetrics | None = None,
    ) -> None:
        """With ``pool`` (an :func:`outbox_table` only), rows are read, published and marked
        in plain asyncpg: no ORM rows, the payload published as the text it is stored as."""
        if pool is not None and to_message is not outbox_message:
            raise ValueError("a pool relays outbox tables only (the default to_message)")
        self._sessions = sessions
        self._pool = pool
        self._table = table
        (self._key,) = table.primary_key.columns
        self._js = js
        self._poll_s = poll_s
        self._batch = batch
        self._to_message = to_message
        self._exclusive = exclusive
        self._ack_timeout_s = ack_timeout_s
        self._keep_published_s = keep_published_s
        self._on_published = on_published
        self._order_key = order_key
        self._give_up_s = give_up_s
        self._give_up_attempts = give_up_attempts
        self._metrics = metrics
        self._lock_key = relay_lock_key(table)
        # The default message is an outbox row's payload: read it as text, as it is stored.
        self._payload_as_text = to_message is outbox_message
        self._wake = asyncio.Event()
        self._pruned_at = 0.0
        self._failing: dict[Any, _Failing] = {}
        self._settled = 0

    def notify(self) -> None:
        """Call after committing rows: publish now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        woken_by = "poll"
        while True:
            try:
                while await self._turn(woken_by) == self._batch:
                    woken_by = "more"
                await self._prune_now_and_then()
            except Exception as exc:
                log.warning("outbox.relay_failed", error=f"{type(exc).__name__}: {exc}")
            woken_by = "notify"
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)
            except TimeoutError:
                woken_by = "poll"

    async def relay_once(self) -> int:
        """Publish one batch; returns how many rows it settled (published or moved aside)."""
        await self._turn()
        return self._settled

    async def _turn(self, woken_by: str = "poll") -> int:
        """One batch; how many rows it found (a full batch when more may be waiting), or
        none when it settled nothing (retrying at once would only meet the same rows).

        A notify before this point is answered by this round, which reads after it: only
        one during the round (its rows may have committed too late to be read) makes
        another, so a burst of commits costs no round that finds nothing."""
        self._wake.clear()
        if self._pool is not None:
            settled, published, found = await self._relay_raw(self._pool)
        else:
            settled, published, found = await self._relay_orm()
        if settled < found:
            log.warning("outbox.partly_published", table=self._table.fullname, rows=found,
                        published=published)  # fmt: skip
        if published and self._on_published is not None:
            self._on_published(published)
        if self._metrics is not None:
            found_any = "rows" if found else "none"
            self._metrics.rounds.labels(self._table.fullname, woken_by, found_any).inc()
        self._settled = settled
        return found if settled else 0

    async def _relay_orm(self) -> tuple[int, int, int]:
        async with self._sessions() as session, session.begin():
            if self._exclusive and not await self._take_turn(session):
                return 0, 0, 0
            rows = (await session.execute(self._unpublished())).all()
            found, unusable = [], []
            for row in rows:
                key = row._mapping[self._key]
                try:
                    found.append(_Found(key, row.order_key, self._to_message(row)))
                except Exception as exc:  # a row no message can be made of must not stay
                    unusable.append((key, row.order_key, f"{type(exc).__name__}: {exc}"))
            published, dead = await self._publish(found)
            for key, order_key, why in unusable:
                row_of = _Found(key, order_key, Outgoing("(none)", f"row:{key}", b""))
                if await self._move_aside(row_of, "unusable", f"no message can be made: {why}"):
                    dead.append(key)
            if published or dead:
                await self._mark(session, published + dead)
        return len(published) + len(dead), len(published), len(rows)

    async def _relay_raw(self, pool: asyncpg.Pool) -> tuple[int, int, int]:
        """The same in plain asyncpg, for an :func:`outbox_table` on a hot path."""
        table, lock = self._table.fullname, "" if self._exclusive else " FOR UPDATE SKIP LOCKED"
        async with pool.acquire() as conn, conn.transaction():
            if self._exclusive and not await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1)", self._lock_key
            ):
                return 0, 0, 0
            failing, held = self._held()
            rows = await conn.fetch(
                f"SELECT id, subject, msg_id, payload::text AS payload, "
                f"({self._order_key})::text AS order_key FROM {table} "
                f"WHERE published_at IS NULL AND (id = ANY($2::bigint[]) "
                f"OR ({self._order_key})::text <> ALL($3::text[])) ORDER BY id LIMIT $1{lock}",
                self._batch, failing, held,
            )  # fmt: skip
            found = [
                _Found(r["id"], r["order_key"],
                       Outgoing(r["subject"], r["msg_id"], r["payload"].encode()))
                for r in rows
            ]  # fmt: skip
            published, dead = await self._publish(found)
            if published or dead:
                await conn.execute(
                    f"UPDATE {table} SET published_at = now() WHERE id = ANY($1::bigint[])",
                    published + dead,
                )
        return len(published) + len(dead), len(published), len(rows)

    def _held(self) -> tuple[list[Any], list[str]]:
        """The rows being retried, and the order keys that wait behind them."""
        return list(self._failing), sorted({f.order_key for f in self._failing.values()})

    async def _publish(self, found: Sequence[_Found]) -> tuple[list[Any], list[Any]]:
        """Publish what can be; the keys of the rows published and of those moved aside."""
        # A row retried before and not found now was published by another relay (or is
        # being published by one): it holds nothing back any more.
        keys = {row.key for row in found}
        for gone in [key for key in self._failing if key not in keys]:
            del self._failing[gone]
        limit, context = bus.max_payload(self._js), correlation_headers()
        sendable: list[_Found] = []
        dead: list[Any] = []
        for row in found:
            m = row.message
            if bus.wire_size(m.data, {**context, bus.MSG_ID: m.msg_id}) > limit:
                why = f"the message is {len(m.data)} bytes; the server takes {limit} at most"
                if await self._move_aside(row, "too_large", why):
                    dead.append(row.key)
            else:
                sendable.append(row)
        results = await publish_each(
            self._js, [row.message for row in sendable], self._ack_timeout_s
        )
        published = [row.key for row, error in zip(sendable, results, strict=True) if error is None]
        for key in published:
            self._failing.pop(key, None)
        now = time.monotonic()
        verdicts: dict[tuple[str, str], bool] = {}  # one question per subject and error
        for row, error in zip(sendable, results, strict=True):
            if error is None:
                continue
            failing = self._failing.setdefault(row.key, _Failing(row.order_key, now))
            refusal = failing.last_error = f"{type(error).__name__}: {error}"
            # An outage (no answer, the server unavailable) counts against no row.
            asked = (row.message.subject, type(error).__name__)
            if asked not in verdicts:
                verdicts[asked] = await refused(self._js, row.message.subject, error)
            if not verdicts[asked]:
                continue
            failing.attempts += 1
            if self._metrics is not None:
                self._metrics.failing.labels(self._table.fullname).inc()
            overdue = now - failing.since >= self._give_up_s
            if failing.attempts >= self._give_up_attempts and overdue:
                reason = f"refused for {now - failing.since:.0f} s: {refusal}"
                if await self._move_aside(row, "refused", reason):
                    dead.append(row.key)
                    del self._failing[row.key]
        return published, dead

    async def _move_aside(self, row: _Found, kind: str, reason: str) -> bool:
        """Publish the dead-letter record of a row that cannot be published; whether it
        was recorded (if not, the row stays and is tried again)."""
        m = row.message
        headers = {
            bus.DEAD_REASON: reason[:1000],
            bus.DEAD_SUBJECT: m.subject,
            DEAD_MSG_ID: m.msg_id,
            DEAD_ROW: f"{self._table.fullname}:{row.key}",
        }
        data, headers = bus.fitting_copy(self._js, m.data, headers)
        subject = dead_letter_subject(DEAD_STREAM, self._table.fullname.replace(".", "-"))
        try:
            await bus.publish(self._js, subject, data, f"dl:relay:{fit_msg_id(m.msg_id)}", headers)
        except Exception as exc:
            log.error("outbox.dead_letter_failed", table=self._table.fullname, row=str(row.key),
                      error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            return False
        log.error("outbox.dead_lettered", table=self._table.fullname, row=str(row.key),
                  subject=m.subject, reason=reason)  # fmt: skip
        if self._metrics is not None:
            self._metrics.dead.labels(self._table.fullname, kind).inc()
        return True

    async def _mark(self, session: AsyncSession, keys: list[Any]) -> None:
        # One array parameter rather than IN (...): the same statement whatever the count.
        marked = bindparam("keys", keys, type_=ARRAY(self._key.type))
        await session.execute(
            update(self._table).where(self._key == any_(marked)).values(published_at=func.now())
        )

    def _unpublished(self) -> Select[Any]:
        columns = [
            cast(c, Text).label(c.name) if c.name == "payload" and self._payload_as_text else c
            for c in self._table.c
        ]
        order_key = cast(literal_column(self._order_key), Text)
        failing, held = self._held()
        query = (
            select(*columns, order_key.label("order_key"))
            .where(self._table.c.published_at.is_(None))
            .where(
                or_(
                    self._key == any_(bindparam("failing", failing, type_=ARRAY(self._key.type))),
                    order_key != all_(bindparam("held", held, type_=ARRAY(Text))),
                )
            )
            .order_by(self._key)
            .limit(self._batch)
        )
        return query if self._exclusive else query.with_for_update(skip_locked=True)

    async def _take_turn(self, session: AsyncSession) -> bool:
        """Whether this relay holds the table until its transaction ends."""
        taken = await session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": self._lock_key}
        )
        return bool(taken)

    async def _prune_now_and_then(self) -> None:
        if self._keep_published_s is None:
            return
        if time.monotonic() - self._pruned_at < min(60.0, self._keep_published_s):
            return
        self._pruned_at = time.monotonic()
        while await self.prune_once() > 0:
            pass

    async def prune_once(self) -> int:
        """Delete the rows published more than ``keep_published_s`` ago among the oldest
        few thousand; looking at the oldest only keeps this cheap however long the table."""
        keep = timedelta(seconds=self._keep_published_s or 0.0)
        t = self._table
        oldest = select(self._key, t.c.published_at).order_by(self._key).limit(self._batch * 10)
        window = oldest.subquery()
        expired = select(window.c[self._key.name]).where(window.c.published_at < func.now() - keep)
        async with self._sessions() as session, session.begin():
            result = await session.execute(delete(t).where(self._key.in_(expired)))
        assert isinstance(result, CursorResult)
        return int(result.rowcount)


@asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    task = asyncio.create_task(relay.run(), name="outbox-relay")
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
