"""A journey version made ready to run: matchers compiled once, each step linked to the
step that follows it (paths of branches and splits rejoin after their step)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from shared.durations import to_timedelta
from shared.journey import (
    AnyStep,
    AttributeSplitStep,
    BranchStep,
    ExperimentSplitStep,
    JourneyBody,
    RandomSplitStep,
)
from shared.matcher import Matcher, compile_criteria


@dataclass(frozen=True)
class CompiledStage:
    index: int
    name: str
    entry: Matcher | None
    milestone: Matcher | None
    exits: tuple[tuple[Matcher, int | None], ...]  # (criteria, destination stage or leave)
    max_time: timedelta | None
    first_step: str | None


@dataclass
class CompiledJourney:
    journey_id: str
    version: int
    body: JourneyBody
    stages: list[CompiledStage]
    steps: dict[str, AnyStep] = field(default_factory=dict)
    next_step: dict[str, str | None] = field(default_factory=dict)
    stage_of_step: dict[str, int] = field(default_factory=dict)
    matchers: dict[str, Matcher] = field(default_factory=dict)  # branch criteria, by step id
    split_cases: dict[str, list[tuple[Matcher, str | None]]] = field(default_factory=dict)
    # Experiment splits by step id, with what converts a profile (the goal for "goal").
    experiments: dict[str, ExperimentSplitStep] = field(default_factory=dict)
    metrics: dict[str, Matcher] = field(default_factory=dict)
    goal: Matcher | None = None
    exits: list[Matcher] = field(default_factory=list)
    cooldown: timedelta = timedelta(0)
    max_time: timedelta | None = None

    @property
    def name(self) -> str:
        return self.body.name

    def stage_index(self, name: str) -> int | None:
        for stage in self.stages:
            if stage.name == name:
                return stage.index
        return None


def compile_journey(journey_id: str, version: int, body: JourneyBody) -> CompiledJourney:
    compiled = CompiledJourney(journey_id, version, body, stages=[])
    names = [s.name for s in body.stages]
    for i, stage in enumerate(body.stages):
        first = _link(compiled, stage.steps, None, i)
        exits = tuple(
            (compile_criteria(rule.criteria), names.index(rule.to_stage) if rule.to_stage else None)
            for rule in stage.exit_criteria
        )
        compiled.stages.append(
            CompiledStage(
                index=i,
                name=stage.name,
                entry=compile_criteria(stage.entry) if stage.entry else None,
                milestone=compile_criteria(stage.milestone) if stage.milestone else None,
                exits=exits,
                max_time=to_timedelta(stage.max_time_in_stage) if stage.max_time_in_stage else None,
                first_step=first,
            )
        )
    compiled.goal = compile_criteria(body.goal.criteria) if body.goal else None
    for step_id, step in compiled.experiments.items():
        metric = step.experiment.metric
        matcher = compiled.goal if metric == "goal" else compile_criteria(metric)
        if matcher is not None:
            compiled.metrics[step_id] = matcher
    compiled.exits = [compile_criteria(rule.criteria) for rule in body.exit_criteria]
    compiled.cooldown = to_timedelta(body.reentry.cooldown)
    if body.max_time_in_journey:
        compiled.max_time = to_timedelta(body.max_time_in_journey)
    return compiled


def _link(
    compiled: CompiledJourney, steps: Sequence[AnyStep], after: str | None, stage: int
) -> str | None:
    """Register ``steps``; the last one continues at ``after``. Returns the first id."""
    for i, step in enumerate(steps):
        following = steps[i + 1].id if i + 1 < len(steps) else after
        compiled.steps[step.id] = step
        compiled.next_step[step.id] = following
        compiled.stage_of_step[step.id] = stage
        _link_children(compiled, step, following, stage)
    return steps[0].id if steps else after


def _link_children(
    compiled: CompiledJourney, step: AnyStep, following: str | None, stage: int
) -> None:
    if isinstance(step, BranchStep):
        compiled.matchers[step.id] = compile_criteria(step.criteria)
        _link(compiled, step.yes, following, stage)
        _link(compiled, step.no, following, stage)
    elif isinstance(step, AttributeSplitStep):
        cases = [
            (compile_criteria(case.criteria), _link(compiled, case.steps, following, stage))
            for case in step.cases
        ]
        compiled.split_cases[step.id] = cases
        _link(compiled, step.default, following, stage)
    elif isinstance(step, RandomSplitStep | ExperimentSplitStep):
        if isinstance(step, ExperimentSplitStep):
            compiled.experiments[step.id] = step
        for path in step.paths:
            _link(compiled, path.steps, following, stage)


def first_of(steps: Sequence[AnyStep], following: str | None) -> str | None:
    return steps[0].id if steps else following
