"""Applies inputs to profiles: loads their state, calls the pure engine, and writes the
result (state, timeline, explanations, counters, outbox commands) in one transaction.

Only what an input changed is written: a journey state equal to the one loaded is not."""

from __future__ import annotations

import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

import asyncpg

from services.runtime import erasures, migration_plan
from services.runtime.catalog import CatalogCache
from services.runtime.counter_keys import (
    ENGAGEMENT_EVENTS,
    ENGAGEMENT_VERSION,
    MIGRATED_IN,
    MIGRATED_OUT,
    engage_key,
    path_key,
    stage_left_key,
)
from services.runtime.engine import engine
from services.runtime.engine.compiled import CompiledJourney
from services.runtime.engine.engine import Catalog
from services.runtime.engine.state import (
    CancelTimer,
    Event,
    Explanation,
    JourneyState,
    Membership,
    Profile,
    Result,
    SetTimer,
    TimelineEntry,
    Timer,
)
from services.runtime.experiments import Experiments
from services.runtime.needs import TemplateNeeds, trimmed
from services.runtime.store import Command, EventExplained, ProfileRecord, Store
from services.runtime.triggers import Tally, TriggerSchemas, forget_samples
from shared import db, outbox
from shared.clock import Clock
from shared.erasure import ProfileErased
from shared.events import AcceptedEvent
from shared.logging import get_logger
from shared.timers import TimerCancel, TimerKind, TimerSchedule

log = get_logger(__name__)

# The largest profile attributes (JSON bytes) an update may leave; the gateway's cap on
# one update (WAYPOST_MAX_PROFILE_BYTES) is the same.
MAX_PROFILE_BYTES = 32 * 1024


@dataclass(frozen=True)
class FiredTimer:
    timer_id: str
    workspace_id: str
    profile_id: str
    journey_id: str
    due_at: datetime
    kind: str = "wait"


@dataclass
class _Writes:
    """Everything a batch's inputs produced, written with one statement per table."""

    states: dict[str, dict[str, JourneyState]] = field(default_factory=dict)
    timeline: list[tuple[str, TimelineEntry]] = field(default_factory=list)
    explained: list[EventExplained] = field(default_factory=list)
    counters: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    outbox: list[Command] = field(default_factory=list)


class Processor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        catalogs: CatalogCache,
        relay: outbox.OutboxRelay | None,
        clock: Clock,
        triggers: TriggerSchemas | None = None,
        max_profile_bytes: int = MAX_PROFILE_BYTES,
        needs: TemplateNeeds | None = None,
        tombstones: erasures.Tombstones | None = None,
    ) -> None:
        """With ``needs``, each activation carries the profile attributes its template
        reads (see ``services.runtime.needs``); without, the whole profile."""
        self.pool = pool
        self.catalogs = catalogs
        self.relay = relay
        self.clock = clock
        self.triggers = triggers
        self.max_profile_bytes = max_profile_bytes
        self.needs = needs
        self.tombstones = tombstones or erasures.Tombstones()
        self.experiments = Experiments()

    async def apply_events(
        self, events: Sequence[AcceptedEvent], fetched_at: float
    ) -> dict[int, str]:
        """Apply the events in one transaction; return those refused (index -> reason):
        events of a workspace that does not exist, and updates that would make a profile
        larger than ``max_profile_bytes`` (see :meth:`_merge`)."""
        await self.catalogs.fresh(fetched_at)
        refused = {
            i: f"unknown workspace {e.workspace_id!r}"
            for i, e in enumerate(events)
            if not self.catalogs.knows(e.workspace_id)
        }
        usable = [e for i, e in enumerate(events) if i not in refused]
        if usable:
            tally = await self.triggers.tally(self.catalogs.revision) if self.triggers else Tally()
            too_large: dict[int, str] = {}  # id() of the event -> why
            async with db.raw_transaction(self.pool) as conn:
                store = Store(conn)
                for workspace_id, batch in _by_workspace(usable).items():
                    await self._events_of_workspace(store, workspace_id, batch, tally, too_large)
                await tally.save(conn)
            self._notify(store)
            refused |= {i: too_large[id(e)] for i, e in enumerate(events) if id(e) in too_large}
        return refused

    async def _events_of_workspace(
        self,
        store: Store,
        workspace_id: str,
        events: list[AcceptedEvent],
        tally: Tally,
        too_large: dict[int, str],
    ) -> None:
        fresh = await store.claim_events(workspace_id, (e.event_id for e in events))
        claimed = _first_of_each(e for e in events if e.event_id in fresh)
        # Counted before the feedback no journey listens to is set aside: it is still a
        # message sent, opened or clicked.
        engaged = _engagement(claimed)
        todo = _heard(claimed, self.catalogs.unheard(workspace_id))
        if not todo:
            if engaged:
                shard = zlib.crc32(min(e.profile_id for e in claimed).encode())
                await store.bump(workspace_id, dict(engaged), shard % COUNTER_SHARDS)
            return
        rows = await store.lock_profiles(workspace_id, (e.profile_id for e in todo), create=True)
        todo = await self.tombstones.screen(store.conn, workspace_id, todo, rows)
        tally.add(workspace_id, todo)
        states = await store.states(workspace_id, sorted(rows))
        now = self.clock.now()
        book = await self.experiments.book(
            store.conn, workspace_id, self.catalogs.for_workspace(workspace_id), rows, now
        )
        catalog = book.catalog
        writes = _Writes()
        writes.counters.update(engaged)
        for event in todo:
            row = rows[event.profile_id]
            if (event.kind == "profile" or event.traits) and (why := self._merge(row, event)):
                too_large[id(event)] = why
                log.warning(
                    "runtime.profile_update_refused", workspace_id=workspace_id,
                    profile_id=row.profile_id, event_id=event.event_id, reason=why,
                )  # fmt: skip
                continue
            if event.kind == "profile":
                continue
            before = states[row.profile_id]
            book.convert(row.profile_id, event.name, event.properties, row.attributes)
            result = engine.on_event(
                catalog, _profile(row, catalog), before, _engine_event(event), now
            )
            book.assign(row.profile_id, result)
            self._record(workspace_id, row, before, result, writes)
            states[row.profile_id] = result.states
            writes.explained.append(_explained(row.profile_id, event, result.explanations))
        await store.save_profiles(workspace_id, rows.values())
        await book.save(store.conn)
        await self._flush(store, workspace_id, writes, catalog)

    def _merge(self, row: ProfileRecord, event: AcceptedEvent) -> str | None:
        """Merge the event's traits (and a profile update's consent) into the profile; or,
        when that would make the attributes larger than ``max_profile_bytes`` and larger
        than they are, change nothing and say why: the whole input is then refused and
        dead-lettered with the reason, since every message about the profile carries
        attributes and one oversized profile must not make messages the bus cannot take.
        (A profile over the cap from before the cap existed may still shrink or keep
        its size.)"""
        merged = {**row.attributes, **event.traits}
        if event.traits:
            size = len(db.dumps(merged).encode())
            if size > self.max_profile_bytes and size > len(db.dumps(row.attributes).encode()):
                return (
                    f"the profile's attributes would be {size} bytes; a profile holds at most "
                    f"{self.max_profile_bytes}"
                )
        row.attributes = merged
        consent = event.properties.get("consent") if event.kind == "profile" else None
        if isinstance(consent, dict):
            row.consent = {**row.consent, **consent}
        row.changed = True
        return None

    async def apply_timers(self, fired: Sequence[FiredTimer]) -> None:
        for end in [t for t in fired if t.kind == TimerKind.SCHEDULE_END]:
            if await self._schedule_closed(end):
                await self.apply_change(end.workspace_id, end.journey_id, "schedule_ended")
        fired = [t for t in fired if t.kind != TimerKind.SCHEDULE_END]
        if not fired:
            return
        await self.catalogs.fresh(time.monotonic())
        async with db.raw_transaction(self.pool) as conn:
            store = Store(conn)
            for workspace_id, timers in _by_workspace(fired).items():
                await self._timers_of_workspace(store, workspace_id, timers)
        self._notify(store)

    async def _timers_of_workspace(
        self, store: Store, workspace_id: str, timers: list[FiredTimer]
    ) -> None:
        rows = await store.lock_profiles(workspace_id, (t.profile_id for t in timers), create=False)
        states = await store.states(workspace_id, sorted(rows))
        now = self.clock.now()
        book = await self.experiments.book(
            store.conn, workspace_id, self.catalogs.for_workspace(workspace_id), (), now
        )
        catalog = book.catalog
        writes = _Writes()
        for fired in sorted(timers, key=lambda t: t.due_at):
            row = rows.get(fired.profile_id)
            if row is None:
                continue  # the profile was erased; its timers mean nothing now
            timer = Timer(fired.timer_id, fired.journey_id, fired.due_at)
            before = states[row.profile_id]
            result = engine.on_timer(catalog, _profile(row, catalog), before, timer, now)
            book.assign(row.profile_id, result)
            self._record(workspace_id, row, before, result, writes)
            states[row.profile_id] = result.states
        await book.save(store.conn)
        await self._flush(store, workspace_id, writes, catalog)

    async def _schedule_closed(self, timer: FiredTimer) -> bool:
        """A timer of an earlier version's end is stale once a new version moved the end."""
        await self.catalogs.fresh(time.monotonic())
        live = self.catalogs.for_workspace(timer.workspace_id).journeys.get(timer.journey_id)
        end_at = live.live.body.schedule.end_at if live else None
        return end_at is not None and end_at <= self.clock.now()

    async def apply_change(self, workspace_id: str, journey_id: str, change: str) -> int:
        """A journey stopped (everyone leaves) or resumed (held timers go on)."""
        await self.catalogs.fresh(time.monotonic())
        async with db.raw_transaction(self.pool) as conn:
            store = Store(conn)
            flow = "held" if change == "resumed" else None
            ids = await store.active_profiles(workspace_id, journey_id, flow)
            rows = await store.lock_profiles(workspace_id, ids, create=False)
            states = await store.states(workspace_id, sorted(rows))
            book = await self.experiments.book(
                conn, workspace_id, self.catalogs.for_workspace(workspace_id), (),
                self.clock.now(),
            )  # fmt: skip
            catalog = book.catalog
            writes = _Writes()
            reason = "schedule ended" if change == "schedule_ended" else "journey stopped"
            for profile_id in sorted(rows):
                row = rows[profile_id]
                before = states[profile_id]
                args = (catalog, _profile(row, catalog), before, journey_id, self.clock.now())
                result = (
                    engine.on_resume(*args) if change == "resumed"
                    else engine.on_stop(*args, reason=reason)
                )  # fmt: skip
                book.assign(profile_id, result)
                self._record(workspace_id, row, before, result, writes)
            await book.save(conn)
            await self._flush(store, workspace_id, writes, catalog)
        self._notify(store)
        return len(rows)

    async def migrate(self, journey_id: str, to_version: int) -> int:
        """Profiles in older versions whose stage and step exist in ``to_version`` move there."""
        await self.catalogs.fresh(time.monotonic())
        workspace_id, live = self.catalogs.find(journey_id)
        if live is None or to_version not in live.versions:
            return 0
        target = live.versions[to_version]
        async with db.raw_transaction(self.pool) as conn:
            store = Store(conn)
            ids = await store.active_profiles(workspace_id, journey_id)
            rows = await store.lock_profiles(workspace_id, ids, create=False)
            states = await store.states(workspace_id, sorted(rows))
            catalog = self.catalogs.for_workspace(workspace_id)
            moved: dict[str, dict[str, JourneyState]] = {}
            timeline: list[tuple[str, TimelineEntry]] = []
            counters: Counter[tuple[str, int, str]] = Counter()
            now = self.clock.now()
            for profile_id in sorted(rows):
                state = states[profile_id].get(journey_id)
                m = state.membership if state else None
                if state is None or m is None or m.version not in live.versions:
                    continue
                source = live.versions[m.version]
                was = (m.version, source.stages[m.stage].name, m.step_id)
                if engine.migrate(state, source, target):
                    moved[profile_id] = {journey_id: state}
                    timeline.append((profile_id, _migrated(journey_id, was, target, m, now)))
                    counters[(journey_id, was[0], MIGRATED_OUT)] += 1
                    counters[(journey_id, target.version, MIGRATED_IN)] += 1
            await store.save_states(workspace_id, moved, catalog)
            await store.add_timeline(workspace_id, timeline)
            await store.bump(
                workspace_id, dict(counters), zlib.crc32(journey_id.encode()) % COUNTER_SHARDS
            )
        return len(moved)

    async def migration_plan(self, journey_id: str, target: CompiledJourney) -> dict[str, Any]:
        """What :meth:`migrate` onto ``target`` would do now; reads, locks nothing, writes
        nothing (:mod:`services.runtime.migration_plan`)."""
        await self.catalogs.fresh(time.monotonic())
        workspace_id, live = self.catalogs.find(journey_id)
        if live is None:
            return migration_plan.plan([], None, target)
        async with db.raw_transaction(self.pool) as conn:
            store = Store(conn)
            ids = await store.active_profiles(workspace_id, journey_id)
            states = await store.states(workspace_id, sorted(ids))
        inside = [s[journey_id] for s in states.values() if journey_id in s]
        return migration_plan.plan(inside, live, target)

    async def erase(self, workspace_id: str, profile_id: str) -> bool:
        """Delete the profile and everything about it; cancel its pending timers; tell the
        activator and the gateway to erase its messages and events; keep a tombstone so
        late feedback does not bring it back (:mod:`services.runtime.erasures`)."""
        async with db.raw_transaction(self.pool) as conn:
            store = Store(conn)
            if not await store.lock_profiles(workspace_id, [profile_id], create=False):
                return False
            states = await store.states(workspace_id, [profile_id])
            cancels = [
                TimerCancel(timer_id=pending.timer_id, workspace_id=workspace_id)
                for state in states[profile_id].values()
                for pending in (state.membership.timers() if state.membership else [])
            ]
            erased = ProfileErased(
                workspace_id=workspace_id, profile_id=profile_id, erased_at=self.clock.now()
            )
            commands = [(c.subject, c.model_dump(mode="json"), c.msg_id) for c in cancels]
            commands.append((erased.subject, erased.model_dump(mode="json"), erased.msg_id))
            await store.add_commands(commands)
            await store.delete_profile(workspace_id, profile_id)
            await erasures.record(conn, workspace_id, profile_id, erased.erased_at)
            await forget_samples(conn, workspace_id, profile_id)
        self._notify(store)
        return True

    def _record(
        self,
        workspace_id: str,
        row: ProfileRecord,
        before: dict[str, JourneyState],
        result: Result,
        writes: _Writes,
    ) -> None:
        changed = {j: s for j, s in result.states.items() if before.get(j) != s}
        if changed:
            writes.states.setdefault(row.profile_id, {}).update(changed)
        writes.timeline += [(row.profile_id, entry) for entry in result.timeline]
        writes.counters.update(_counter_keys(result))
        writes.counters.update(_goals_after_messages(before, result))
        writes.outbox += _commands(
            workspace_id, row, result, self.clock.now(), self.catalogs.revision
        )

    async def _flush(
        self, store: Store, workspace_id: str, writes: _Writes, catalog: Catalog
    ) -> None:
        await store.save_states(workspace_id, writes.states, catalog)
        await store.add_timeline(workspace_id, writes.timeline)
        await store.add_explanations(workspace_id, writes.explained)
        await store.bump(workspace_id, dict(writes.counters), _shard(writes))
        await self._carry_what_is_needed(workspace_id, writes.outbox)
        await store.add_commands(writes.outbox)

    async def _carry_what_is_needed(self, workspace_id: str, commands: list[Command]) -> None:
        """Each activation's profile cut down to what its template reads."""
        if self.needs is None:
            return
        for _subject, payload, _msg_id in commands:
            context = payload.get("context")
            if "activation_id" not in payload or not isinstance(context, dict):
                continue
            fields = await self.needs.fields(workspace_id, payload["template_id"])
            payload["context"] = {**context, "profile": trimmed(context["profile"], fields)}

    def _notify(self, store: Store) -> None:
        """Wake the relay when the transaction just committed wrote outbox rows: a batch
        that commands nothing (most events reach no journey's step) costs it no round."""
        if self.relay is not None and store.commands:
            self.relay.notify()


COUNTER_SHARDS = 32


def _shard(writes: _Writes) -> int:
    """Batches of different partitions touch different profiles, so mostly other shards."""
    first = min(writes.states, default="")
    return zlib.crc32(first.encode()) % COUNTER_SHARDS


class _OfWorkspace(Protocol):
    @property
    def workspace_id(self) -> str: ...


W = TypeVar("W", bound=_OfWorkspace)


def _by_workspace(items: Iterable[W]) -> dict[str, list[W]]:
    grouped: dict[str, list[W]] = defaultdict(list)
    for item in items:
        grouped[item.workspace_id].append(item)
    return grouped


def _first_of_each(events: Iterable[AcceptedEvent]) -> list[AcceptedEvent]:
    seen: set[str] = set()
    out = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            out.append(event)
    return out


def _heard(events: list[AcceptedEvent], unheard: frozenset[str]) -> list[AcceptedEvent]:
    """The events to apply: not the delivery feedback no live journey can react to. Such an
    event is only recorded as applied (``runtime.processed``, with the rest of its batch),
    so a repeat is still dropped; it makes no timeline entry or counter either way, and it
    no longer costs its profile's lock and state and a run of the engine, which only wrote
    an explanation that it concerned no journey. (Feedback carries no traits; an event
    that does is always applied, for its profile update.)"""
    if not unheard:
        return events
    return [e for e in events if e.name not in unheard or e.kind != "event" or e.traits]


def _profile(row: ProfileRecord, catalog: Catalog) -> Profile:
    return Profile(row.profile_id, row.attributes, catalog.default_timezone)


def _explained(
    profile_id: str, event: AcceptedEvent, explanations: Sequence[Explanation]
) -> EventExplained:
    journeys = [
        {"journey_id": x.journey_id, "outcome": x.outcome, "reasons": x.reasons}
        for x in explanations
    ]
    return EventExplained(profile_id, event.event_id, event.name, event.timestamp, journeys)


def _engine_event(event: AcceptedEvent) -> Event:
    return Event(event.event_id, event.name, event.timestamp, dict(event.properties))


def _counter_keys(result: Result) -> Counter[tuple[str, int, str]]:
    keys: Counter[tuple[str, int, str]] = Counter()
    for e in result.timeline:
        base = (e.journey_id, e.version)
        if e.kind == "entered":
            keys[(*base, "entered")] += 1
            keys[(*base, f"stage:{e.stage}:entered")] += 1
        elif e.kind == "stage_changed":
            keys[(*base, f"stage:{e.detail['to']}:entered")] += 1
        elif e.kind == "step_started":
            keys[(*base, f"step:{e.step_id}:entered")] += 1
        elif e.kind == "left":
            keys[(*base, f"left:{e.detail['outcome']}")] += 1
            if e.stage is not None:
                keys[(*base, stage_left_key(e.stage, e.detail["outcome"]))] += 1
        elif e.kind == "branch_taken" and e.step_id is not None:
            keys[(*base, path_key(e.step_id, str(e.detail["path"])))] += 1
        elif e.kind == "activation":
            keys[(*base, "activations:requested")] += 1
    return keys


def _engagement(events: Iterable[AcceptedEvent]) -> Counter[tuple[str, int, str]]:
    """Messages sent, opened and clicked, by journey, step and channel, from the feedback
    events (one per message sent, one open per message, one click per link)."""
    keys: Counter[tuple[str, int, str]] = Counter()
    for e in events:
        what = ENGAGEMENT_EVENTS.get(e.name) if e.kind == "event" else None
        journey_id, step_id = e.properties.get("journey_id"), e.properties.get("step_id")
        if what is None or not isinstance(journey_id, str) or not isinstance(step_id, str):
            continue
        channel = e.properties.get("channel") if what == "sent" else "email"
        channel = channel if isinstance(channel, str) else None
        keys[(journey_id, ENGAGEMENT_VERSION, engage_key(step_id, what, channel))] += 1
    return keys


def _goals_after_messages(
    before: dict[str, JourneyState], result: Result
) -> Counter[tuple[str, int, str]]:
    """A profile that left with the goal counts for each step that messaged it in that entry."""
    keys: Counter[tuple[str, int, str]] = Counter()
    for e in result.timeline:
        if e.kind != "left" or e.detail.get("outcome") != "goal":
            continue
        state = before.get(e.journey_id)
        m = state.membership if state is not None else None
        for step_id in m.activations if m is not None else ():
            keys[(e.journey_id, ENGAGEMENT_VERSION, engage_key(step_id, "goal", None))] += 1
    return keys


def _migrated(
    journey_id: str,
    was: tuple[int, str, str | None],
    target: CompiledJourney,
    m: Membership,
    now: datetime,
) -> TimelineEntry:
    """The timeline's record of a migrate publish moving the profile: v1 step -> v2 step."""
    stage = target.stages[m.stage].name
    detail = {"from_version": was[0], "from_stage": was[1], "from_step": was[2],
              "to_version": target.version, "to_stage": stage, "to_step": m.step_id}  # fmt: skip
    return TimelineEntry(
        now,
        journey_id,
        target.version,
        "migrated",
        stage,
        m.step_id,
        detail,
        {"change": "migrated"},
    )


def _commands(
    workspace_id: str, row: ProfileRecord, result: Result, now: datetime, revision: str | None
) -> list[Command]:
    """Outbox rows: (subject, payload, Nats-Msg-Id) for the scheduler and the activator."""
    out: list[Command] = []
    for change in result.timers:
        message: TimerSchedule | TimerCancel
        if isinstance(change, SetTimer):
            message = TimerSchedule(
                timer_id=change.timer_id, workspace_id=workspace_id, profile_id=row.profile_id,
                journey_id=change.journey_id, kind=change.kind.value, due_at=change.due_at,
            )  # fmt: skip
        else:
            assert isinstance(change, CancelTimer)
            message = TimerCancel(timer_id=change.timer_id, workspace_id=workspace_id)
        out.append((message.subject, message.model_dump(mode="json"), message.msg_id))
    for a in result.activations:
        payload: dict[str, Any] = {"activation_id": a.activation_id, "workspace_id": workspace_id,
                   "profile_id": row.profile_id, "journey_id": a.journey_id,
                   "version": a.version, "step_id": a.step_id, "channel": a.channel,
                   "connector_id": a.connector_id, "template_id": a.template_id, "to": a.to,
                   "consent": dict(row.consent), "context": a.context,
                   "requested_at": now.isoformat(), "rules_revision": revision}  # fmt: skip
        out.append(
            (f"activations.requested.{workspace_id}", payload, f"activation:{a.activation_id}")
        )
    return out


__all__ = ["FiredTimer", "JourneyState", "Processor"]
