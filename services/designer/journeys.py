"""Journeys: drafts, validation, versions and the lifecycle draft -> live <-> paused -> stopped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from services.designer.access import allowed_folders, check_folder, check_granted
from services.designer.context import Ctx
from services.designer.models import Journey, JourneyVersion, Outbox
from services.designer.repository import (
    ConnectorRepository,
    FolderRepository,
    JourneyRepository,
    TemplateRepository,
)
from services.designer.triggers import catalog_events
from shared import outbox
from shared.journey import JourneyBody, JourneyLimits, JumpStep, iter_journey_steps
from shared.journey_validation import (
    Catalog,
    ConnectorRef,
    JourneyRef,
    TemplateRef,
    journey_jump_targets,
    validate_journey,
)
from shared.logging import get_logger
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.problems import FieldError, conflict, invalid, not_found
from shared.timers import SCHEDULE_END_PROFILE, TimerKind, TimerSchedule

log = get_logger(__name__)

CHANGED_SUBJECT = "journeys.changed"
REFERENCE_KEYS = ("template_id", "connector_id", "journey_id")


def limits_of(ctx: Ctx) -> JourneyLimits:
    s = ctx.settings
    return JourneyLimits(
        max_stages=s.limit_stages,
        max_steps_per_stage=s.limit_steps_per_stage,
        max_steps_per_journey=s.limit_steps_per_journey,
        max_activations=s.limit_activations_per_journey,
        max_exit_rules=s.limit_exit_rules_per_journey,
        max_jumps=s.limit_jumps_per_journey,
    )


def view(journey: Journey, version: JourneyVersion) -> dict[str, Any]:
    return {
        **version.body,
        "id": journey.id,
        "version": version.version,
        "status": journey.status if version.published else "draft",
        "live_version": journey.live_version,
        "latest_version": journey.latest_version,
        "created_at": journey.created_at,
        "updated_at": journey.updated_at,
    }


def _references(raw: object) -> dict[str, set[str]]:
    """Every id the raw body refers to, found wherever steps are nested."""
    found: dict[str, set[str]] = {key: set() for key in REFERENCE_KEYS}

    def walk(node: object) -> Iterator[None]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in found and isinstance(value, str):
                    found[key].add(value)
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    for _ in walk(raw):
        pass
    return found


async def catalog_for(
    ctx: Ctx, raw: object, journey_id: str | None, *, for_publish: bool = False
) -> Catalog:
    refs = _references(raw)
    ws = ctx.identity.workspace_id
    templates = await TemplateRepository(ctx.session).by_ids(ws, sorted(refs["template_id"]))
    connectors = await ConnectorRepository(ctx.session).by_ids(ws, sorted(refs["connector_id"]))
    others = await JourneyRepository(ctx.session).others(ws, journey_id)
    return Catalog(
        templates={t.id: TemplateRef(channel=t.channel, status=t.status) for t in templates},
        connectors={c.id: ConnectorRef(type=c.type) for c in connectors},
        journeys={row.id: _journey_ref(row.status, row.body) for row in others},
        journey_id=journey_id,
        events=await catalog_events(ctx) if for_publish else None,
    )


def _journey_ref(status: str, body: dict[str, Any]) -> JourneyRef:
    stages = [s.get("name") for s in body.get("stages", []) if isinstance(s, dict)]
    parsed = JourneyBody.model_validate(body)
    return JourneyRef(
        stage_names=[s for s in stages if isinstance(s, str)],
        status=status,
        jump_targets=journey_jump_targets(parsed),
    )


async def checked_body(
    ctx: Ctx, raw: object, journey_id: str | None, *, for_publish: bool
) -> JourneyBody:
    """The parsed body, or a 422 naming every problem (folder access included)."""
    catalog = await catalog_for(ctx, raw, journey_id, for_publish=for_publish)
    body, errors = validate_journey(raw, limits_of(ctx), catalog, for_publish=for_publish)
    if body is not None:
        errors = await _jump_scope(ctx, body, catalog, errors)
        errors = [*errors, *await _folder_errors(ctx, body.folder_id)]
    if errors or body is None:
        raise invalid(errors, f"the journey has {len(errors)} problem(s)")
    return body


async def _jump_scope(
    ctx: Ctx, body: JourneyBody, catalog: Catalog, errors: list[FieldError]
) -> list[FieldError]:
    """A key limited to folders may not make a journey jump into one of the workspace
    outside them: each such jump is an error at its step's ``journey_id``, and nothing else
    is said about the target (its stages or status are not this key's to read)."""
    allowed = await allowed_folders(ctx.session, ctx.identity)
    if allowed is None:
        return errors
    jumps = {
        path: step.journey_id
        for path, step in iter_journey_steps(body)
        if isinstance(step, JumpStep) and step.journey_id is not None
    }
    if not jumps:
        return errors
    ws = ctx.identity.workspace_id
    granted = set(await JourneyRepository(ctx.session).ids_in(ws, allowed))
    outside = {
        path: target
        for path, target in jumps.items()
        if target in catalog.journeys and target not in granted
    }
    kept = [e for e in errors if not any(e.path.startswith(f"{p}.") for p in outside)]
    return [
        *kept,
        *(
            FieldError(f"{path}.journey_id", f"this key's folder grants do not cover '{target}'")
            for path, target in outside.items()
        ),
    ]


async def _folder_errors(ctx: Ctx, folder_id: str | None) -> list[FieldError]:
    if folder_id is None:
        return []
    found = await FolderRepository(ctx.session).get(ctx.identity.workspace_id, folder_id)
    return [] if found else [FieldError("folder_id", f"no folder '{folder_id}' here")]


def dump_body(body: JourneyBody) -> dict[str, Any]:
    dumped: dict[str, Any] = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


class JourneyService:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.repo = JourneyRepository(ctx.session)

    async def _allowed(self) -> set[str] | None:
        return await allowed_folders(self.ctx.session, self.ctx.identity)

    async def _journey(self, journey_id: str, *, lock: bool = False) -> Journey:
        ws = self.ctx.identity.workspace_id
        journey = await self.repo.get(ws, journey_id, None, lock=lock)
        if journey is None:
            raise not_found(f"journey {journey_id}")
        check_granted(await self._allowed(), journey.folder_id)
        return journey

    async def _version(self, journey: Journey, number: int) -> JourneyVersion:
        version = await self.repo.version(journey.id, number)
        if version is None:
            raise not_found(f"version {number} of journey {journey.id}")
        return version

    async def _check_name(self, body: JourneyBody, journey_id: str | None) -> None:
        ws = self.ctx.identity.workspace_id
        if await self.repo.name_taken(ws, body.folder_id, body.name, journey_id):
            raise conflict(f"a journey named '{body.name}' already exists in this folder")

    async def create(self, raw: object) -> dict[str, Any]:
        body = await checked_body(self.ctx, raw, None, for_publish=False)
        check_folder(await self._allowed(), body.folder_id)
        await self._check_name(body, None)
        journey = Journey(
            id=uuid.uuid4().hex,
            workspace_id=self.ctx.identity.workspace_id,
            folder_id=body.folder_id,
            name=body.name,
            status="draft",
            latest_version=1,
        )
        await self.repo.add(journey, dump_body(body))
        await self.ctx.session.refresh(journey)
        return view(journey, await self._version(journey, 1))

    async def get(self, journey_id: str, number: int | None = None) -> dict[str, Any]:
        journey = await self._journey(journey_id)
        version = await self._version(journey, number or journey.latest_version)
        return view(journey, version)

    async def page(
        self, folder_id: str | None, status: str | None, cursor: str | None, limit: int
    ) -> Page[dict[str, Any]]:
        ws = self.ctx.identity.workspace_id
        allowed = await self._allowed()
        await self._check_listed_folder(allowed, folder_id)
        journeys = await self.repo.page(
            ws, allowed, folder_id, status, decode_cursor(cursor), limit + 1
        )
        more = len(journeys) > limit
        journeys = journeys[:limit]
        versions = await self.repo.versions(
            [j.id for j in journeys], sorted({j.latest_version for j in journeys})
        )
        items = [view(j, versions[(j.id, j.latest_version)]) for j in journeys]
        last = journeys[-1] if journeys else None
        return Page(
            items=items,
            next_cursor=encode_cursor([last.created_at, last.id]) if more and last else None,
        )

    async def _check_listed_folder(self, allowed: set[str] | None, folder_id: str | None) -> None:
        """Listing a folder of the workspace outside the grants is refused, not empty."""
        if folder_id is None or allowed is None or folder_id in allowed:
            return
        ws = self.ctx.identity.workspace_id
        if await FolderRepository(self.ctx.session).get(ws, folder_id) is not None:
            check_granted(allowed, folder_id)

    async def update(self, journey_id: str, raw: object) -> dict[str, Any]:
        journey = await self._journey(journey_id, lock=True)
        version = await self._version(journey, journey.latest_version)
        if version.published:
            raise conflict(
                f"version {version.version} is {journey.status}; only a draft can be edited "
                f"(POST /v1/journeys/{journey.id}/versions makes one)"
            )
        body = await checked_body(self.ctx, raw, journey.id, for_publish=False)
        check_folder(await self._allowed(), body.folder_id)
        await self._check_name(body, journey.id)
        version.body = dump_body(body)
        await self.repo.touch(journey.id, name=body.name, folder_id=body.folder_id)
        await self.ctx.session.refresh(journey)
        return view(journey, version)

    async def validate(self, raw: object) -> None:
        await checked_body(self.ctx, raw, None, for_publish=True)

    async def publish(self, journey_id: str, in_flight: str) -> dict[str, Any]:
        journey = await self._journey(journey_id, lock=True)
        if journey.status == "stopped":
            raise conflict("a stopped journey cannot be published again")
        version = await self._version(journey, journey.latest_version)
        if version.published:
            raise conflict(f"version {version.version} is already published")
        body = await checked_body(self.ctx, version.body, journey.id, for_publish=True)
        version.body = dump_body(body)
        previous = journey.live_version
        await self.repo.publish_version(journey.id, version.version)
        status = "paused" if journey.status == "paused" else "live"
        await self.repo.touch(journey.id, status=status, live_version=version.version)
        await self._announce(journey, "published", status, version.version, in_flight, previous)
        await self._schedule_end(journey, body)
        return {"status": status, "version": version.version, "previous_version": previous}

    async def migration_draft(self, journey_id: str) -> tuple[int, dict[str, Any]]:
        """The draft a ``migrate`` publish would move profiles onto, checked as the publish
        checks it: (its version number, its body). Nothing is changed."""
        journey = await self._journey(journey_id)
        if journey.live_version is None or journey.status == "stopped":
            raise conflict("only a live or paused journey has profiles to migrate")
        version = await self._version(journey, journey.latest_version)
        if version.published:
            raise conflict(f"version {version.version} is already published: no draft to preview")
        body = await checked_body(self.ctx, version.body, journey.id, for_publish=True)
        return version.version, dump_body(body)

    async def new_version(self, journey_id: str) -> dict[str, Any]:
        journey = await self._journey(journey_id, lock=True)
        if journey.live_version is None or journey.status == "stopped":
            raise conflict("only a live or paused journey gets new versions")
        latest = await self._version(journey, journey.latest_version)
        if not latest.published:
            raise conflict(f"version {latest.version} is already a draft; edit that one")
        live = await self._version(journey, journey.live_version)
        number = journey.latest_version + 1
        await self.repo.add_version(journey.id, number, dict(live.body))
        await self.repo.touch(journey.id, latest_version=number)
        await self.ctx.session.refresh(journey)
        return view(journey, await self._version(journey, number))

    async def transition(self, journey_id: str, change: str) -> dict[str, Any]:
        allowed = {"pause": ("live",), "resume": ("paused",), "stop": ("live", "paused")}
        target = {"pause": "paused", "resume": "live", "stop": "stopped"}[change]
        journey = await self._journey(journey_id, lock=True)
        if journey.status not in allowed[change]:
            raise conflict(f"cannot {change} a {journey.status} journey")
        await self.repo.touch(journey.id, status=target)
        await self._announce(journey, f"{change}d" if change != "stop" else "stopped", target)
        return {"status": target}

    async def delete(self, journey_id: str) -> None:
        journey = await self._journey(journey_id, lock=True)
        if journey.status not in ("draft", "stopped"):
            raise conflict(f"a {journey.status} journey cannot be deleted; stop it first")
        await self.repo.delete(journey.id)

    async def _schedule_end(self, journey: Journey, body: JourneyBody) -> None:
        """When the schedule closes, the runtime makes everyone inside leave."""
        end_at = body.schedule.end_at
        if end_at is None:
            return
        timer = TimerSchedule(
            timer_id=f"schedule-end/{journey.id}/{end_at.isoformat()}",
            workspace_id=journey.workspace_id,
            profile_id=SCHEDULE_END_PROFILE,
            journey_id=journey.id,
            kind=TimerKind.SCHEDULE_END,
            due_at=end_at,
        )
        await outbox.enqueue(
            self.ctx.session, Outbox, timer.subject, timer.model_dump(mode="json"), timer.msg_id
        )

    async def _announce(
        self,
        journey: Journey,
        change: str,
        status: str,
        version: int | None = None,
        in_flight: str = "stay",
        previous_version: int | None = None,
    ) -> None:
        payload = {
            "journey_id": journey.id,
            "workspace_id": journey.workspace_id,
            "change": change,
            "status": status,
            "live_version": version or journey.live_version,
            "previous_version": previous_version,
            "in_flight": in_flight,
        }
        change_id = uuid.uuid4().hex
        payload["change_id"] = change_id
        await outbox.enqueue(self.ctx.session, Outbox, CHANGED_SUBJECT, payload, change_id)
        log.info("journey.changed", journey_id=journey.id, change=change, status=status)
