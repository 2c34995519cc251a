"""The rules of "What moves a profile": goal, exits, stage exits, milestones, branches, then
entries; timers; stop; in-flight migration. One call handles one input for one profile."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from services.runtime.engine.compiled import CompiledJourney, first_of
from services.runtime.engine.state import (
    CancelTimer,
    Event,
    Explanation,
    Flow,
    JourneyState,
    Membership,
    Outcome,
    Pending,
    Profile,
    RequestActivation,
    Result,
    SetTimer,
    TimelineEntry,
    TimelineKind,
    Timer,
    TimerKind,
)
from shared.durations import to_timedelta
from shared.journey import (
    ActivationStep,
    AttributeSplitStep,
    BranchStep,
    EndStep,
    ExperimentSplitStep,
    JumpStep,
    RandomSplitStep,
    WaitStep,
)
from shared.localtime import next_time_of_day, parse_hhmm, zone
from shared.matcher import EventView

MAX_STEPS_PER_INPUT = 1_000  # a guard: journeys are trees, so each step runs once per entry


@dataclass
class LiveJourney:
    """A journey the runtime knows: every published version, the newest live one, status."""

    versions: dict[int, CompiledJourney]
    live_version: int
    status: Literal["live", "paused"] = "live"

    @property
    def live(self) -> CompiledJourney:
        return self.versions[self.live_version]


@dataclass
class Catalog:
    """A workspace's live journeys, and where its profiles live when they do not say."""

    journeys: dict[str, LiveJourney] = field(default_factory=dict)
    default_timezone: str = "UTC"
    # Decided experiments: (journey id, step id) -> the winning path's name.
    winners: Mapping[tuple[str, str], str] = field(default_factory=dict)


def lookup(attributes: Mapping[str, Any], path: str) -> Any:
    node: Any = attributes
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return None
    return node


def activation_id(journey_id: str, version: int, profile_id: str, entry: int, step: str) -> str:
    raw = f"{journey_id}|{version}|{profile_id}|{entry}|{step}".encode()
    return "act_" + hashlib.sha256(raw).hexdigest()[:32]


def timer_id(profile_id: str, journey_id: str, entry: int, kind: TimerKind, where: str) -> str:
    return f"{profile_id}/{journey_id}/{entry}/{kind.value}/{where}"


def bucket(*parts: object) -> float:
    """A number in [0, 100) fixed by ``parts``: a random split that replays the same way."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


class Run:
    """One input applied to one profile. Works on copies: the caller's state is untouched."""

    def __init__(
        self,
        catalog: Catalog,
        profile: Profile,
        states: Mapping[str, JourneyState],
        now: datetime,
        cause: dict[str, str],
    ) -> None:
        self.catalog = catalog
        self.profile = profile
        self.now = now
        self.cause = cause
        self.result = Result(states={k: v.copy() for k, v in states.items()})
        self.left_now: set[str] = set()
        self.steps_run = 0

    # Public entry points ----------------------------------------------------------------

    def event(self, event: Event) -> Result:
        view = EventView(event.name, event.properties)
        for journey_id in sorted(self.result.states):
            member = self.result.states[journey_id].membership
            if member is not None:
                self._move(member, view, event)
        for journey_id in sorted(self.catalog.journeys):
            if journey_id not in self.left_now and not self._inside(journey_id):
                self._maybe_enter(journey_id, view, event)
        return self.result

    def timer(self, timer: Timer) -> Result:
        member = self._member(timer.journey_id)
        pending = (
            next((t for t in member.timers() if t.timer_id == timer.timer_id), None)
            if member
            else None
        )
        if member is None or pending is None:
            self._explain(timer.journey_id, "stale_timer", ["the profile has moved on"])
            return self.result
        live = self.catalog.journeys.get(member.journey_id)
        if live is not None and live.status == "paused":
            member.flow = Flow.HELD
            self._explain(member.journey_id, "paused", ["held until the journey resumes"])
            return self.result
        self._fire(member, pending)
        return self.result

    def resume(self, journey_id: str) -> Result:
        """Timers that fell due while the journey was paused go on now."""
        member = self._member(journey_id)
        if member is None or member.flow is not Flow.HELD:
            return self.result
        for pending in sorted(member.timers(), key=lambda t: t.due_at):
            if pending.due_at <= self.now and self._member(journey_id) is member:
                self._fire(member, pending)
        if member.flow is Flow.HELD:
            member.flow = Flow.WAITING if member.step_timer else Flow.ENDED
        return self.result

    def stop(self, journey_id: str, reason: str = "journey stopped") -> Result:
        member = self._member(journey_id)
        if member is not None:
            self._leave(member, Outcome.STOPPED, {"reason": reason})
        return self.result

    # Moving a profile that is inside ---------------------------------------------------------

    def _move(self, m: Membership, view: EventView, event: Event) -> None:
        live = self.catalog.journeys.get(m.journey_id)
        if live is None:
            return
        if live.status == "paused":
            self._explain(m.journey_id, "paused", ["the journey is paused"])
            return
        j = live.versions[m.version]
        attrs = self.profile.attributes
        if j.goal and j.goal.matches(view, attrs):
            self._leave(m, Outcome.GOAL, {"reason": "goal"})
            self._explain(m.journey_id, "goal", [f"event {event.name} met the goal"])
            return
        if any(rule.matches(view, attrs) for rule in j.exits):
            self._leave(m, Outcome.EXITED, {"reason": "journey exit criteria"})
            self._explain(m.journey_id, "exited", ["journey exit criteria matched"])
            return
        stage = j.stages[m.stage]
        for rule, destination in stage.exits:
            if rule.matches(view, attrs):
                self._stage_exit(m, j, destination, event)
                return
        has_next = stage.index + 1 < len(j.stages)
        if has_next and stage.milestone and stage.milestone.matches(view, attrs):
            self._enter_stage(m, j, stage.index + 1, "milestone", _trigger(event))
            self._explain(m.journey_id, "moved", [f"milestone of '{stage.name}' met"])
            return
        if m.flow is Flow.BRANCHING and self._branch_matches(m, j, view, event):
            branch = m.step_id
            self._take_branch(m, j, "yes")
            self._explain(m.journey_id, "branch", [f"branch {branch}: yes"])
            return
        self._explain(m.journey_id, "no_match", ["nothing in the current stage matched"])

    def _stage_exit(self, m: Membership, j: CompiledJourney, to: int | None, event: Event) -> None:
        stage = j.stages[m.stage].name
        if to is None:
            self._leave(m, Outcome.EXITED, {"reason": "stage exit criteria", "stage": stage})
            self._explain(m.journey_id, "exited", [f"exit criteria of stage '{stage}' matched"])
            return
        self._enter_stage(m, j, to, "exit_rule", _trigger(event))
        self._explain(m.journey_id, "moved", [f"exit rule of '{stage}' sent it on"])

    def _branch_matches(
        self, m: Membership, j: CompiledJourney, view: EventView, event: Event
    ) -> bool:
        matcher = j.matchers.get(m.step_id or "")
        if matcher is None or not matcher.matches(view, self.profile.attributes):
            return False
        # An event about a message pins to this entry's message: an old email's open is not it.
        props = event.properties
        if props.get("journey_id") == m.journey_id and "activation_id" in props:
            pinned: bool = m.activations.get(str(props.get("step_id"))) == props["activation_id"]
            return pinned
        return True

    def _take_branch(self, m: Membership, j: CompiledJourney, path: str) -> None:
        step = j.steps[m.step_id or ""]
        assert isinstance(step, BranchStep)
        self._cancel(m.step_timer)
        m.step_timer = None
        self._log(m, j, "branch_taken", {"path": path})
        following = j.next_step[step.id]
        self._advance(m, j, first_of(step.yes if path == "yes" else step.no, following))

    # Timers -----------------------------------------------------------------------------------

    def _fire(self, m: Membership, pending: Pending) -> None:
        j = self.catalog.journeys[m.journey_id].versions[m.version]
        if pending.kind is TimerKind.WAIT:
            m.step_timer = None
            self._advance(m, j, j.next_step[pending.step_id or ""])
        elif pending.kind is TimerKind.BRANCH:
            self._take_branch(m, j, "no")
        elif pending.kind is TimerKind.STALE:
            stage = j.stages[m.stage].name
            self._leave(m, Outcome.STALE, {"reason": "max time in stage", "stage": stage})
        else:
            self._leave(m, Outcome.STALE, {"reason": "max time in journey"})

    # Entering -----------------------------------------------------------------------------

    def _maybe_enter(self, journey_id: str, view: EventView, event: Event) -> None:
        live = self.catalog.journeys[journey_id]
        j = live.live
        entry = j.stages[0].entry
        reasons = entry.explain(view, self.profile.attributes) if entry else ["no entry"]
        if reasons:
            self._explain(journey_id, "no_match", reasons)
            return
        if live.status == "paused":
            self._explain(journey_id, "paused", ["the journey is paused: entries are refused"])
            return
        schedule = j.body.schedule
        if (schedule.start_at and self.now < schedule.start_at) or (
            schedule.end_at and self.now >= schedule.end_at
        ):
            self._explain(journey_id, "outside_schedule", ["the journey's schedule is closed"])
            return
        refusal = self._reentry_refusal(journey_id, j)
        if refusal:
            self._explain(journey_id, "reentry_refused", [refusal])
            return
        self._enter(journey_id, j, 0, _trigger(event))
        self._explain(journey_id, "entered", [f"entry criteria of '{j.stages[0].name}' met"])

    def _reentry_refusal(self, journey_id: str, j: CompiledJourney) -> str | None:
        """The re-entry table of docs/concepts.md; its row for jumping in gives the same answers."""
        history = self._state(journey_id).history
        if history.entries == 0:
            return None
        mode = j.body.reentry.mode
        if mode == "never":
            return "re-entry is 'never' and the profile was in this journey before"
        if mode == "unless_goal_met" and history.goal_met:
            return "re-entry is 'unless_goal_met' and the profile reached the goal"
        if history.last_left_at and self.now < history.last_left_at + j.cooldown:
            return f"cooldown until {(history.last_left_at + j.cooldown).isoformat()}"
        return None

    def _enter(
        self, journey_id: str, j: CompiledJourney, stage: int, trigger: dict[str, Any]
    ) -> Membership:
        state = self._state(journey_id)
        state.history.entries += 1
        m = Membership(
            journey_id=journey_id,
            version=j.version,
            entry=state.history.entries,
            stage=stage,
            step_id=None,
            flow=Flow.ENDED,
            entered_at=self.now,
            stage_entered_at=self.now,
            trigger=trigger,
        )
        state.membership = m
        self._log(m, j, "entered", {"entry": m.entry, "stage": j.stages[stage].name})
        if j.max_time is not None:
            m.journey_timer = self._set(m, TimerKind.JOURNEY, "journey", self.now + j.max_time)
        self._enter_stage(m, j, stage, "entry", trigger)
        return m

    def _enter_stage(
        self, m: Membership, j: CompiledJourney, index: int, reason: str, trigger: dict[str, Any]
    ) -> None:
        for pending in (m.step_timer, m.stage_timer):
            self._cancel(pending)
        m.step_timer = m.stage_timer = None
        before = j.stages[m.stage].name
        m.stage, m.stage_entered_at, m.trigger = index, self.now, trigger
        stage = j.stages[index]
        if reason != "entry":
            self._log(m, j, "stage_changed", {"from": before, "to": stage.name, "reason": reason})
        if stage.max_time is not None:
            due = self.now + stage.max_time
            m.stage_timer = self._set(m, TimerKind.STALE, f"stage{index}", due)
        self._advance(m, j, stage.first_step)

    # Walking steps ----------------------------------------------------------------------------

    def _advance(self, m: Membership, j: CompiledJourney, step_id: str | None) -> None:
        while step_id is not None:
            self.steps_run += 1
            if self.steps_run > MAX_STEPS_PER_INPUT:
                raise RuntimeError("step guard tripped: the journey graph has a loop")
            step = j.steps[step_id]
            m.step_id = step_id
            self._log(m, j, "step_started", {"type": step.type})
            following = j.next_step[step_id]
            if isinstance(step, WaitStep):
                if self._wait(m, j, step):
                    return
                step_id = following
            elif isinstance(step, ActivationStep):
                self._activate(m, j, step)
                step_id = following
            elif isinstance(step, BranchStep):
                due = self.now + to_timedelta(step.timeout)
                m.step_timer = self._set(m, TimerKind.BRANCH, step.id, due, step.id)
                m.flow = Flow.BRANCHING
                self._log(m, j, "waiting", {"due_at": due.isoformat(), "for": "branch"})
                return
            elif isinstance(step, ExperimentSplitStep):
                step_id = self._experiment(m, j, step, following)
            elif isinstance(step, AttributeSplitStep | RandomSplitStep):
                step_id = self._split(m, j, step, following)
            elif isinstance(step, JumpStep):
                self._jump(m, j, step)
                return
            else:
                assert isinstance(step, EndStep)
                break
        m.flow = Flow.ENDED

    def _wait(self, m: Membership, j: CompiledJourney, step: WaitStep) -> bool:
        """Set the wait's timer; False when it is already due (go on at once)."""
        due = self._due(step)
        if due <= self.now:
            return False
        m.step_timer = self._set(m, TimerKind.WAIT, step.id, due, step.id)
        m.flow = Flow.WAITING
        self._log(m, j, "waiting", {"due_at": due.isoformat(), "for": "wait"})
        return True

    def _due(self, step: WaitStep) -> datetime:
        if step.duration is not None:
            return self.now + to_timedelta(step.duration)
        if step.until is not None:
            return step.until
        assert step.time_of_day is not None
        tz_name = lookup(self.profile.attributes, step.timezone_attribute)
        tz = zone(tz_name if isinstance(tz_name, str) else None, self.profile.default_timezone)
        return next_time_of_day(self.now, parse_hhmm(step.time_of_day), tz, step.days)

    def _activate(self, m: Membership, j: CompiledJourney, step: ActivationStep) -> None:
        ident = activation_id(m.journey_id, m.version, self.profile.profile_id, m.entry, step.id)
        m.activations[step.id] = ident
        to = lookup(self.profile.attributes, step.to_attribute) if step.to_attribute else None
        self.result.activations.append(
            RequestActivation(
                activation_id=ident,
                journey_id=m.journey_id,
                version=m.version,
                step_id=step.id,
                channel=step.channel,
                connector_id=step.connector_id,
                template_id=step.template_id,
                to=to,
                context={
                    "profile": dict(self.profile.attributes),
                    "event": dict(m.trigger),
                    "journey": {"id": m.journey_id, "name": j.name, "version": m.version},
                    "step": {"id": step.id},
                },
            )
        )
        self._log(m, j, "activation", {"activation_id": ident, "status": "requested",
                                       "channel": step.channel})  # fmt: skip

    def _split(
        self,
        m: Membership,
        j: CompiledJourney,
        step: AttributeSplitStep | RandomSplitStep,
        following: str | None,
    ) -> str | None:
        if isinstance(step, AttributeSplitStep):
            for i, (matcher, first) in enumerate(j.split_cases[step.id]):
                if matcher.matches(None, self.profile.attributes):
                    self._log(m, j, "branch_taken", {"path": f"case {i}"})
                    return first
            self._log(m, j, "branch_taken", {"path": "default"})
            return first_of(step.default, following)
        roll = bucket(self.profile.profile_id, m.journey_id, m.entry, step.id)
        upto = 0.0
        for i, path in enumerate(step.paths):
            upto += path.percent
            if roll < upto or i == len(step.paths) - 1:
                self._log(m, j, "branch_taken", {"path": f"path {i}", "roll": roll})
                return first_of(path.steps, following)
        return following

    def _experiment(
        self, m: Membership, j: CompiledJourney, step: ExperimentSplitStep, following: str | None
    ) -> str | None:
        """After a decision with ``send_all``, the winner; else a path by weight, assigned.

        The roll leaves the entry out: a profile that enters again keeps its path, so one
        profile is one unit of the experiment (only its first assignment is counted)."""
        winner = self.catalog.winners.get((m.journey_id, step.id))
        if winner is not None and step.experiment.on_winner == "send_all":
            for path in step.paths:
                if path.name == winner:
                    self._log(m, j, "branch_taken", {"path": winner, "experiment": "winner"})
                    return first_of(path.steps, following)
        roll = bucket(self.profile.profile_id, m.journey_id, step.id)
        upto = 0.0
        for i, path in enumerate(step.paths):
            upto += path.percent
            if roll < upto or i == len(step.paths) - 1:
                detail = {"path": path.name, "experiment": "assigned", "roll": roll}
                self._log(m, j, "branch_taken", detail)
                return first_of(path.steps, following)
        return following

    def _jump(self, m: Membership, j: CompiledJourney, step: JumpStep) -> None:
        if step.journey_id is None or step.journey_id == m.journey_id:
            index = j.stage_index(step.stage)
            assert index is not None, "validated at publish: a later stage of this journey"
            self._enter_stage(m, j, index, "jump", m.trigger)
            return
        trigger = m.trigger
        self._leave(m, Outcome.JUMPED, {"to_journey": step.journey_id, "to_stage": step.stage})
        target = self.catalog.journeys.get(step.journey_id)
        refusal = self._jump_refusal(step, target)
        if refusal or target is None:
            self._explain(step.journey_id, "reentry_refused", [refusal or "unknown journey"])
            return
        index = target.live.stage_index(step.stage)
        assert index is not None
        self._enter(step.journey_id, target.live, index, trigger)
        self._explain(step.journey_id, "entered", [f"jumped in from {m.journey_id}"])

    def _jump_refusal(self, step: JumpStep, target: LiveJourney | None) -> str | None:
        assert step.journey_id is not None
        if target is None or target.status != "live":
            return f"journey {step.journey_id} is not live"
        if target.live.stage_index(step.stage) is None:
            return f"journey {step.journey_id} has no stage '{step.stage}'"
        if self._inside(step.journey_id):
            return "the profile is already in that journey"
        return self._reentry_refusal(step.journey_id, target.live)

    # Leaving, bookkeeping ---------------------------------------------------------------------

    def _leave(self, m: Membership, outcome: Outcome, detail: dict[str, Any]) -> None:
        j = self.catalog.journeys[m.journey_id].versions[m.version] if self._known(m) else None
        for pending in m.timers():
            self._cancel(pending)
        state = self._state(m.journey_id)
        state.membership = None
        state.history.last_outcome = outcome
        state.history.last_left_at = self.now
        state.history.goal_met = state.history.goal_met or outcome is Outcome.GOAL
        self.left_now.add(m.journey_id)
        stage = j.stages[m.stage].name if j else None
        self._entry(m, "left", stage, {"outcome": outcome.value, **detail})

    def _known(self, m: Membership) -> bool:
        live = self.catalog.journeys.get(m.journey_id)
        return live is not None and m.version in live.versions

    def _set(
        self, m: Membership, kind: TimerKind, where: str, due: datetime, step: str | None = None
    ) -> Pending:
        ident = timer_id(self.profile.profile_id, m.journey_id, m.entry, kind, where)
        self.result.timers.append(SetTimer(ident, m.journey_id, due, kind))
        return Pending(ident, kind, due, step)

    def _cancel(self, pending: Pending | None) -> None:
        if pending is not None:
            self.result.timers.append(CancelTimer(pending.timer_id))

    def _state(self, journey_id: str) -> JourneyState:
        return self.result.states.setdefault(journey_id, JourneyState())

    def _member(self, journey_id: str) -> Membership | None:
        state = self.result.states.get(journey_id)
        return state.membership if state else None

    def _inside(self, journey_id: str) -> bool:
        return self._member(journey_id) is not None

    def _log(
        self, m: Membership, j: CompiledJourney, kind: TimelineKind, detail: dict[str, Any]
    ) -> None:
        step = m.step_id if kind not in ("entered", "stage_changed") else None
        self._entry(m, kind, j.stages[m.stage].name, detail, step)

    def _entry(
        self,
        m: Membership,
        kind: TimelineKind,
        stage: str | None,
        detail: dict[str, Any],
        step: str | None = None,
    ) -> None:
        self.result.timeline.append(
            TimelineEntry(self.now, m.journey_id, m.version, kind, stage, step, detail, self.cause)
        )

    def _explain(self, journey_id: str, outcome: str, reasons: list[str]) -> None:
        self.result.explanations.append(Explanation(journey_id, outcome, reasons))


def _trigger(event: Event) -> dict[str, Any]:
    return {"name": event.name, "properties": dict(event.properties), "event_id": event.event_id}


# Entry points -----------------------------------------------------------------------------


def on_event(
    catalog: Catalog, profile: Profile, states: Mapping[str, JourneyState], event: Event,
    now: datetime,
) -> Result:  # fmt: skip
    return Run(catalog, profile, states, now, {"event_id": event.event_id}).event(event)


def on_timer(
    catalog: Catalog, profile: Profile, states: Mapping[str, JourneyState], timer: Timer,
    now: datetime,
) -> Result:  # fmt: skip
    return Run(catalog, profile, states, now, {"timer": timer.timer_id}).timer(timer)


def on_stop(
    catalog: Catalog, profile: Profile, states: Mapping[str, JourneyState], journey_id: str,
    now: datetime, reason: str = "journey stopped",
) -> Result:  # fmt: skip
    """Everyone leaves: the journey was stopped, or its schedule closed (``reason``)."""
    return Run(catalog, profile, states, now, {"change": reason}).stop(journey_id, reason)


def on_resume(
    catalog: Catalog, profile: Profile, states: Mapping[str, JourneyState], journey_id: str,
    now: datetime,
) -> Result:  # fmt: skip
    return Run(catalog, profile, states, now, {"change": "resumed"}).resume(journey_id)


def migrate(state: JourneyState, source: CompiledJourney, target: CompiledJourney) -> bool:
    """Move the profile onto ``target`` in place if its stage and step exist there.

    Pending timers keep their ids and so their due times.
    """
    m = state.membership
    if m is None or m.version != source.version:
        return False
    index = target.stage_index(source.stages[m.stage].name)
    if index is None:
        return False
    if m.step_id is not None and target.stage_of_step.get(m.step_id) != index:
        return False
    m.version, m.stage = target.version, index
    return True


__all__ = ["Catalog", "LiveJourney", "migrate", "on_event", "on_resume", "on_stop", "on_timer"]
