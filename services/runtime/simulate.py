"""Run a journey definition against timestamped events on the pure engine, in simulated
time: what each profile would do and which messages would go out. Nothing is stored or sent."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

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
from shared.journey import ActivationStep, JourneyBody, JourneyLimits, JumpStep, iter_journey_steps
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

JOURNEY_ID = "simulated"
MAX_TIMERS = 100_000  # every journey ends its timers; this only bounds a pathological input


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
    try:
        body = JourneyBody.model_validate(raw)
    except ValueError:
        return ReferenceCatalog()
    templates, connectors, journeys = {}, {}, {}
    channel_type = {channel: kind for kind, channel in CONNECTOR_CHANNELS.items()}
    for _path, step in iter_journey_steps(body):
        if isinstance(step, ActivationStep):
            templates[step.template_id] = TemplateRef(channel=step.channel, status="ready")
            connectors[step.connector_id] = ConnectorRef(type=channel_type[step.channel])
        if isinstance(step, JumpStep) and step.journey_id:
            journeys[step.journey_id] = JourneyRef(stage_names=[step.stage], status="live")
    return ReferenceCatalog(templates, connectors, journeys, journey_id=None)


class Simulation:
    def __init__(
        self, body: JourneyBody, profiles: dict[str, dict[str, Any]], default_timezone: str = "UTC",
        journey_id: str = JOURNEY_ID, winners: Mapping[tuple[str, str], str] | None = None,
    ) -> None:  # fmt: skip
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
        fired = 0
        while self.queue and (until is None or self.queue[0].due_at <= until):
            due = heapq.heappop(self.queue)
            if self.live_timers.get(due.timer.timer_id) is not due.timer:
                continue  # cancelled or replaced
            del self.live_timers[due.timer.timer_id]
            fired += 1
            if fired > MAX_TIMERS:
                raise RuntimeError("the simulation set more timers than any journey can")
            timer = Timer(due.timer.timer_id, due.timer.journey_id, due.due_at)
            result = on_timer(
                self.catalog, self._profile(due.profile_id), self.states[due.profile_id],
                timer, due.due_at,
            )  # fmt: skip
            self._apply(due.profile_id, result, due.due_at)

    def _apply(self, profile_id: str, result: Result, at: datetime) -> None:
        self.states[profile_id] = result.states
        self.paths.setdefault(profile_id, []).extend(result.timeline)
        self.activations += [(profile_id, at, a) for a in result.activations]
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
                {"profile_id": pid, "at": at, "step_id": a.step_id, "channel": a.channel,
                 "activation_id": a.activation_id, "connector_id": a.connector_id,
                 "template_id": a.template_id, "to": a.to}
                for pid, at, a in self.activations
            ],
        }  # fmt: skip

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
