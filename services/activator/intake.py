"""Intake: each batch of requested activations is decided and stored in one transaction.

Everything that can be decided on arrival is: a request without consent or recipient, or
over a frequency cap, is skipped with its reason (final); the rest are ``pending`` and due
now, or, inside quiet hours in the profile's timezone, ``held`` with a scheduler timer that
releases them when the window opens (see ``holds``). A request whose activation id is
already stored (redelivered by NATS, or published twice) changes nothing.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.activator import policy
from services.activator.designer import Designer
from services.activator.holds import hold_timer
from services.activator.metrics import ActivatorMetrics
from services.activator.models import Delivery, SkipReason, Status
from services.activator.repository import HELD, PENDING
from services.activator.schemas import ActivationRequested, WorkspaceRules
from services.activator.settings import ActivatorSettings
from services.activator.store import IntakeStore, budget_name
from shared import db
from shared.clock import Clock
from shared.timers import TimerSchedule


class Intake:
    def __init__(
        self,
        pool: asyncpg.Pool,
        designer: Designer,
        clock: Clock,
        settings: ActivatorSettings,
        metrics: ActivatorMetrics,
        on_stored: Callable[[list[Delivery]], None],
        on_held: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._designer = designer
        self._clock = clock
        self._spread_s = settings.quiet_hours_spread_s
        self._metrics = metrics
        self._on_stored = on_stored
        self._on_held = on_held

    async def take(self, requests: Sequence[ActivationRequested]) -> None:
        by_workspace = _by_workspace(_first_of_each(requests))
        # As of the revision the requests were made at (read again when it changed), so a
        # settings change saved before they were requested applies to them.
        rules = await self._rules(by_workspace)
        now = self._clock.now()
        rows: list[dict[str, Any]] = []
        async with db.raw_transaction(self._pool) as conn:
            repo = IntakeStore(conn)
            known = await repo.known([r.activation_id for r in requests])
            for workspace_id, group in by_workspace.items():
                fresh = [r for r in group if r.activation_id not in known]
                rows += await self._decide(repo, fresh, rules[workspace_id], now)
            stored = await repo.add(rows)
            held = [r for r in rows if r["status"] == HELD and r["activation_id"] in stored]
            await repo.put_timers([_timer(row) for row in held])
        if held:
            self._on_held()  # quiet-hours timers in the outbox
        for row in rows:
            self._metrics.deliveries.labels(row["channel"], row["status"]).inc()
        # Due now: handed to the delivery loop at once rather than found by its next claim.
        self._on_stored(
            [
                Delivery(**row)
                for row in rows
                if row["status"] == PENDING and row["activation_id"] in stored
            ]
        )

    async def _rules(
        self, by_workspace: dict[str, list[ActivationRequested]]
    ) -> dict[str, WorkspaceRules]:
        found = await asyncio.gather(
            *(self._designer.rules_at(ws, _revision(group)) for ws, group in by_workspace.items())
        )
        return dict(zip(by_workspace, found, strict=True))

    async def _decide(
        self,
        repo: IntakeStore,
        requests: Sequence[ActivationRequested],
        rules: WorkspaceRules,
        now: datetime,
    ) -> list[dict[str, Any]]:
        erased = await self._erased(repo, requests)
        refused = {r.activation_id: why for r in requests if (why := policy.refusal(r, rules))}
        refused |= dict.fromkeys(erased, SkipReason.PROFILE_ERASED)
        refused |= dict.fromkeys(await self._stopped(repo, requests), SkipReason.JOURNEY_STOPPED)
        admissible = [r for r in requests if r.activation_id not in refused]
        capped = await self._over_caps(repo, admissible, rules, now)
        rows = []
        for r in requests:
            reason = refused.get(r.activation_id)
            if reason is None and r.activation_id in capped:
                reason = SkipReason.FREQUENCY_CAP
            rows.append(self._row(r, rules, reason, now))
        return rows

    async def _erased(self, repo: IntakeStore, requests: Sequence[ActivationRequested]) -> set[str]:
        """The requests made for a profile before it was erased (or that do not say when
        they were made, for a profile that was)."""
        if not requests:
            return set()
        erased = await repo.erased(requests[0].workspace_id, (r.profile_id for r in requests))
        return {
            r.activation_id
            for r in requests
            if r.profile_id in erased
            and (r.requested_at is None or r.requested_at <= erased[r.profile_id])
        }

    async def _stopped(
        self, repo: IntakeStore, requests: Sequence[ActivationRequested]
    ) -> set[str]:
        """The requests of a journey stopped already: made before the stop, they were on
        their way when it was heard (a stopped journey makes no more)."""
        if not requests:
            return set()
        stopped = await repo.stopped(requests[0].workspace_id, (r.journey_id for r in requests))
        return {r.activation_id for r in requests if r.journey_id in stopped}

    async def _over_caps(
        self,
        repo: IntakeStore,
        requests: Sequence[ActivationRequested],
        rules: WorkspaceRules,
        now: datetime,
    ) -> set[str]:
        keys = policy.cap_keys(requests, rules)
        if not keys:
            return set()
        workspace_id = requests[0].workspace_id
        await repo.lock_budgets(budget_name(workspace_id, k.profile_id, k.channel) for k in keys)
        used: dict[policy.CapKey, int] = {}
        for channel, per in {(k.channel, k.per) for k in keys}:
            profiles = sorted({k.profile_id for k in keys if (k.channel, k.per) == (channel, per)})
            counts = await repo.cap_usage(workspace_id, channel, profiles, now - per)
            used |= {policy.CapKey(p, channel, per): n for p, n in counts.items()}
        return policy.over_caps(requests, rules, used)

    def _row(
        self,
        r: ActivationRequested,
        rules: WorkspaceRules,
        reason: SkipReason | None,
        now: datetime,
    ) -> dict[str, Any]:
        due: datetime | None = None
        status = Status.SKIPPED
        if reason is None:
            held = policy.held_until(r, rules, now, self._spread_s)
            due = held or now
            status = Status.PENDING if held is None else Status.HELD
        erased = reason is SkipReason.PROFILE_ERASED
        return {
            "activation_id": r.activation_id,
            "workspace_id": r.workspace_id,
            "profile_id": r.profile_id,
            "journey_id": r.journey_id,
            "version": r.version,
            "step_id": r.step_id,
            "channel": r.channel,
            "connector_id": r.connector_id,
            "template_id": r.template_id,
            "recipient": None if erased else policy.recipient_for(r),
            "request": {} if erased else r.model_dump(mode="json"),
            "status": status.value,
            "reason": None if reason is None else reason.value,
            "attempts": 0,
            "next_attempt_at": due,
            "created_at": now,
            "updated_at": now,
        }


def _timer(row: dict[str, Any]) -> TimerSchedule:
    return hold_timer(
        row["activation_id"], row["workspace_id"], row["profile_id"], row["journey_id"],
        row["attempts"], row["next_attempt_at"],
    )  # fmt: skip


def _revision(requests: Sequence[ActivationRequested]) -> str | None:
    """The designer revision the requests were made at; None when they do not all say the
    same (the rules are read fresh then)."""
    revisions = {r.rules_revision for r in requests}
    return revisions.pop() if len(revisions) == 1 else None


def _first_of_each(requests: Iterable[ActivationRequested]) -> list[ActivationRequested]:
    unique: dict[str, ActivationRequested] = {}
    for r in requests:
        unique.setdefault(r.activation_id, r)
    return list(unique.values())


def _by_workspace(
    requests: Iterable[ActivationRequested],
) -> dict[str, list[ActivationRequested]]:
    grouped: dict[str, list[ActivationRequested]] = defaultdict(list)
    for r in requests:
        grouped[r.workspace_id].append(r)
    return dict(grouped)
