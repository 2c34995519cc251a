"""The delivery loop: claim due pending deliveries in batches, then deliver each one once.

Claimed deliveries go out in groups of one connector (up to ``send_batch``). Each is
prepared without holding anything (connector, template and workspace rules from the
designer, rendering); then one transaction locks the group's rows (``FOR UPDATE SKIP
LOCKED``), sends them at once within the connector's rate limit and ``max_concurrency``,
and commits every outcome with its feedback event. Any number of replicas can run: a row
one of them is sending is invisible to the others, and whoever takes the lock checks that
the row is still pending and due. One transaction per group, not per message, is what lets
one process send thousands of messages a second.

What is and is not guaranteed:
- A delivery recorded ``sent`` is never sent again, and a transient failure is retried
  with exponential backoff and jitter on the product's clock (in this loop) until it is
  sent or has used ``max_attempts``; then it is ``failed`` with the last error. A retry
  that would fall in quiet hours is ``held`` instead, and the scheduler releases it.
- A crash (or a lost database connection) after a provider accepted a message but before
  the outcome was committed leaves the row pending, so it is sent again. Every send carries
  the activation id (``Idempotency-Key`` for HTTP providers, ``webhook-id`` for webhooks,
  a ``Message-ID`` derived from it for email), so a provider that deduplicates on it drops
  the repeat; one that does not delivers that message twice. No design can close this
  window without the provider's help: the send and the commit cannot be one atomic act.
- When the designer cannot be reached, nothing is claimed for a moment and no attempt is
  counted: the messages wait rather than fail.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.activator import policy, store
from services.activator.concurrency import ConcurrencyLimiter
from services.activator.designer import Connector, Designer, DesignerUnavailable, Missing
from services.activator.feedback import MESSAGE_FAILED, MESSAGE_SENT, Feedback, feedback
from services.activator.holds import hold_timer
from services.activator.metrics import ActivatorMetrics
from services.activator.models import Delivery, Status
from services.activator.outcomes import record_failed, record_held, record_retry, record_sent
from services.activator.ratelimit import RateLimiter
from services.activator.repository import DeliveryRepository
from services.activator.schemas import WorkspaceRules
from services.activator.senders import (
    OutgoingMessage,
    PermanentDeliveryError,
    SmtpConnections,
    TransientDeliveryError,
    send,
)
from services.activator.settings import ActivatorSettings
from shared import db
from shared.clock import Clock, wait_or_wake
from shared.connectors import DestinationGuard
from shared.logging import get_logger
from shared.outbox import OutboxRelay
from shared.rendering import Renderer
from shared.templating import TemplateError
from shared.timers import TimerSchedule
from shared.tracking import Mark, instrument

log = get_logger(__name__)

# When due rows exist but none could be taken (another replica holds them), look again
# this soon rather than spinning.
BUSY_PAUSE_S = 0.02
ERROR_PAUSE_S = 1.0
# How long claiming stops after the designer could not be reached (wall clock).
DESIGNER_PAUSE_S = 1.0
STOP_GRACE_S = 10.0
# HTML up to this size has its links rewritten here (a few milliseconds at most); larger
# goes to a rendering worker, so no one email holds the loop.
INLINE_TRACKING_CHARS = 32 * 1024


@dataclass(frozen=True)
class Plan:
    """What one delivery will send, or why it cannot be sent at all."""

    rules: WorkspaceRules
    connector: Connector | None = None
    message: OutgoingMessage | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How one attempt went: sent, or an error that is transient or not."""

    error: str | None = None
    transient: bool = False
    retry_after_s: float | None = None
    attempted: bool = True

    @property
    def result(self) -> str:
        if self.error is None:
            return "sent"
        return "transient" if self.transient else "permanent"


class Deliverer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        pool: asyncpg.Pool,
        clock: Clock,
        designer: Designer,
        http: aiohttp.ClientSession,
        guard: DestinationGuard | None,
        relay: OutboxRelay,
        settings: ActivatorSettings,
        metrics: ActivatorMetrics,
        renderer: Renderer,
        limiter: RateLimiter | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._sessions = sessions
        self._pool = pool
        self._clock = clock
        self._designer = designer
        self._http = http
        self._guard = guard
        self._relay = relay
        self._settings = settings
        self._metrics = metrics
        self._renderer = renderer
        self._limiter = limiter or RateLimiter(settings.rate_limit_wait_s)
        self._concurrency = ConcurrencyLimiter()
        self._jitter = jitter
        self._sends = asyncio.Semaphore(settings.send_concurrency)
        self._smtp = SmtpConnections()
        self._held: dict[str, asyncio.Task[bool]] = {}
        self._sending: set[str] = set()
        self._wake = asyncio.Event()
        self._woken_by = "poll"
        # The loop last went to sleep with no room, or with a connector full: a group that
        # ends frees what it waits for.
        self._blocked = False
        self._paused_until = 0.0

    def notify(self) -> None:
        """New deliveries may be due: look now instead of at the next poll."""
        self._rouse("notify")

    def _rouse(self, why: str) -> None:
        if not self._wake.is_set():
            self._woken_by = why
        self._wake.set()

    def submit(self, due_now: list[Delivery]) -> None:
        """Deliveries just stored pending and due: start them without a claim, as far as
        there is room (the rest are claimed as usual). Each is still locked and checked
        before it is sent, so one another replica claimed meanwhile is sent once."""
        fresh = [row for row in due_now if row.activation_id not in self._held]
        self._start_groups(fresh[: max(0, self._room())])
        if len(fresh) > self._room():
            self._rouse("room")

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Deliverer]:
        task = asyncio.create_task(self.run(), name="delivery-loop")
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self._drain()
            await self._smtp.close()

    async def run(self) -> None:
        while True:
            try:
                started = await self.start_due()
                if started < self._settings.claim_batch or not self._room():
                    await self._sleep()
            except Exception as exc:
                log.warning("activator.claim_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(ERROR_PAUSE_S)

    async def start_due(self) -> int:
        """Claim one batch of due deliveries and start delivering each; how many."""
        room = min(self._room(), self._settings.claim_batch)
        if room <= 0 or self._paused():
            return 0
        busy = [*self._limiter.busy(), *self._concurrency.full()]
        async with self._sessions() as session, session.begin():
            repo = DeliveryRepository(session)
            rows = await repo.due(self._clock.now(), room, [*self._held], busy)
        self._metrics.claims.labels(self._woken_by, "rows" if rows else "none").inc()
        self._woken_by = "more"  # unless the loop sleeps before the next claim
        # Submitted by the intake while the claim ran: already under way here.
        self._start_groups([row for row in rows if row.activation_id not in self._held])
        return len(rows)

    def _start_groups(self, rows: list[Delivery]) -> None:
        """One delivery task per connector and up to ``send_batch`` of its deliveries."""
        groups: dict[tuple[str, str], list[Delivery]] = {}
        for row in rows:
            groups.setdefault((row.workspace_id, row.connector_id), []).append(row)
        size = self._settings.send_batch
        for group in groups.values():
            for at in range(0, len(group), size):
                self._start(group[at : at + size])

    def _room(self) -> int:
        return self._settings.max_in_flight - len(self._held)

    def _paused(self) -> bool:
        return time.monotonic() < self._paused_until

    def _start(self, rows: list[Delivery]) -> None:
        keys = [row.activation_id for row in rows]
        task = asyncio.create_task(self._deliver(rows), name=f"deliver:{keys[0]}+{len(keys)}")
        for key in keys:
            self._held[key] = task
        task.add_done_callback(lambda ended: self._finished(keys, ended))

    def _finished(self, keys: list[str], task: asyncio.Task[bool]) -> None:
        """A group ended. The loop is woken only when the claim it would make can find
        something new: the group left deliveries due (no turn of the rate limit, a retry, an
        error), or the loop waits for the room or the connector place the group held. A
        group whose messages were all recorded changes nothing a claim would find."""
        for key in keys:
            self._held.pop(key, None)
        rescan = task.cancelled() or task.exception() is not None or task.result()
        if rescan:
            self._rouse("group")
        elif self._blocked:
            self._rouse("room")

    async def _drain(self) -> None:
        """Let sends under way finish, so their outcome is recorded (within a grace); the
        groups not yet sending are dropped, to be claimed again by whoever runs next."""
        sending = {task for key, task in self._held.items() if key in self._sending}
        for task in set(self._held.values()) - sending:
            task.cancel()
        tasks = list(set(self._held.values()))
        if not tasks:
            return
        _done, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # One group of deliveries through one connector ----------------------------------------

    async def _deliver(self, claimed: list[Delivery]) -> bool:
        """Deliver one group; whether it left any of its deliveries pending (a retry, no
        turn, a failure), so the loop should look for due deliveries again."""
        try:
            # Prepared side by side: a template that renders in a worker for a while does
            # not hold back the group's other messages' rendering.
            prepared = await asyncio.gather(*(self._prepare(row) for row in claimed))
            plans = {row.activation_id: plan for row, plan in zip(claimed, prepared, strict=True)}
            async with db.raw_transaction(self._pool) as conn:
                rows = await store.lock_due(conn, [*plans], self._clock.now())
                turns = await self._turns(rows, plans)
                outcomes = await asyncio.gather(
                    *(self._attempt(row, plans[row.activation_id], turns) for row in rows)
                )
                done = [(row, o) for row, o in zip(rows, outcomes, strict=True) if o is not None]
                records = [
                    self._record(row, plans[row.activation_id], outcome) for row, outcome in done
                ]
                statuses = [status for status, _ in records]
                await store.save(conn, [row for row, _ in done])
                queued = [item for _, item in records if item is not None]
                await store.put_outbox(conn, queued)
            if queued:  # a group whose messages all wait for a turn wrote nothing to relay
                self._relay.notify()
            for (row, outcome), status in zip(done, statuses, strict=True):
                self._count(row, outcome, status)
            return len(done) < len(rows) or Status.PENDING in statuses
        except DesignerUnavailable as exc:
            self._paused_until = time.monotonic() + DESIGNER_PAUSE_S
            log.warning("activator.designer_unavailable", error=str(exc))
            return True
        except Exception as exc:
            log.warning(
                "activator.delivery_error",
                activation_id=claimed[0].activation_id,
                deliveries=len(claimed),
                error=f"{type(exc).__name__}: {exc}",
            )
            return True
        finally:
            for row in claimed:
                self._sending.discard(row.activation_id)

    async def _attempt(self, row: Delivery, plan: Plan, turns: dict[str, float]) -> Outcome | None:
        """Send one locked delivery in its turn; None when it got no turn of its connector
        (it stays pending and due, and is claimed again once the connector has room)."""
        if self._sends_something(plan):
            wait = turns.get(row.activation_id)
            if wait is None:
                return None
            if wait > 0:
                await asyncio.sleep(wait)
        async with self._connector_place(row, plan), self._sends:
            self._sending.add(row.activation_id)
            return await self._send(row, plan)

    def _count(self, row: Delivery, outcome: Outcome, status: Status) -> None:
        if outcome.attempted:
            self._metrics.attempts.labels(row.channel, outcome.result).inc()
        if status in (Status.SENT, Status.FAILED, Status.HELD):
            self._metrics.deliveries.labels(row.channel, status.value).inc()

    async def _turns(self, rows: list[Delivery], plans: dict[str, Plan]) -> dict[str, float]:
        """How long each of the group's messages waits for its connector's turn, reserved
        at once for the whole group; the messages left without a turn are absent."""
        sending = [row for row in rows if self._sends_something(plans[row.activation_id])]
        if not sending:
            return {}
        connector = plans[sending[0].activation_id].connector
        assert connector is not None
        assert connector.config is not None
        key = (sending[0].workspace_id, sending[0].connector_id)
        waits = await self._limiter.turns(key, connector.config.rate_limit_per_s, len(sending))
        return {row.activation_id: wait for row, wait in zip(sending, waits, strict=False)}

    @staticmethod
    def _sends_something(plan: Plan) -> bool:
        return plan.problem is None and plan.message is not None and plan.connector is not None

    def _connector_place(self, row: Delivery, plan: Plan) -> AbstractAsyncContextManager[None]:
        """One of the connector's ``max_concurrency`` places (none needed when nothing
        will be sent)."""
        if plan.connector is None or plan.connector.config is None:
            return nullcontext()
        key = (row.workspace_id, row.connector_id)
        return self._concurrency.hold(key, plan.connector.config.max_concurrency)

    async def _prepare(self, row: Delivery) -> Plan:
        ws = row.workspace_id
        rules = await self._designer.cached_rules(ws)
        try:
            connector = await self._designer.connector(ws, row.connector_id)
            template = await self._designer.template(ws, row.template_id)
        except Missing as exc:
            return Plan(rules, problem=f"{exc} does not exist")
        if connector.config is None:
            return Plan(rules, connector, problem=connector.problem)
        try:
            rendered = await self._renderer.render(template, row.request.get("context") or {})
            html = await self._tracked(row, rendered.html)
        except TemplateError as exc:
            return Plan(rules, connector, problem=f"template error: {exc}")
        message = OutgoingMessage(
            activation_id=row.activation_id,
            to=row.recipient or "",
            subject=rendered.subject,
            body=rendered.body,
            html=html,
            title=rendered.title,
            data=rendered.data,
            metadata={
                "journey_id": row.journey_id,
                "step_id": row.step_id,
                "profile_id": row.profile_id,
                "channel": row.channel,
            },
        )
        return Plan(rules, connector, message)

    async def _tracked(self, row: Delivery, html: str | None) -> str | None:
        """HTML email with its links and an open pixel pointing at the gateway, which turns
        them into ``email_opened`` / ``email_clicked`` (only when tracking is configured).
        A large email is rewritten in a rendering worker, under the rendering budget."""
        secret, public_url = self._settings.tracking_secret, self._settings.public_url
        if html is None or row.channel != "email" or secret is None or not public_url:
            return html
        mark = Mark(
            row.workspace_id, row.profile_id, row.journey_id, row.step_id, row.activation_id,
            issued_at=int(self._clock.now().timestamp()),
        )  # fmt: skip
        args = (html, mark, secret.get_secret_value(), public_url)
        if len(html) <= INLINE_TRACKING_CHARS:
            return instrument(*args)
        return await self._renderer.offload(instrument, *args)

    async def _send(self, row: Delivery, plan: Plan) -> Outcome:
        if plan.problem is not None or plan.message is None or plan.connector is None:
            return Outcome(plan.problem or "nothing to send", attempted=False)
        config = plan.connector.config
        assert config is not None
        started = time.perf_counter()
        try:
            await send(
                plan.connector.type, config, plan.message, self._http, self._guard, self._smtp
            )
        except TransientDeliveryError as exc:
            return Outcome(exc.reason, transient=True, retry_after_s=exc.retry_after_s)
        except PermanentDeliveryError as exc:
            return Outcome(exc.reason)
        except Exception as exc:
            # Not a classified failure: retried, but within the attempt budget, so a fault
            # in this process cannot loop on one message forever.
            return Outcome(f"{type(exc).__name__}: {exc}", transient=True)
        finally:
            self._metrics.send_latency.labels(row.channel).observe(time.perf_counter() - started)
        return Outcome()

    def _record(
        self, row: Delivery, plan: Plan, outcome: Outcome
    ) -> tuple[Status, Feedback | TimerSchedule | None]:
        """The outcome on the row, and what goes into the outbox with it (the feedback
        event, or the timer of a retry held by quiet hours)."""
        now = self._clock.now()
        partitions = self._settings.event_partitions
        if outcome.error is None:
            record_sent(row, now)
            return Status.SENT, feedback(row, MESSAGE_SENT, now, partitions)
        if outcome.transient and row.attempts + 1 < self._settings.max_attempts:
            retry_at = self._retry_at(row, outcome, now)
            release_at = self._release_at(row, plan.rules, retry_at)
            if release_at == retry_at:
                record_retry(row, outcome.error, retry_at, now)
                return Status.PENDING, None
            # The retry would fall in quiet hours: held until the scheduler releases it.
            record_held(row, outcome.error, release_at, now)
            timer = hold_timer(
                row.activation_id, row.workspace_id, row.profile_id, row.journey_id,
                row.attempts, release_at,
            )  # fmt: skip
            return Status.HELD, timer
        record_failed(row, outcome.error, now, attempted=outcome.attempted)
        return Status.FAILED, feedback(row, MESSAGE_FAILED, now, partitions, outcome.error)

    def _retry_at(self, row: Delivery, outcome: Outcome, now: datetime) -> datetime:
        s = self._settings
        wait = policy.backoff(
            row.attempts + 1, s.retry_base_s, s.retry_max_s, self._jitter(), outcome.retry_after_s
        )
        return now + wait

    def _release_at(self, row: Delivery, rules: WorkspaceRules, retry_at: datetime) -> datetime:
        """``retry_at``, or when quiet hours let the retry go out: it must not land in them."""
        tz = policy.profile_zone(row.request.get("context") or {}, rules)
        spread_s = self._settings.quiet_hours_spread_s
        return policy.release_at(retry_at, rules.quiet_hours, tz, row.activation_id, spread_s)

    # Sleeping ---------------------------------------------------------------------------

    async def _sleep(self) -> None:
        """Until the next delivery falls due (at most ``idle_poll_s``), a connector at its
        rate limit has room again, a notify, a clock change, or a freed place when this
        process holds all it may."""
        self._wake.clear()  # before reading: a delivery stored after the read wakes us
        self._woken_by = "poll"
        self._blocked = self._room() <= 0 or bool(self._concurrency.full())
        if self._paused():
            await asyncio.sleep(self._paused_until - time.monotonic())
            return
        idle = timedelta(seconds=self._settings.idle_poll_s)
        if self._room() <= 0:
            await self._wait(idle.total_seconds())
            return
        busy = self._limiter.busy()
        # A full connector frees a place when one of its sends ends, which wakes this.
        waiting = [*busy, *self._concurrency.full()]
        async with self._sessions() as session:
            next_due = await DeliveryRepository(session).next_due([*self._held], waiting)
        now = self._clock.now()
        until = now + idle if next_due is None else min(now + idle, next_due)
        seconds = min([(until - now).total_seconds(), *busy.values()])
        await self._wait(max(seconds, BUSY_PAUSE_S))

    async def _wait(self, seconds: float) -> None:
        await wait_or_wake(self._clock, seconds, self._wake)
