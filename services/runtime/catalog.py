"""The live journeys, compiled, and the workspaces, kept in memory and reloaded from the
designer whenever its revision changes. Checked before every batch, so a publish, pause,
resume or stop applies to every event accepted after the designer answered it, and an
event of a workspace that does not exist is refused.

The check is a read of the designer's change beacon (``shared.beacon``, one NATS request);
only when it moved, or at least every ``recheck_s``, is the designer itself asked."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import aiohttp
from nats.js import JetStreamContext

from services.runtime.engine.compiled import CompiledJourney, compile_journey
from services.runtime.engine.engine import Catalog, LiveJourney
from shared import beacon
from shared.criteria import All, AnyOf, Criteria, Match
from shared.http import get_json
from shared.journey import JourneyBody
from shared.logging import get_logger

log = get_logger(__name__)

# Events the activator sends back for every delivery. A workspace where no live criterion
# can match one of them has it skipped at once (see ``unheard``) rather than applied.
DELIVERY_FEEDBACK = frozenset({"message_sent", "message_failed"})


class CatalogCache:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        designer_url: str,
        js: JetStreamContext | None = None,
        recheck_s: float = 1.0,
    ) -> None:
        """With ``js``, the designer's change beacon says when to ask the designer (and it
        is asked at least every ``recheck_s`` anyway); without, every check asks it."""
        self._http = http
        self._url = designer_url
        self._js = js
        self._recheck_s = recheck_s
        self._beacon: str | None = None
        self._asked_at = float("-inf")
        self._revision: str | None = None
        self._by_workspace: dict[str, Catalog] = {}
        self._unheard: dict[str, frozenset[str]] = {}
        self._checked_at = float("-inf")
        self._check: asyncio.Task[None] | None = None
        self._check_started = float("-inf")

    @property
    def revision(self) -> str | None:
        """The designer's revision the catalog was last loaded at."""
        return self._revision

    def find(self, journey_id: str) -> tuple[str, LiveJourney | None]:
        for workspace_id, catalog in self._by_workspace.items():
            if journey_id in catalog.journeys:
                return workspace_id, catalog.journeys[journey_id]
        return "", None

    def for_workspace(self, workspace_id: str) -> Catalog:
        return self._by_workspace.get(workspace_id, Catalog())

    def unheard(self, workspace_id: str) -> frozenset[str]:
        """The delivery feedback events no live journey of the workspace can react to:
        applying one would change nothing but write an explanation that no journey is
        concerned by."""
        return self._unheard.get(workspace_id, frozenset())

    def knows(self, workspace_id: str) -> bool:
        """Whether the workspace existed at the last check (events of others are refused)."""
        return workspace_id in self._by_workspace

    async def fresh(self, since: float) -> None:
        """Make sure the catalog reflects every change committed before ``since``
        (a ``time.monotonic()`` reading); one check serves every batch waiting on it."""
        if self._checked_at >= since:
            return
        if self._check is None or self._check.done() or self._check_started < since:
            self._check_started = time.monotonic()
            self._check = asyncio.create_task(self._refresh(self._check_started))
        await asyncio.shield(self._check)

    async def _refresh(self, started: float) -> None:
        if self._js is None:
            await self._ask_designer()
        else:
            signalled = await beacon.read(self._js)
            if signalled != self._beacon or started - self._asked_at >= self._recheck_s:
                await self._ask_designer()
                self._beacon = signalled
        self._checked_at = max(self._checked_at, started)

    async def _ask_designer(self) -> None:
        self._asked_at = time.monotonic()
        revision = (await self._get("/internal/journeys/revision"))["revision"]
        if revision != self._revision:
            await self._load()
            self._revision = revision

    async def _load(self) -> None:
        body = await self._get("/internal/journeys/live")
        self._by_workspace = build(body["items"], body["workspaces"])
        self._unheard = {w: unheard(c) for w, c in self._by_workspace.items()}
        log.info(
            "catalog.loaded", journeys=sum(len(c.journeys) for c in self._by_workspace.values())
        )

    async def _get(self, path: str) -> Any:
        status, body = await get_json(self._http, f"{self._url}{path}")
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"the designer answered {status} for {path}")
        return body


def build(items: list[dict[str, Any]], workspaces: list[dict[str, Any]]) -> dict[str, Catalog]:
    """Each workspace's catalog: its live journeys compiled, and its default timezone."""
    grouped: dict[str, dict[str, LiveJourney]] = defaultdict(dict)
    for item in items:
        journeys = grouped[item["workspace_id"]]
        compiled = compile_journey(
            item["journey_id"], item["version"], JourneyBody.model_validate(item["body"])
        )
        live = journeys.get(item["journey_id"])
        if live is None:
            live = LiveJourney({}, item["live_version"], item["status"])
            journeys[item["journey_id"]] = live
        live.versions[item["version"]] = compiled
    return {
        w["workspace_id"]: Catalog(grouped.get(w["workspace_id"], {}), w["default_timezone"])
        for w in workspaces
    }


def unheard(catalog: Catalog) -> frozenset[str]:
    """The names of ``DELIVERY_FEEDBACK`` that no criterion of any version of the catalog's
    journeys (entries, milestones, exit rules, goals, branches, split cases) could match."""
    criteria = [c for live in catalog.journeys.values() for j in live.versions.values()
                for c in _criteria(j)]  # fmt: skip
    return frozenset(n for n in DELIVERY_FEEDBACK if not any(_may_match(c, n) for c in criteria))


def _criteria(j: CompiledJourney) -> list[Criteria]:
    matchers = [m for stage in j.stages for m in (stage.entry, stage.milestone) if m is not None]
    matchers += [m for stage in j.stages for m, _to in stage.exits]
    matchers += [j.goal] if j.goal is not None else []
    matchers += j.exits
    matchers += j.matchers.values()
    matchers += [m for cases in j.split_cases.values() for m, _path in cases]
    return [m.criteria for m in matchers]


def _may_match(criteria: Criteria, name: str) -> bool:
    """Whether some event called ``name`` could match, whatever its properties and the
    profile: a condition without an event name matches any event, and a negation is taken
    to match anything."""
    if isinstance(criteria, Match):
        return criteria.event is None or criteria.event == name
    if isinstance(criteria, All):
        return all(_may_match(c, name) for c in criteria.all)
    if isinstance(criteria, AnyOf):
        return any(_may_match(c, name) for c in criteria.any)
    return True
