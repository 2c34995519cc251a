"""The runtime's public routes (reached through the gateway)."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.runtime import experiments
from services.runtime.analytics import AnalyticsOut, journey_analytics
from services.runtime.models import MembershipRow
from services.runtime.processor import Processor
from services.runtime.repository import RuntimeRepository
from services.runtime.settings import RuntimeSettings
from services.runtime.simulate import (
    JOURNEY_ID,
    SimEvent,
    SimulationRefused,
    Simulator,
    Unavailable,
    check,
)
from shared.app import RequestSession, get_state
from shared.identity import ADMIN, READ, WRITE, Identity, require
from shared.journey import JourneyLimits
from shared.pagination import Cursor, Limit, decode_cursor, encode_cursor
from shared.problems import FieldError, ProblemError, forbidden, invalid, not_found

router = APIRouter(prefix="/v1", tags=["journeys"])
SIMULATOR = "simulator"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimProfile(_Strict):
    profile_id: Annotated[str, Field(min_length=1, max_length=200)]
    attributes: dict[str, Any] = {}
    consent: dict[str, bool] = {}


class SimEventIn(_Strict):
    event_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    profile_id: Annotated[str, Field(min_length=1, max_length=200)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    timestamp: AwareDatetime
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}


class SimulateIn(_Strict):
    journey: dict[str, Any] = Field(description="A journey body, as for POST /v1/journeys.")
    events: Annotated[list[SimEventIn], Field(max_length=10_000)]
    profiles: Annotated[list[SimProfile], Field(max_length=10_000)] = []
    journey_id: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None,
        description="The journey this body is a version of: its experiments then assign each "
        "profile the path it would take there, and a decided send_all experiment its winner.",
    )


@router.post(
    "/journeys/simulate",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
async def simulate(
    request: Request, body: SimulateIn, caller: Annotated[Identity, Depends(require(WRITE))]
) -> Response:
    """Each profile's path, and each message it requests with what the live delivery rules
    would do with it at its simulated time (``sent``, ``held`` with ``held_until``,
    ``skipped`` with the ``reason``, ``failed`` with the ``error``) and how it renders;
    nothing is stored or sent. Bounded in events times steps, timers, answer size and
    messages, and run in a worker process under a time budget: over any of them is a 422
    naming the limit."""
    journey, errors = check(body.journey, JourneyLimits())
    if journey is None or errors:
        raise invalid([FieldError(f"journey.{e.path}", e.message) for e in errors])
    state = get_state(request)
    processor: Processor = state.extras["processor"]
    await processor.catalogs.fresh(time.monotonic())
    timezone = processor.catalogs.for_workspace(caller.workspace_id).default_timezone
    profiles = {p.profile_id: dict(p.attributes) for p in body.profiles}
    consent = {p.profile_id: dict(p.consent) for p in body.profiles}
    events = [_event(e) for e in body.events]
    journey_id, decided = JOURNEY_ID, {}
    if body.journey_id is not None:
        await _check_journey(request, caller, body.journey_id)
        async with processor.pool.acquire() as conn:
            decided = await experiments.winners(conn, caller.workspace_id)
        journey_id = body.journey_id
    simulator: Simulator = state.extras[SIMULATOR]
    try:
        report = await simulator.run(
            caller.workspace_id, journey, profiles, events, timezone, consent,
            journey_id, decided,
        )  # fmt: skip
    except SimulationRefused as exc:
        raise invalid([FieldError(exc.path, str(exc))]) from None
    except Unavailable as exc:
        raise ProblemError(
            503, "Service unavailable", f"the messages cannot be decided: {exc}",
            headers={"Retry-After": "1"},
        ) from None  # fmt: skip
    return Response(report, media_type="application/json")


def _event(e: SimEventIn) -> SimEvent:
    timestamp: datetime = e.timestamp
    return SimEvent(
        event_id=e.event_id or uuid.uuid4().hex,
        profile_id=e.profile_id,
        name=e.name,
        timestamp=timestamp,
        properties=e.properties,
        traits=e.traits,
    )


# Profiles, timelines, explanations, journey members and analytics ---------------------------


Session = RequestSession
Reader = Annotated[Identity, Depends(require(READ))]
Writer = Annotated[Identity, Depends(require(WRITE))]
Admin = Annotated[Identity, Depends(require(ADMIN))]


def _membership_out(row: MembershipRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "journey_id": row.journey_id, "version": row.version, "stage": row.stage,
        "step": row.step_id, "state": "active" if row.active else "left",
        "entered_at": row.entered_at,
    }  # fmt: skip
    if not row.active:
        out |= {"outcome": row.outcome, "left_at": row.left_at}
    return out


async def _granted(request: Request, caller: Identity) -> set[str] | None:
    """The journeys a key limited to folders sees of a profile (the designer knows which
    are in its folders); None for a key of the whole workspace.

    Such a key reads a profile's attributes and consent, which belong to the workspace as
    templates do, but only the memberships, timeline entries and explanations of journeys
    in its folders: what happened in the others is not its business."""
    if caller.unrestricted:
        return None
    state = get_state(request)
    settings = state.settings
    assert isinstance(settings, RuntimeSettings)
    url = (
        f"{settings.designer_url}/internal/workspaces/{quote(caller.workspace_id, safe='')}"
        "/journeys/granted"
    )
    try:
        r = await state.extras["http"].get(url, params={"folders": ",".join(caller.folder_ids)})
        r.raise_for_status()
    except httpx.HTTPError as exc:
        raise ProblemError(503, "Service unavailable", "designer is not reachable") from exc
    return set(r.json()["journey_ids"])


# Query parameters of the profile search that are not attribute filters.
_PAGING = frozenset({"limit", "cursor"})
MAX_FILTERS = 10
MAX_FILTER_VALUE = 1000


def _filters(request: Request) -> list[list[dict[str, Any]]]:
    """Each ``?attribute=value`` of the search as the documents that would satisfy it: the
    text as given and, when it reads as a JSON number, boolean or null, that value too (a
    query string cannot say which the attribute holds). Keys and values the database cannot
    hold (NUL, non-finite numbers) are a 422 naming the parameter, never a failed query."""
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k not in _PAGING]
    if len(pairs) > MAX_FILTERS:
        raise invalid([FieldError("query", f"at most {MAX_FILTERS} attribute filters")])
    errors: list[FieldError] = []
    groups: list[list[dict[str, Any]]] = []
    for key, value in pairs:
        if not key or len(key) > 200 or "\x00" in key:
            errors.append(FieldError(f"query.{key[:200]}", "not an attribute name"))
            continue
        if len(value) > MAX_FILTER_VALUE or "\x00" in value:
            errors.append(
                FieldError(f"query.{key}", f"at most {MAX_FILTER_VALUE} characters, no NUL")
            )
            continue
        docs: list[dict[str, Any]] = [{key: value}]
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            parsed = value
        if (parsed is None or isinstance(parsed, bool | int)) or (
            isinstance(parsed, float) and math.isfinite(parsed)
        ):
            docs.append({key: parsed})
        groups.append(docs)
    if errors:
        raise invalid(errors)
    return groups


@router.get("/profiles", tags=["profiles"])
async def search_profiles(
    request: Request,
    session: Session,
    caller: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Profiles by attribute: every other query parameter is one (``?email=ada@example.com``,
    ``?plan=pro&country=FR``), all of them must hold, each an exact value of a top-level
    attribute. Ordered by profile id. A key limited to folders finds profiles as it reads
    them: attributes and consent, which belong to the workspace (its journeys are on the
    profile's own page)."""
    groups = _filters(request)
    after = decode_cursor(cursor, (str,))
    rows = await RuntimeRepository(session).search_profiles(
        caller.workspace_id, groups, after[0] if after else None, limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {"profile_id": r.profile_id, "attributes": r.attributes, "consent": r.consent} for r in rows
    ]
    return {"items": items, "next_cursor": encode_cursor([rows[-1].profile_id]) if more else None}


@router.get("/profiles/{profile_id}", tags=["profiles"])
async def get_profile(
    request: Request, session: Session, caller: Reader, profile_id: str
) -> dict[str, Any]:
    """The profile; a key limited to folders sees only its journeys among ``journeys``."""
    repo = RuntimeRepository(session)
    row = await repo.profile(caller.workspace_id, profile_id)
    if row is None:
        raise not_found(f"profile {profile_id}")
    granted = await _granted(request, caller)
    members = await repo.memberships_of(caller.workspace_id, profile_id, granted)
    return {
        "profile_id": row.profile_id,
        "attributes": row.attributes,
        "consent": row.consent,
        "journeys": [_membership_out(m) for m in members],
    }


@router.delete("/profiles/{profile_id}", status_code=204, tags=["profiles"])
async def delete_profile(request: Request, caller: Admin, profile_id: str) -> Response:
    """Erases the profile, its places in journeys, its timeline and its pending timers, and
    tells the activator and the gateway to erase its messages and events. A tombstone keeps
    late feedback on its messages from making it again (``services/runtime/erasures.py``)."""
    processor: Processor = get_state(request).extras["processor"]
    if not await processor.erase(caller.workspace_id, profile_id):
        raise not_found(f"profile {profile_id}")
    return Response(status_code=204)


@router.get("/profiles/{profile_id}/timeline", tags=["profiles"])
async def timeline(
    request: Request,
    session: Session,
    caller: Reader,
    profile_id: str,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The profile's timeline; a key limited to folders sees its journeys' entries only.

    An ``activation`` entry (a message requested) carries ``delivery``: what became of the
    message at the activator (status ``pending``, ``held``, ``sent``, ``skipped`` with its
    reason, ``failed``), or null while the activator has not recorded it or cannot say."""
    after = decode_cursor(cursor, (int,))
    granted = await _granted(request, caller)
    rows = await RuntimeRepository(session).timeline(
        caller.workspace_id, profile_id, after[0] if after else None, limit + 1, granted
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items: list[dict[str, Any]] = [
        {"at": r.at, "journey_id": r.journey_id, "version": r.version, "kind": r.kind,
         "stage": r.stage, "step_id": r.step_id, "detail": r.detail, "cause": r.cause}
        for r in rows
    ]  # fmt: skip
    asked = [a for i in items if (a := _activation_id(i)) is not None]
    outcomes = await _delivery_outcomes(request, caller.workspace_id, asked) if asked else {}
    for item in items:
        if (activation_id := _activation_id(item)) is not None:
            item["delivery"] = outcomes.get(activation_id)
    return {"items": items, "next_cursor": encode_cursor([rows[-1].id]) if more else None}


def _activation_id(item: dict[str, Any]) -> str | None:
    detail = item["detail"]
    if item["kind"] != "activation" or not isinstance(detail, dict):
        return None
    found = detail.get("activation_id")
    return found if isinstance(found, str) else None


async def _delivery_outcomes(
    request: Request, workspace_id: str, activation_ids: list[str]
) -> dict[str, Any]:
    """The activator's outcome of each activation; none known if it cannot answer (the
    timeline is still worth showing without them)."""
    state = get_state(request)
    settings = state.settings
    assert isinstance(settings, RuntimeSettings)
    url = (
        f"{settings.activator_url}/internal/workspaces/{quote(workspace_id, safe='')}"
        "/deliveries/outcomes"
    )
    try:
        r = await state.extras["http"].post(url, json={"activation_ids": activation_ids}, timeout=5)
    except httpx.HTTPError:
        return {}
    found: dict[str, Any] = r.json() if r.status_code == 200 else {}
    return found


@router.get("/profiles/{profile_id}/explain", tags=["profiles"])
async def explain(
    request: Request,
    session: Session,
    caller: Reader,
    profile_id: str,
    journey_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    show_all: Annotated[
        bool,
        Query(
            alias="all",
            description="Also the journeys whose entry event is another event than this one.",
        ),
    ] = False,
) -> dict[str, Any]:
    """Why each recent event did or did not enter or move the profile (a key limited to
    folders: for its journeys only; naming another journey of the workspace is 403).

    Each item leads with ``failed``, the first criterion that did not hold (null when the
    event entered or moved the profile). By default an event's answer leaves out the
    journeys it could never have entered because their entry event is another one: they
    are most of a workspace and say nothing about this event. ``hidden`` counts them;
    ``?all=true`` (or naming the journey) shows them."""
    if journey_id is not None and not caller.unrestricted:
        await _check_journey(request, caller, journey_id)
    granted = await _granted(request, caller)
    rows = await RuntimeRepository(session).explanations(
        caller.workspace_id, profile_id, journey_id, limit
    )
    items: list[dict[str, Any]] = []
    hidden = 0
    for r in rows:
        for j in r.journeys:
            if journey_id is not None and j["journey_id"] != journey_id:
                continue
            if granted is not None and j["journey_id"] not in granted:
                continue
            if not show_all and journey_id is None and other_event(j):
                hidden += 1
                continue
            items.append(
                {"failed": failed_criterion(j), "event_id": r.event_id, "name": r.name,
                 "at": r.at, **j}
            )  # fmt: skip
    return {"items": items[:limit], "hidden": hidden}


# The matcher's reasons (shared/matcher.py) for an event of another name, and the lines an
# 'any' adds around its alternatives' reasons.
_OTHER_EVENT = re.compile(r"^(any\[\d+\]: )*event name is .*, not .*$")
_ANY_HEADER = "no alternative under 'any' matched"
_ANY_PREFIX = re.compile(r"^(any\[\d+\]: )+")


def other_event(journey: dict[str, Any]) -> bool:
    """Whether the journey did not take the event only because its entry wants another
    event: every criterion that failed is the event's name."""
    if journey.get("outcome") != "no_match":
        return False
    reasons = [r for r in journey.get("reasons") or [] if r != _ANY_HEADER]
    return bool(reasons) and all(_OTHER_EVENT.match(r) for r in reasons)


def failed_criterion(journey: dict[str, Any]) -> str | None:
    """The first criterion that did not hold, without the lines 'any' adds; None when the
    event was taken."""
    if journey.get("outcome") in ("entered", "moved", "goal", "exited", "branch"):
        return None
    for reason in journey.get("reasons") or []:
        if reason != _ANY_HEADER:
            return _ANY_PREFIX.sub("", reason)
    return None


async def _check_journey(request: Request, caller: Identity, journey_id: str) -> None:
    """The journey exists in the caller's workspace and folder grants (the designer knows)."""
    state = get_state(request)
    settings = state.settings
    assert isinstance(settings, RuntimeSettings)
    url = (
        f"{settings.designer_url}/internal/workspaces/{quote(caller.workspace_id, safe='')}"
        f"/journeys/{quote(journey_id, safe='')}/access"
    )
    try:
        r = await state.extras["http"].get(url, params={"folders": ",".join(caller.folder_ids)})
    except httpx.HTTPError as exc:
        raise ProblemError(503, "Service unavailable", "designer is not reachable") from exc
    if r.status_code == 404:
        raise not_found(f"journey {journey_id}")
    if r.status_code == 403:
        raise forbidden(r.json().get("detail", "this key's folder grants do not cover it"))
    r.raise_for_status()


@router.get("/journeys/{journey_id}/profiles", tags=["journeys"])
async def journey_profiles(
    request: Request,
    session: Session,
    caller: Writer,
    journey_id: str,
    stage: Annotated[str | None, Query(max_length=200)] = None,
    state: Literal["active", "left"] | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    await _check_journey(request, caller, journey_id)
    after = decode_cursor(cursor, (str,))
    rows = await RuntimeRepository(session).journey_members(
        caller.workspace_id, journey_id, stage, None if state is None else state == "active",
        after[0] if after else None, limit + 1,
    )  # fmt: skip
    more = len(rows) > limit
    rows = rows[:limit]
    items = [{"profile_id": r.profile_id, **_membership_out(r)} for r in rows]
    return {"items": items, "next_cursor": encode_cursor([rows[-1].profile_id]) if more else None}


@router.get("/journeys/{journey_id}/analytics", tags=["journeys"], response_model=AnalyticsOut)
async def analytics(
    request: Request,
    session: Session,
    caller: Reader,
    journey_id: str,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    await _check_journey(request, caller, journey_id)
    processor: Processor = get_state(request).extras["processor"]
    # A journey published a moment ago has its stages and steps here before its first event.
    await processor.catalogs.fresh(time.monotonic())
    deliveries = await _delivery_counts(request, caller.workspace_id, journey_id)
    report: dict[str, Any] = await journey_analytics(
        session, processor, caller.workspace_id, journey_id, version, deliveries
    )
    return report


async def _delivery_counts(request: Request, workspace_id: str, journey_id: str) -> dict[str, int]:
    """The activator's settled deliveries of the journey; none known if it cannot answer."""
    state = get_state(request)
    settings = state.settings
    assert isinstance(settings, RuntimeSettings)
    url = (
        f"{settings.activator_url}/internal/workspaces/{quote(workspace_id, safe='')}"
        f"/journeys/{quote(journey_id, safe='')}/activations"
    )
    try:
        r = await state.extras["http"].get(url, timeout=5)
    except httpx.HTTPError:
        return {}
    counts: dict[str, int] = r.json() if r.status_code == 200 else {}
    return counts


class ExperimentPathOut(BaseModel):
    name: str
    control: bool
    assigned: int = Field(description="Profiles assigned to the path (each profile once).")
    converted: int = Field(description="Profiles whose metric happened within the window.")
    rate: float | None = Field(
        description="Conversion rate of the profiles whose window has closed (what the test "
        "reads); null before any has."
    )
    ci_low: float | None = Field(description="Wilson interval of the rate at `confidence`.")
    ci_high: float | None
    lift_vs_control: float | None = Field(
        description="(rate - control's rate) / control's rate; null without a control."
    )
    p_value: float | None = Field(
        description="The largest always-valid p-value (Bonferroni over pairs) of this path "
        "against every other path: the path wins when it has the best rate and this is at "
        "most 1 - confidence."
    )


class ExperimentOut(BaseModel):
    journey_id: str
    step_id: str
    status: Literal["collecting", "decided", "inconclusive"]
    winner: str | None
    decided_at: datetime | None = Field(description="When it was decided or closed.")
    reason: str | None = Field(description="Why it is inconclusive.")
    method: str
    confidence: float
    min_per_path: int
    on_winner: Literal["send_all", "report"]
    paths: list[ExperimentPathOut] = Field(description="The counts now.")
    decision: list[ExperimentPathOut] | None = Field(
        description="The paths as they were when the experiment was decided or closed."
    )


@router.get("/journeys/{journey_id}/experiments/{step_id}", response_model=ExperimentOut)
async def experiment(
    request: Request, caller: Reader, journey_id: str, step_id: str
) -> dict[str, Any]:
    """An experiment split's paths, counts and decision (``services/runtime/experiments.py``)."""
    await _check_journey(request, caller, journey_id)
    processor: Processor = get_state(request).extras["processor"]
    await processor.catalogs.fresh(time.monotonic())
    catalog = processor.catalogs.for_workspace(caller.workspace_id)
    step = experiments.experiment_steps(catalog).get((journey_id, step_id))
    async with processor.pool.acquire() as conn:
        found = await experiments.report(
            conn, caller.workspace_id, journey_id, step_id, step, processor.clock.now()
        )
    if found is None:
        raise not_found(f"experiment {step_id} in journey {journey_id}")
    return found
