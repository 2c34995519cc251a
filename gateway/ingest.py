"""Ingestion: validate events, make them durable in PostgreSQL, answer, relay them to NATS.

PostgreSQL is the record of accepted events. A request's events go to the group-commit
writer, which puts the events of every request waiting at that moment into one multi-row
INSERT and one commit (fsync), and only then lets each request answer 202. The relay then
publishes committed rows in acceptance order to ``events.<workspace>.<partition>`` with
``Nats-Msg-Id = <workspace>:<event_id>`` and marks them published.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, Path, Request
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainValidator,
    StrictBool,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.models import EventInbox
from gateway.settings import GatewaySettings
from shared import db, outbox
from shared.app import ServiceState, get_state
from shared.clock import Clock
from shared.event_schema import time_problem
from shared.events import PROFILE_UPDATED, AcceptedEvent, EventKind
from shared.identity import Identity
from shared.logging import get_logger, new_id
from shared.metrics import RelayMetrics
from shared.problems import FieldError, ProblemError, invalid, json_path

log = get_logger(__name__)

INGEST = "ingest"
MAX_DEPTH = 32
MAX_EVENT_BYTES = 64 * 1024
# A profile's attributes, as JSON: every message about the profile may carry them, so they
# must stay far below the bus's message limit (1 MiB by default).
MAX_PROFILE_BYTES = 32 * 1024
MAX_BATCH = 1000


@dataclass(frozen=True)
class Limits:
    """How large (JSON bytes) an event may be, and the attributes a profile update or an
    event's traits may give (the runtime also caps the merged profile at the latter)."""

    event_bytes: int = MAX_EVENT_BYTES
    profile_bytes: int = MAX_PROFILE_BYTES


# Schemas

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)


def _rfc3339(value: object) -> datetime:
    """Only RFC 3339 with an offset: a time without one means a different instant to
    every reader, so it is refused rather than guessed."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 time with an offset, e.g. 2026-01-31T09:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise ValueError(f"is not a valid time: {exc}") from None
    # Outside this window a time cannot be stored (or converted to UTC) and would fail the
    # commit it shares with other requests.
    if (problem := time_problem(parsed)) is not None:
        raise ValueError(problem)
    return parsed


def _depth(value: Any) -> int:
    """Levels of objects and arrays in ``value`` (an object of scalars is 1)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return deepest


def _shallow(value: dict[str, Any]) -> dict[str, Any]:
    if _depth(value) > MAX_DEPTH:
        raise ValueError(f"nests deeper than {MAX_DEPTH} levels")
    return value


Timestamp = Annotated[
    datetime, PlainValidator(_rfc3339), WithJsonSchema({"type": "string", "format": "date-time"})
]
JsonObject = Annotated[dict[str, Any], AfterValidator(_shallow)]


class EventIn(BaseModel):
    """An event as partners post it."""

    model_config = ConfigDict(extra="forbid")

    event_id: Name | None = None
    profile_id: Name
    name: Name
    timestamp: Timestamp | None = None
    properties: JsonObject | None = None
    traits: JsonObject | None = None


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attributes: JsonObject = {}
    consent: dict[str, StrictBool] = {}


class ProfileOut(BaseModel):
    profile_id: str
    attributes: dict[str, Any]
    consent: dict[str, bool]


class Accepted(BaseModel):
    accepted: int


class ErrorOut(BaseModel):
    path: str
    message: str


class Rejection(BaseModel):
    index: int
    errors: list[ErrorOut]


class BatchAccepted(Accepted):
    rejected: list[Rejection]


# Validation


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# An escaped UTF-16 surrogate: fine in a pair, unstorable alone.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json(raw: bytes) -> Any:
    """The body as JSON that PostgreSQL can store: what it would refuse (NaN, infinite
    numbers, unpaired surrogates) is refused here, so it cannot fail a shared commit."""
    try:
        value = json.loads(raw, parse_float=_finite, parse_constant=_not_json)
        if _SURROGATE.search(raw):
            json.dumps(value, ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        raise invalid([FieldError("$", "the body is not valid JSON")]) from None
    return value


def _serialized_size(raw: Any) -> int:
    return len(json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode())


def check_event(
    raw: Any, at: tuple[str | int, ...] = (), limits: Limits = Limits()
) -> tuple[EventIn | None, list[FieldError]]:
    """The event in ``raw`` or every problem with it, paths under ``at``."""
    errors: list[FieldError] = []
    event = None
    try:
        event = EventIn.model_validate(raw)
    except ValidationError as exc:
        errors += [
            FieldError(json_path((*at, *e["loc"])), e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
    if isinstance(raw, dict) and (size := _serialized_size(raw)) > limits.event_bytes:
        errors.append(
            FieldError(json_path(at), f"the event is {size} bytes; at most {limits.event_bytes}")
        )
    if event is not None and event.traits:
        errors += _profile_problems(event.traits, (*at, "traits"), limits)
    return (None, errors) if errors else (event, [])


def _profile_problems(
    attributes: dict[str, Any], at: tuple[str | int, ...], limits: Limits
) -> list[FieldError]:
    size = _serialized_size(attributes)
    if size <= limits.profile_bytes:
        return []
    message = f"the attributes are {size} bytes; a profile holds at most {limits.profile_bytes}"
    return [FieldError(json_path(at), message)]


def check_batch(raw: Any) -> list[Any]:
    """The list of raw events of a batch body; 422 if the body is not such a batch."""
    if not isinstance(raw, dict):
        raise invalid([FieldError("$", "must be an object with an 'events' list")])
    errors = [FieldError(key, "Extra inputs are not permitted") for key in raw if key != "events"]
    events = raw.get("events")
    if not isinstance(events, list):
        errors.append(FieldError("events", "must be a list of events"))
    elif not 1 <= len(events) <= MAX_BATCH:
        errors.append(FieldError("events", f"must hold 1 to {MAX_BATCH} events"))
    if errors:
        raise invalid(errors)
    assert isinstance(events, list)
    return events


def check_profile(raw: Any, limits: Limits = Limits()) -> ProfileIn:
    try:
        body = ProfileIn.model_validate(raw)
    except ValidationError as exc:
        raise invalid(
            [
                FieldError(json_path(e["loc"]), e["msg"].removeprefix("Value error, "))
                for e in exc.errors()
            ]
        ) from None
    if problems := _profile_problems(body.attributes, ("attributes",), limits):
        raise invalid(problems)
    return body


# Rows


class InboxRow(NamedTuple):
    """One inbox row, in the column order of the INSERT below."""

    workspace_id: str
    event_id: str
    profile_id: str
    kind: EventKind
    name: str
    timestamp: datetime
    accepted_at: datetime
    properties: str  # JSON text
    traits: str  # JSON text


def _json(value: dict[str, Any] | None) -> str:
    return json.dumps(value or {}, ensure_ascii=False, separators=(",", ":"))


def event_row(workspace_id: str, event: EventIn, now: datetime) -> InboxRow:
    return InboxRow(
        workspace_id, event.event_id or new_id(), event.profile_id, "event", event.name,
        event.timestamp or now, now, _json(event.properties), _json(event.traits),
    )  # fmt: skip


def profile_row(workspace_id: str, profile_id: str, body: ProfileIn, now: datetime) -> InboxRow:
    return InboxRow(
        workspace_id, new_id(), profile_id, "profile", PROFILE_UPDATED, now, now,
        _json({"consent": body.consent}), _json(body.attributes),
    )  # fmt: skip


_COLUMNS = InboxRow._fields
_ARRAY_TYPES = ("text",) * 5 + ("timestamptz",) * 2 + ("text",) * 2
_VALUES = ", ".join(
    f'CAST(u."{c}" AS jsonb)' if c in ("properties", "traits") else f'u."{c}"' for c in _COLUMNS
)
_NAMES = ", ".join(f'"{c}"' for c in _COLUMNS)
_ARRAYS = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(_COLUMNS, _ARRAY_TYPES, strict=True))
# One statement for the whole group: arrays unnested in order, so seq follows that order;
# a repeated (workspace_id, event_id), earlier or in this very group, is skipped.
INSERT_ROWS = text(
    f"INSERT INTO {EventInbox.fullname} ({_NAMES}) "
    f"SELECT {_VALUES} FROM unnest({_ARRAYS}) WITH ORDINALITY AS u({_NAMES}, ord) ORDER BY ord "
    "ON CONFLICT (workspace_id, event_id) DO NOTHING"
)


async def insert_rows(session: AsyncSession, rows: Sequence[InboxRow]) -> None:
    columns = zip(*rows, strict=True)
    await session.execute(INSERT_ROWS, dict(zip(_COLUMNS, map(list, columns), strict=True)))


def inbox_message(row: Row[Any], partitions: int) -> outbox.Outgoing:
    event = AcceptedEvent(
        workspace_id=row.workspace_id, event_id=row.event_id, profile_id=row.profile_id,
        name=row.name, timestamp=row.timestamp, accepted_at=row.accepted_at,
        properties=row.properties, traits=row.traits, kind=row.kind,
    )  # fmt: skip
    return outbox.Outgoing(
        event.subject(partitions), event.msg_id, event.model_dump_json().encode()
    )


# The group-commit writer


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "waypost_ingest_events_accepted_total", "Events committed", registry=registry
        )
        self.rejected = Counter(
            "waypost_ingest_events_rejected_total",
            "Events refused by validation",
            registry=registry,
        )
        self.commit_rows = Histogram(
            "waypost_ingest_commit_rows", "Events per commit", registry=registry,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
        )  # fmt: skip
        self.published = Counter(
            "waypost_ingest_events_published_total", "Events relayed to NATS", registry=registry
        )


@dataclass
class _Waiting:
    rows: Sequence[InboxRow]
    done: asyncio.Future[None]
    since: float


class StoreFailed(ProblemError):
    def __init__(self) -> None:
        super().__init__(503, "Service unavailable", "the events could not be stored; resend them")


class GroupCommitWriter:
    """Many requests, one commit: rows wait at most ``window_s`` (or until ``max_rows``)
    for company, then go in one INSERT and one commit; each request's rows stay together
    and in order, and its ``write`` returns only after the commit."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        window_s: float,
        max_rows: int,
        metrics: IngestMetrics,
        on_commit: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._window_s = window_s
        self._max_rows = max_rows
        self._metrics = metrics
        self._on_commit = on_commit
        self._queue: deque[_Waiting] = deque()
        self._queued_rows = 0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()

    async def write(self, rows: Sequence[InboxRow]) -> None:
        """Return once ``rows`` are committed; :class:`StoreFailed` if they were not."""
        if not rows:
            return
        loop = asyncio.get_running_loop()
        waiting = _Waiting(rows, loop.create_future(), loop.time())
        self._queue.append(waiting)
        self._queued_rows += len(rows)
        self._arrived.set()
        if self._queued_rows >= self._max_rows:
            self._full.set()
        await waiting.done

    async def run(self) -> None:
        while True:
            await self._arrived.wait()
            await self._gather()
            await self._commit(self._take())

    async def _gather(self) -> None:
        """Wait for more rows until the oldest has waited ``window_s`` or the group is full."""
        waited = asyncio.get_running_loop().time() - self._queue[0].since
        if self._full.is_set() or waited >= self._window_s:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), timeout=self._window_s - waited)

    def _take(self) -> list[_Waiting]:
        """Whole requests from the front, up to ``max_rows`` (at least one request)."""
        taken: list[_Waiting] = []
        rows = 0
        while self._queue and (not taken or rows + len(self._queue[0].rows) <= self._max_rows):
            waiting = self._queue.popleft()
            taken.append(waiting)
            rows += len(waiting.rows)
        self._queued_rows -= rows
        if not self._queue:
            self._arrived.clear()
        if self._queued_rows < self._max_rows:
            self._full.clear()
        return taken

    async def _commit(self, group: list[_Waiting]) -> None:
        rows = [row for waiting in group for row in waiting.rows]
        try:
            async with self._sessions() as session, session.begin():
                await insert_rows(session, rows)
        except Exception as exc:
            # Never the error's text: the statement holds other tenants' rows.
            log.error("ingest.commit_failed", rows=len(rows), error=db.describe_error(exc))
            if len(group) == 1:
                self._settle(group, StoreFailed())
                return
            for waiting in group:  # alone, so a request that cannot be stored fails alone
                await self._commit([waiting])
            return
        self._metrics.commit_rows.observe(len(rows))
        self._metrics.accepted.inc(len(rows))
        self._settle(group, None)
        self._on_commit()

    @staticmethod
    def _settle(group: Sequence[_Waiting], error: Exception | None) -> None:
        for waiting in group:
            if waiting.done.done():  # its request went away; the rows are stored all the same
                continue
            if error is None:
                waiting.done.set_result(None)
            else:
                waiting.done.set_exception(error)

    def fail_waiting(self) -> None:
        """On shutdown: nothing queued will be committed any more."""
        self._settle(self._queue, StoreFailed())
        self._queue.clear()


@asynccontextmanager
async def running_writer(writer: GroupCommitWriter) -> AsyncIterator[GroupCommitWriter]:
    task = asyncio.create_task(writer.run(), name="ingest-writer")
    try:
        yield writer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        writer.fail_waiting()


# Service


@dataclass
class Ingest:
    writer: GroupCommitWriter
    metrics: IngestMetrics
    clock: Clock
    limits: Limits = Limits()

    def now(self) -> datetime:
        return self.clock.now()

    async def accept_event(self, identity: Identity, raw: Any) -> Accepted:
        return await self.accept_for(identity.workspace_id, raw)

    async def accept_for(self, workspace_id: str, raw: Any) -> Accepted:
        """One event of ``workspace_id``: 422 with every problem, or 202 once committed."""
        event, errors = check_event(raw, limits=self.limits)
        if event is None:
            self.metrics.rejected.inc()
            raise invalid(errors)
        await self.writer.write([event_row(workspace_id, event, self.now())])
        return Accepted(accepted=1)

    async def accept_batch(self, identity: Identity, raw: Any) -> BatchAccepted:
        now, rows, rejected = self.now(), [], []
        for index, item in enumerate(check_batch(raw)):
            event, errors = check_event(item, ("events", index), self.limits)
            if event is None:
                rejected.append(
                    Rejection(
                        index=index,
                        errors=[ErrorOut(path=e.path, message=e.message) for e in errors],
                    )
                )
            else:
                rows.append(event_row(identity.workspace_id, event, now))
        self.metrics.rejected.inc(len(rejected))
        await self.writer.write(rows)
        return BatchAccepted(accepted=len(rows), rejected=rejected)

    async def upsert_profile(self, identity: Identity, profile_id: str, raw: Any) -> ProfileOut:
        body = check_profile(raw, self.limits)
        await self.writer.write([profile_row(identity.workspace_id, profile_id, body, self.now())])
        return ProfileOut(profile_id=profile_id, attributes=body.attributes, consent=body.consent)


def inbox_relay(
    sessions: async_sessionmaker[AsyncSession],
    js: JetStreamContext,
    settings: GatewaySettings,
    on_published: Callable[[int], None] | None = None,
    metrics: RelayMetrics | None = None,
) -> outbox.OutboxRelay:
    """The relay of the event inbox: one at a time keeps the stream in acceptance order.
    Order matters within a profile: a row that cannot go out yet holds back only the later
    rows of its profile."""
    return outbox.OutboxRelay(
        sessions, EventInbox, js,
        poll_s=settings.relay_poll_s, batch=settings.relay_batch,
        to_message=lambda row: inbox_message(row, settings.event_partitions),
        exclusive=True,
        keep_published_s=settings.inbox_retention_h * 3600,
        on_published=on_published,
        order_key=INBOX_ORDER,
        metrics=metrics,
    )  # fmt: skip


# The inbox's order key: a profile of a workspace.
INBOX_ORDER = "workspace_id || '/' || profile_id"


@asynccontextmanager
async def running_ingest(state: ServiceState) -> AsyncIterator[None]:
    """Start the inbox relay and the writer; on the way out stop the writer first."""
    settings = state.settings
    assert isinstance(settings, GatewaySettings)
    metrics = IngestMetrics(state.registry)
    relay = inbox_relay(
        state.sessions, state.js, settings, metrics.published.inc, RelayMetrics(state.registry)
    )
    writer = GroupCommitWriter(
        state.sessions, settings.ingest_batch_window_ms / 1000, settings.ingest_batch_max,
        metrics, relay.notify,
    )  # fmt: skip
    limits = Limits(settings.max_event_bytes, settings.max_profile_bytes)
    state.extras[INGEST] = Ingest(writer, metrics, state.clock, limits)
    async with outbox.running(relay), running_writer(writer):
        yield


# Routes


async def _ingest(request: Request) -> Ingest:  # async: a plain def would run in a thread
    ingest: Ingest = get_state(request).extras[INGEST]
    return ingest


async def _body(request: Request) -> Any:
    return parse_json(await request.body())


EVENT_SCHEMA = EventIn.model_json_schema()
BATCH_SCHEMA = {
    "type": "object",
    "required": ["events"],
    "additionalProperties": False,
    "properties": {
        "events": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": EVENT_SCHEMA}
    },
}
PROFILE_SCHEMA = ProfileIn.model_json_schema()


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


Service = Annotated[Ingest, Depends(_ingest)]
Body = Annotated[Any, Depends(_body)]
ProfileId = Annotated[str, Path(min_length=1, max_length=200)]
Caller = Callable[..., Awaitable[Identity]]


def router(caller: Caller) -> APIRouter:
    """The ingestion routes; ``caller`` authorises the request (before the body is read)."""
    api = APIRouter(prefix="/v1", tags=["events and profiles"])
    # A default rather than an Annotated alias: annotations are strings resolved at module
    # level, where ``caller`` is unknown. Keyword-first, so it runs before the body is read.
    authorised = Depends(caller)

    @api.post("/events", status_code=202, openapi_extra=_body_doc(EVENT_SCHEMA))
    async def post_event(*, who: Identity = authorised, ingest: Service, body: Body) -> Accepted:
        return await ingest.accept_event(who, body)

    @api.post("/events/batch", status_code=202, openapi_extra=_body_doc(BATCH_SCHEMA))
    async def post_events(
        *, who: Identity = authorised, ingest: Service, body: Body
    ) -> BatchAccepted:
        return await ingest.accept_batch(who, body)

    @api.put("/profiles/{profile_id}", openapi_extra=_body_doc(PROFILE_SCHEMA))
    async def put_profile(
        *, who: Identity = authorised, ingest: Service, profile_id: ProfileId, body: Body
    ) -> ProfileOut:
        return await ingest.upsert_profile(who, profile_id, body)

    return api
