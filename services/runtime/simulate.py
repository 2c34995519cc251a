"""Run a journey definition against timestamped events on the pure engine, in simulated
time: what each profile would do and which messages would go out. Nothing is stored or sent.

A simulation's size is the caller's to choose, so it is bounded (``SimLimits``: events times
the journey's steps, timers fired, entries in the answer, messages; over one is
``SimulationRefused`` naming it) and it runs in a worker process (``run_report``) under a
time and memory budget, never on the runtime's event loop, where it would hold up every
tenant's reads and events.

The messages it requests are then put to the activator (``ActivatorPreview``), which
decides each one with the live delivery rules at its simulated time (consent and consent
mode, recipient, frequency caps, quiet hours) and renders it: the answer says of each
message what the live system would do (``sent``, ``held`` until when, ``skipped`` with the
reason, ``failed`` with the error) and shows it rendered, rather than listing every request
as if it would go out.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pydantic_core
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.runtime.engine.compiled import compile_journey
from services.runtime.engine.engine import Catalog, LiveJourney, on_event, on_timer
from services.runtime.engine.state import (
    Event,
    JourneyState,
    Profile,
    RequestActivation,
    Result,
    SetTimer,
    TimelineEntry,
    Timer,
)
from shared.journey import JourneyBody, JourneyLimits, iter_journey_steps
from shared.journey_validation import (
    CONNECTOR_CHANNELS,
    ConnectorRef,
    JourneyRef,
    TemplateRef,
    validate_journey,
)
from shared.journey_validation import (
    Catalog as ReferenceCatalog,
)
from shared.problems import FieldError
from shared.workers import OverBudget, WorkerPool

JOURNEY_ID = "simulated"


@dataclass(frozen=True)
class SimLimits:
    """How much one simulation may do. About 20,000 event-steps take a second or two of a
    worker's CPU and answer a few megabytes."""

    max_event_steps: int = 20_000  # events times the steps of the journey
    max_timers: int = 10_000  # timers fired in simulated time
    max_answer_entries: int = 20_000  # path entries and messages in the answer
    max_messages: int = 5_000  # messages requested, each decided and rendered


class SimulationRefused(Exception):
    """The simulation cannot be answered: ``path`` is the part of the request to blame,
    ``limit`` the limit it went over (for the metric)."""

    def __init__(self, path: str, message: str, limit: str) -> None:
        super().__init__(message)
        self.path = path
        self.limit = limit

    def __reduce__(self) -> tuple[type[SimulationRefused], tuple[str, str, str]]:
        return (type(self), (self.path, str(self), self.limit))


class Unavailable(Exception):
    """The activator could not be asked about the simulation's messages."""


class ActivatorPreview:
    """Asks the activator what the live rules would do with a simulation's messages, and
    for each one rendered (its internal route, with the service token)."""

    def __init__(self, http: httpx.AsyncClient, activator_url: str) -> None:
        self._http = http
        self._base = activator_url.rstrip("/")

    async def __call__(
        self, workspace_id: str, requests: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if not requests:
            return []
        url = f"{self._base}/internal/workspaces/{quote(workspace_id, safe='')}/previews"
        try:
            r = await self._http.post(url, json={"requests": requests})
        except httpx.HTTPError as exc:
            raise Unavailable(f"activator is not reachable: {type(exc).__name__}") from None
        if r.status_code != 200:
            raise Unavailable(f"activator answered {r.status_code}: {r.text[:300]}")
        items: list[dict[str, Any]] = r.json()["items"]
        return items


class Simulator:
    """Runs simulations in worker processes under a time and memory budget, within
    ``limits``, and has their messages decided by ``preview``; counts them for the
    runtime's metrics."""

    def __init__(
        self,
        pool: WorkerPool,
        limits: SimLimits,
        registry: CollectorRegistry,
        preview: ActivatorPreview | None = None,
    ) -> None:
        self.pool = pool
        self.limits = limits
        self.preview = preview
        self._running = Gauge(
            "waypost_runtime_simulations_running",
            "Journey simulations under way in this process's workers",
            registry=registry,
        )
        self._refused = Counter(
            "waypost_runtime_simulations_refused_total",
            "Journey simulations refused or stopped, by the limit they went over",
            ["limit"],
            registry=registry,
        )
        self._undecided = Counter(
            "waypost_runtime_simulation_previews_failed_total",
            "Journey simulations answered 503: the activator could not decide their messages",
            registry=registry,
        )

    async def run(
        self,
        workspace_id: str,
        body: JourneyBody,
        profiles: dict[str, dict[str, Any]],
        events: list[SimEvent],
        default_timezone: str,
        consent: dict[str, dict[str, Any]] | None = None,
        journey_id: str = JOURNEY_ID,
        winners: Mapping[tuple[str, str], str] | None = None,
    ) -> bytes:
        """The report as JSON; ``SimulationRefused`` when over a limit or the budget,
        ``Unavailable`` when the activator cannot decide the messages."""
        try:
            if (problem := check_size(body, len(events), self.limits)) is not None:
                raise SimulationRefused(problem.path, problem.message, "event_steps")
            with self._running.track_inprogress():
                try:
                    simulated: Simulated = await self.pool.run(
                        run_report, body, profiles, events, default_timezone, self.limits,
                        journey_id, dict(winners or {}),
                    )  # fmt: skip
                except OverBudget as exc:
                    raise SimulationRefused(
                        "events", f"the simulation stopped: {exc}", exc.limit
                    ) from None
                try:
                    messages = await self._decided(workspace_id, simulated.messages, consent or {})
                except Unavailable:
                    self._undecided.inc()
                    raise
        except SimulationRefused as exc:
            self._refused.labels(exc.limit).inc()
            raise
        return b"".join(
            (b'{"profiles":', simulated.profiles, b',"activations":',
             pydantic_core.to_json(messages), b"}")
        )  # fmt: skip

    async def _decided(
        self,
        workspace_id: str,
        messages: list[dict[str, Any]],
        consent: dict[str, dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Each message with the activator's decision and rendering merged in."""
        if self.preview is None:
            return messages
        requests = [_request(workspace_id, m, consent.get(m["profile_id"], {})) for m in messages]
        decided = {d["activation_id"]: d for d in await self.preview(workspace_id, requests)}
        return [
            {**{k: v for k, v in m.items() if k != "context"},
             **{k: v for k, v in decided.get(m["activation_id"], {}).items()
                if k != "activation_id"}}
            for m in messages
        ]  # fmt: skip

    async def aclose(self) -> None:
        await self.pool.close()


def check_size(body: JourneyBody, events: int, limits: SimLimits) -> FieldError | None:
    """What is wrong with simulating ``events`` events through ``body``, before running it."""
    steps = max(1, sum(1 for _ in iter_journey_steps(body)))
    if events * steps > limits.max_event_steps:
        return FieldError(
            "events",
            f"{events} events through {steps} steps is more than {limits.max_event_steps} "
            "event-steps (the simulation limit); simulate fewer events at a time",
        )
    return None


def _request(workspace_id: str, m: dict[str, Any], consent: dict[str, Any]) -> dict[str, Any]:
    """A message as the runtime requests it live (``activations.requested``), made at its
    simulated time."""
    return {
        "activation_id": m["activation_id"], "workspace_id": workspace_id,
        "profile_id": m["profile_id"], "journey_id": m["journey_id"], "version": 1,
        "step_id": m["step_id"], "channel": m["channel"], "connector_id": m["connector_id"],
        "template_id": m["template_id"], "to": m["to"], "consent": consent,
        "context": m["context"], "requested_at": m["at"].isoformat(),
    }  # fmt: skip


@dataclass
class Simulated:
    """What a worker answers: each profile's report as JSON (encoded there, not on the
    loop), and the messages requested, with their context, for the activator to decide."""

    profiles: bytes
    messages: list[dict[str, Any]]


def run_report(
    body: JourneyBody,
    profiles: dict[str, dict[str, Any]],
    events: list[SimEvent],
    default_timezone: str,
    limits: SimLimits,
    journey_id: str = JOURNEY_ID,
    winners: Mapping[tuple[str, str], str] | None = None,
) -> Simulated:
    simulation = Simulation(body, profiles, default_timezone, limits, journey_id, winners)
    try:
        simulation.run(events)
    except OverflowError:
        raise SimulationRefused(
            "events", "simulated time runs outside the years 1 to 9999", "time_range"
        ) from None
    report = simulation.report()
    return Simulated(pydantic_core.to_json(report["profiles"]), simulation.messages())


@dataclass(order=True)
class _Due:
    due_at: datetime
    seq: int
    profile_id: str = field(compare=False)
    timer: SetTimer = field(compare=False)


@dataclass
class SimEvent:
    event_id: str
    profile_id: str
    name: str
    timestamp: datetime
    properties: dict[str, Any]
    traits: dict[str, Any]


def check(raw: object, limits: JourneyLimits) -> tuple[JourneyBody | None, list[FieldError]]:
    """Validate as for publish, with every referenced template and connector taken as ready:
    a simulation needs the journey's shape, not the workspace's resources."""
    body, errors = validate_journey(raw, limits, _assumed(raw), for_publish=False)
    return body, errors


def _assumed(raw: object) -> ReferenceCatalog:
    """Every template, connector and journey the steps name, taken as ready (read from the
    raw body: one that does not parse is still checked beside its parse errors)."""
    templates, connectors, journeys = {}, {}, {}
    channel_type = {channel: kind for kind, channel in CONNECTOR_CHANNELS.items()}
    for step in _raw_steps(raw):
        kind, channel = step.get("type"), step.get("channel")
        template, connector = step.get("template_id"), step.get("connector_id")
        if kind == "activation" and channel in channel_type:
            if isinstance(template, str):
                templates[template] = TemplateRef(channel=channel, status="ready")
            if isinstance(connector, str):
                connectors[connector] = ConnectorRef(type=channel_type[channel])
        journey, stage = step.get("journey_id"), step.get("stage")
        if kind == "jump" and isinstance(journey, str) and isinstance(stage, str):
            journeys[journey] = JourneyRef(stage_names=[stage], status="live")
    return ReferenceCatalog(templates, connectors, journeys, journey_id=None)


def _raw_steps(raw: object) -> Iterator[dict[str, Any]]:
    """Every object of ``raw`` with a ``type`` (the steps, at any depth)."""
    pending = [raw]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            if isinstance(value.get("type"), str):
                yield value
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


class Simulation:
    def __init__(
        self,
        body: JourneyBody,
        profiles: dict[str, dict[str, Any]],
        default_timezone: str = "UTC",
        limits: SimLimits | None = None,
        journey_id: str = JOURNEY_ID,
        winners: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        """``journey_id`` and ``winners``: simulate as the live journey of that id, so an
        experiment assigns each profile the path it would take there (and a decided
        ``send_all`` experiment its winner)."""
        self.journey_id = journey_id
        compiled = compile_journey(journey_id, 1, body)
        self.catalog = Catalog(
            {journey_id: LiveJourney({1: compiled}, 1)}, default_timezone, winners or {}
        )
        self.attributes = profiles
        self.states: dict[str, dict[str, JourneyState]] = {}
        self.paths: dict[str, list[TimelineEntry]] = {p: [] for p in profiles}
        self.activations: list[tuple[str, datetime, RequestActivation]] = []
        self.queue: list[_Due] = []
        self.live_timers: dict[str, SetTimer] = {}
        self.seq = 0
        self.limits = limits or SimLimits()
        self.fired = 0
        self.entries = 0

    def run(self, events: list[SimEvent]) -> None:
        for event in sorted(events, key=lambda e: e.timestamp):
            self._fire_until(event.timestamp)
            self._event(event)
        self._fire_until(None)

    def _profile(self, profile_id: str) -> Profile:
        attributes = self.attributes.setdefault(profile_id, {})
        return Profile(profile_id, attributes, self.catalog.default_timezone)

    def _event(self, event: SimEvent) -> None:
        self.attributes.setdefault(event.profile_id, {}).update(event.traits)
        engine_event = Event(event.event_id, event.name, event.timestamp, event.properties)
        result = on_event(
            self.catalog, self._profile(event.profile_id), self.states.get(event.profile_id, {}),
            engine_event, event.timestamp,
        )  # fmt: skip
        self._apply(event.profile_id, result, event.timestamp)

    def _fire_until(self, until: datetime | None) -> None:
        while self.queue and (until is None or self.queue[0].due_at <= until):
            due = heapq.heappop(self.queue)
            if self.live_timers.get(due.timer.timer_id) is not due.timer:
                continue  # cancelled or replaced
            del self.live_timers[due.timer.timer_id]
            self.fired += 1
            if self.fired > self.limits.max_timers:
                raise SimulationRefused(
                    "events",
                    f"the simulation fires more than {self.limits.max_timers} timers "
                    "(the timer limit); simulate fewer events at a time",
                    "timers",
                )
            timer = Timer(due.timer.timer_id, due.timer.journey_id, due.due_at)
            result = on_timer(
                self.catalog, self._profile(due.profile_id), self.states[due.profile_id],
                timer, due.due_at,
            )  # fmt: skip
            self._apply(due.profile_id, result, due.due_at)

    def _apply(self, profile_id: str, result: Result, at: datetime) -> None:
        self.entries += len(result.timeline) + len(result.activations)
        if self.entries > self.limits.max_answer_entries:
            raise SimulationRefused(
                "events",
                f"the answer would hold more than {self.limits.max_answer_entries} path "
                "entries and messages (the answer limit); simulate fewer events at a time",
                "answer",
            )
        self.states[profile_id] = result.states
        self.paths.setdefault(profile_id, []).extend(result.timeline)
        self.activations += [(profile_id, at, a) for a in result.activations]
        if len(self.activations) > self.limits.max_messages:
            raise SimulationRefused(
                "events",
                f"the simulation requests more than {self.limits.max_messages} messages "
                "(the message limit); simulate fewer events at a time",
                "messages",
            )
        for change in result.timers:
            if isinstance(change, SetTimer):
                self.seq += 1
                self.live_timers[change.timer_id] = change
                heapq.heappush(self.queue, _Due(change.due_at, self.seq, profile_id, change))
            else:
                self.live_timers.pop(change.timer_id, None)

    def report(self) -> dict[str, Any]:
        return {
            "profiles": [self._profile_report(pid) for pid in sorted(self.paths)],
            "activations": [
                {"profile_id": pid, "at": at, "journey_id": self.journey_id,
             "step_id": a.step_id, "channel": a.channel,
                 "activation_id": a.activation_id, "connector_id": a.connector_id,
                 "template_id": a.template_id, "to": a.to}
                for pid, at, a in self.activations
            ],
        }  # fmt: skip

    def messages(self) -> list[dict[str, Any]]:
        """The messages requested, in order, with the context each is rendered with."""
        return [
            {"profile_id": pid, "at": at, "journey_id": self.journey_id,
             "step_id": a.step_id, "channel": a.channel,
             "activation_id": a.activation_id, "connector_id": a.connector_id,
             "template_id": a.template_id, "to": a.to, "context": a.context}
            for pid, at, a in self.activations
        ]  # fmt: skip

    def _profile_report(self, profile_id: str) -> dict[str, Any]:
        state = self.states.get(profile_id, {}).get(self.journey_id)
        if state is None or state.history.entries == 0:
            outcome = None
        elif state.membership is not None:
            outcome = "active"
        else:
            outcome = state.history.last_outcome.value if state.history.last_outcome else None
        path = [
            {k: v for k, v in asdict(e).items() if k != "journey_id"}
            for e in self.paths.get(profile_id, [])
        ]
        return {"profile_id": profile_id, "path": path, "outcome": outcome}
