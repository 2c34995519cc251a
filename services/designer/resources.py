"""Workspaces, API keys, folders, templates, connectors, webhook sources and workspace
settings."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func

from services.designer import usage
from services.designer.access import allowed_folders, check_folder
from services.designer.context import Ctx
from services.designer.keys import hash_key, new_key
from services.designer.models import (
    ApiKey,
    Connector,
    Folder,
    Template,
    WebhookSource,
    Workspace,
)
from services.designer.repository import (
    ApiKeyRepository,
    ConnectorRepository,
    FolderRepository,
    SettingsRepository,
    TemplateRepository,
    WebhookSourceRepository,
    WorkspaceRepository,
)
from services.designer.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    ConnectorIn,
    ConnectorOut,
    FolderIn,
    FolderOut,
    TemplateIn,
    TemplateOut,
    TemplatePatch,
    WebhookMapping,
    WebhookSecretIn,
    WebhookSourceIn,
    WebhookSourceOut,
    WorkspaceIn,
    WorkspaceOut,
    WorkspaceSettingsBody,
    WorkspaceSettingsPatch,
)
from shared import templating
from shared.addresses import AddressPolicy
from shared.connectors import (
    SECRET_FIELDS,
    ConnectorType,
    config_errors,
    destination,
    destination_refusal,
    parse_config,
    redact,
    to_stored,
)
from shared.identity import Role
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.problems import FieldError, conflict, forbidden, invalid, not_found, pydantic_errors


def _new_id() -> str:
    return uuid.uuid4().hex


def _page(rows: list[Any], limit: int, out: Any) -> Page[Any]:
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor([rows[-1].created_at, rows[-1].id]) if more and rows else None
    return Page(items=[out(r) for r in rows], next_cursor=cursor)


# Workspaces -------------------------------------------------------------------------------


async def create_workspace(ctx: Ctx, body: WorkspaceIn) -> WorkspaceOut:
    if not ctx.identity.may_bootstrap:
        raise forbidden("only an admin key of the bootstrap workspace creates workspaces")
    workspace = await WorkspaceRepository(ctx.session).add(
        Workspace(id=_new_id(), name=body.name, is_bootstrap=False)
    )
    return WorkspaceOut(id=workspace.id, name=workspace.name)


# API keys ---------------------------------------------------------------------------------


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        role=Role(key.role),
        folder_ids=list(key.folder_ids),
        workspace_id=key.workspace_id,
        created_at=key.created_at,
    )


async def create_key(ctx: Ctx, body: ApiKeyIn) -> ApiKeyCreated:
    workspace_id = body.workspace_id or ctx.identity.workspace_id
    if workspace_id != ctx.identity.workspace_id:
        if not ctx.identity.may_bootstrap:
            raise not_found(f"workspace {workspace_id}")
        if await WorkspaceRepository(ctx.session).get(workspace_id) is None:
            raise invalid([FieldError("workspace_id", "no such workspace")])
    await _check_grants(ctx, workspace_id, body)
    secret = new_key()
    key = await ApiKeyRepository(ctx.session).add(
        ApiKey(
            id=_new_id(),
            workspace_id=workspace_id,
            name=body.name,
            role=body.role.value,
            key_hash=hash_key(secret),
            folder_ids=list(body.folder_ids),
        )
    )
    await ctx.session.refresh(key)
    return ApiKeyCreated(**key_out(key).model_dump(), key=secret)


async def _check_grants(ctx: Ctx, workspace_id: str, body: ApiKeyIn) -> None:
    if body.folder_ids and body.role not in (Role.EDITOR, Role.VIEWER):
        raise invalid([FieldError("folder_ids", "folder grants apply to editor and viewer keys")])
    known = await FolderRepository(ctx.session).existing(workspace_id, body.folder_ids)
    errors = [
        FieldError(f"folder_ids[{i}]", f"no folder '{f}' in the workspace")
        for i, f in enumerate(body.folder_ids)
        if f not in known
    ]
    if errors:
        raise invalid(errors)


async def list_keys(ctx: Ctx, cursor: str | None, limit: int) -> Page[Any]:
    rows = await ApiKeyRepository(ctx.session).page(
        ctx.identity.workspace_id, decode_cursor(cursor), limit + 1
    )
    return _page(list(rows), limit, key_out)


async def revoke_key(ctx: Ctx, key_id: str) -> None:
    key = await ApiKeyRepository(ctx.session).get(ctx.identity.workspace_id, key_id)
    if key is None:
        raise not_found(f"API key {key_id}")
    key.revoked_at = func.now()


# Folders ----------------------------------------------------------------------------------


def folder_out(folder: Folder) -> FolderOut:
    return FolderOut(id=folder.id, name=folder.name, parent_id=folder.parent_id)


async def create_folder(ctx: Ctx, body: FolderIn) -> FolderOut:
    repo = FolderRepository(ctx.session)
    ws = ctx.identity.workspace_id
    if body.parent_id is not None and await repo.get(ws, body.parent_id) is None:
        raise invalid([FieldError("parent_id", f"no folder '{body.parent_id}' here")])
    check_folder(await allowed_folders(ctx.session, ctx.identity), body.parent_id)
    if await repo.name_taken(ws, body.parent_id, body.name):
        raise conflict(f"a folder named '{body.name}' already exists there")
    folder = await repo.add(
        Folder(id=_new_id(), workspace_id=ws, parent_id=body.parent_id, name=body.name)
    )
    return folder_out(folder)


async def list_folders(ctx: Ctx, cursor: str | None, limit: int) -> Page[Any]:
    allowed = await allowed_folders(ctx.session, ctx.identity)
    rows = await FolderRepository(ctx.session).page(
        ctx.identity.workspace_id, allowed, decode_cursor(cursor), limit + 1
    )
    return _page(list(rows), limit, folder_out)


# Templates --------------------------------------------------------------------------------


def template_out(t: Template) -> TemplateOut:
    return TemplateOut.model_validate(t, from_attributes=True)


async def _template_errors(ctx: Ctx, body: TemplateIn) -> list[FieldError]:
    # A template of many tags takes a while to compile: in a worker, within the budget.
    problems = await ctx.renderer.check(_content(body))
    errors = [FieldError(field, problem) for field, problem in problems.items()]
    if body.channel == "email" and not body.subject:
        errors.append(FieldError("subject", "an email template needs a subject"))
    if body.channel != "email" and body.html:
        errors.append(FieldError("html", "only email templates have HTML"))
    for field in ("title", "data"):
        if body.channel != "push" and getattr(body, field) is not None:
            errors.append(FieldError(field, f"only push templates have {field}"))
    return errors


def _content(t: TemplateIn | Template) -> templating.TemplateContent:
    return templating.TemplateContent(t.subject, t.body, t.html, t.title, t.data)


async def create_template(ctx: Ctx, body: TemplateIn) -> TemplateOut:
    if errors := await _template_errors(ctx, body):
        raise invalid(errors)
    repo = TemplateRepository(ctx.session)
    if await repo.name_taken(ctx.identity.workspace_id, body.name, None):
        raise conflict(f"a template named '{body.name}' already exists")
    template = await repo.add(
        Template(id=_new_id(), workspace_id=ctx.identity.workspace_id, **body.model_dump())
    )
    await ctx.session.refresh(template)
    return template_out(template)


async def get_template(ctx: Ctx, template_id: str) -> Template:
    template = await TemplateRepository(ctx.session).get(ctx.identity.workspace_id, template_id)
    if template is None:
        raise not_found(f"template {template_id}")
    return template


async def update_template(ctx: Ctx, template_id: str, body: TemplateIn) -> TemplateOut:
    template = await get_template(ctx, template_id)
    if errors := await _template_errors(ctx, body):
        raise invalid(errors)
    repo = TemplateRepository(ctx.session)
    if await repo.name_taken(ctx.identity.workspace_id, body.name, template_id):
        raise conflict(f"a template named '{body.name}' already exists")
    for field, value in body.model_dump().items():
        setattr(template, field, value)
    template.updated_at = func.now()
    await ctx.session.flush()
    await ctx.session.refresh(template)
    return template_out(template)


async def patch_template(ctx: Ctx, template_id: str, patch: TemplatePatch) -> TemplateOut:
    """The fields given replace those of the template (``{"status": "ready"}`` marks it
    ready); the result is checked as a whole, as PUT checks it."""
    template = await get_template(ctx, template_id)
    current = TemplateIn.model_validate(
        {field: getattr(template, field) for field in TemplateIn.model_fields}
    )
    merged = current.model_copy(update=patch.model_dump(exclude_unset=True))
    try:
        body = TemplateIn.model_validate(merged.model_dump())
    except ValidationError as exc:
        raise invalid(pydantic_errors(exc)) from None
    return await update_template(ctx, template_id, body)


async def delete_template(ctx: Ctx, template_id: str) -> None:
    template = await get_template(ctx, template_id)
    if journeys := await usage.journeys_using(ctx, "template_id", template_id):
        raise usage.in_use(f"template {template_id}", journeys)
    await ctx.session.delete(template)
    await ctx.session.flush()


async def delete_connector(ctx: Ctx, connector_id: str) -> None:
    connector = await get_connector(ctx, connector_id)
    if journeys := await usage.journeys_using(ctx, "connector_id", connector_id):
        raise usage.in_use(f"connector {connector_id}", journeys)
    await ctx.session.delete(connector)
    await ctx.session.flush()


async def list_templates(ctx: Ctx, cursor: str | None, limit: int) -> Page[Any]:
    rows = await TemplateRepository(ctx.session).page(
        ctx.identity.workspace_id, decode_cursor(cursor), limit + 1
    )
    return _page(list(rows), limit, template_out)


async def preview(
    ctx: Ctx, template: Template, profile: dict[str, Any], event: dict[str, Any]
) -> dict[str, Any]:
    """The template rendered as a message would be: within the renderer's time, memory and
    output budget, off the event loop when it could run long; over a budget is a 422
    naming it."""
    content = _content(template)
    context = {
        "profile": profile,
        "event": event,
        "journey": {},
        "step": {},
    }
    try:
        rendered = await ctx.renderer.render(content, context)
    except templating.TemplateError as exc:
        raise invalid([FieldError("template", str(exc))]) from exc
    return {
        "subject": rendered.subject,
        "body": rendered.body,
        "html": rendered.html,
        "title": rendered.title,
        "data": rendered.data,
    }


# Connectors ---------------------------------------------------------------------------------


def connector_out(ctx: Ctx, c: Connector) -> ConnectorOut:
    shown = {**c.config, **dict.fromkeys(ctx.secrets.open(c.secrets), True)}
    return ConnectorOut(
        id=c.id,
        name=c.name,
        type=ConnectorType(c.type),
        config=redact(c.type, shown),
        created_at=c.created_at,
    )


async def _split_config(ctx: Ctx, body: ConnectorIn) -> tuple[dict[str, Any], dict[str, Any]]:
    """The validated config as (public part, secrets)."""
    try:
        parsed = parse_config(body.type, body.config)
    except ValidationError as exc:
        raise invalid(config_errors(exc)) from exc
    policy = AddressPolicy(allow_private=ctx.settings.allow_private_connectors)
    why = await destination_refusal(parsed, policy)
    if why is not None:
        raise invalid([FieldError(f"config.{destination(parsed).field}", why)])
    full = to_stored(parsed)
    names = SECRET_FIELDS[body.type]
    secrets = {k: v for k, v in full.items() if k in names and v is not None}
    return {k: v for k, v in full.items() if k not in names}, secrets


async def create_connector(ctx: Ctx, body: ConnectorIn) -> ConnectorOut:
    public, secrets = await _split_config(ctx, body)
    repo = ConnectorRepository(ctx.session)
    if await repo.name_taken(ctx.identity.workspace_id, body.name, None):
        raise conflict(f"a connector named '{body.name}' already exists")
    connector = await repo.add(
        Connector(
            id=_new_id(),
            workspace_id=ctx.identity.workspace_id,
            name=body.name,
            type=body.type.value,
            config=public,
            secrets=ctx.secrets.seal(secrets),
        )
    )
    await ctx.session.refresh(connector)
    return connector_out(ctx, connector)


async def update_connector(ctx: Ctx, connector_id: str, body: ConnectorIn) -> ConnectorOut:
    """Replace the config; a secret left out keeps its stored value."""
    connector = await get_connector(ctx, connector_id)
    if body.type.value != connector.type:
        raise invalid([FieldError("type", "a connector's type cannot change")])
    kept = ctx.secrets.open(connector.secrets)
    merged = ConnectorIn(name=body.name, type=body.type, config={**kept, **body.config})
    public, secrets = await _split_config(ctx, merged)
    repo = ConnectorRepository(ctx.session)
    if await repo.name_taken(ctx.identity.workspace_id, body.name, connector_id):
        raise conflict(f"a connector named '{body.name}' already exists")
    connector.name, connector.config = body.name, public
    connector.secrets = ctx.secrets.seal(secrets)
    connector.updated_at = func.now()
    await ctx.session.flush()
    await ctx.session.refresh(connector)
    return connector_out(ctx, connector)


async def get_connector(ctx: Ctx, connector_id: str) -> Connector:
    connector = await ConnectorRepository(ctx.session).get(ctx.identity.workspace_id, connector_id)
    if connector is None:
        raise not_found(f"connector {connector_id}")
    return connector


def full_config(ctx: Ctx, connector: Connector) -> dict[str, Any]:
    return {**connector.config, **ctx.secrets.open(connector.secrets)}


async def list_connectors(ctx: Ctx, cursor: str | None, limit: int) -> Page[Any]:
    rows = await ConnectorRepository(ctx.session).page(
        ctx.identity.workspace_id, decode_cursor(cursor), limit + 1
    )
    return _page(list(rows), limit, lambda c: connector_out(ctx, c))


# Webhook sources --------------------------------------------------------------------------


# A source's sealed secrets: {"secret": current, "previous": old, "previous_until": ISO
# time, "rotated_at": ISO time}; the previous secret only while its grace period runs.


def webhook_source_out(ctx: Ctx, source: WebhookSource) -> WebhookSourceOut:
    """Never a secret; when it was rotated and until when the previous one is accepted."""
    sealed = ctx.secrets.open(source.secret)
    now = ctx.state.clock.now()
    until = _time(sealed.get("previous_until"))
    return WebhookSourceOut(
        id=source.id,
        name=source.name,
        mapping=WebhookMapping.model_validate(source.mapping),
        created_at=source.created_at,
        rotated_at=_time(sealed.get("rotated_at")),
        rotation_grace_until=until if until is not None and until > now else None,
    )


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def webhook_source_secrets(sealed: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What the gateway verifies deliveries with: the current secret, and the previous one
    with its expiry while the grace period after a rotation runs."""
    until = _time(sealed.get("previous_until"))
    previous = sealed.get("previous") if until is not None and until > now else None
    return {
        "secret": sealed["secret"],
        "previous_secret": previous,
        "previous_secret_until": until.isoformat() if previous and until else None,
    }


async def create_webhook_source(ctx: Ctx, body: WebhookSourceIn) -> WebhookSourceOut:
    repo = WebhookSourceRepository(ctx.session)
    if await repo.name_taken(ctx.identity.workspace_id, body.name):
        raise conflict(f"a webhook source named '{body.name}' already exists")
    sealed = ctx.secrets.seal({"secret": body.secret})
    assert sealed is not None
    source = await repo.add(
        WebhookSource(
            id=_new_id(),
            workspace_id=ctx.identity.workspace_id,
            name=body.name,
            mapping=body.mapping.model_dump(exclude_none=True),
            secret=sealed,
        )
    )
    await ctx.session.refresh(source)
    return webhook_source_out(ctx, source)


async def get_webhook_source(ctx: Ctx, source_id: str) -> WebhookSource:
    found = await WebhookSourceRepository(ctx.session).get(ctx.identity.workspace_id, source_id)
    if found is None:
        raise not_found(f"webhook source {source_id}")
    return found


async def rotate_webhook_source(
    ctx: Ctx, source_id: str, body: WebhookSecretIn
) -> WebhookSourceOut:
    """The new secret signs from now on; the current one stays valid for the grace period
    (a secret still in its grace from an earlier rotation is dropped)."""
    source = await get_webhook_source(ctx, source_id)
    current = ctx.secrets.open(source.secret)["secret"]
    now = ctx.state.clock.now()
    until = now + timedelta(seconds=ctx.settings.webhook_secret_grace_s)
    sealed = ctx.secrets.seal({
        "secret": body.secret, "previous": current,
        "previous_until": until.isoformat(), "rotated_at": now.isoformat(),
    })  # fmt: skip
    assert sealed is not None
    source.secret = sealed
    await ctx.session.flush()
    return webhook_source_out(ctx, source)


async def delete_webhook_source(ctx: Ctx, source_id: str) -> None:
    """Revokes the source: its deliveries are refused once the gateway's cache expires."""
    if not await WebhookSourceRepository(ctx.session).delete(ctx.identity.workspace_id, source_id):
        raise not_found(f"webhook source {source_id}")


async def list_webhook_sources(ctx: Ctx, cursor: str | None, limit: int) -> Page[Any]:
    rows = await WebhookSourceRepository(ctx.session).page(
        ctx.identity.workspace_id, decode_cursor(cursor), limit + 1
    )
    return _page(list(rows), limit, lambda s: webhook_source_out(ctx, s))


# Workspace settings -----------------------------------------------------------------------


async def get_settings(ctx: Ctx, workspace_id: str | None = None) -> WorkspaceSettingsBody:
    stored = await SettingsRepository(ctx.session).get(workspace_id or ctx.identity.workspace_id)
    return WorkspaceSettingsBody.model_validate(stored or {})


async def put_settings(ctx: Ctx, patch: WorkspaceSettingsPatch) -> WorkspaceSettingsBody:
    current = await get_settings(ctx)
    merged = {
        **current.model_dump(mode="json"),
        **patch.model_dump(mode="json", exclude_unset=True),
    }
    try:
        settings = WorkspaceSettingsBody.model_validate(merged)
    except ValidationError as exc:
        raise invalid(pydantic_errors(exc)) from exc
    await SettingsRepository(ctx.session).put(
        ctx.identity.workspace_id, settings.model_dump(mode="json")
    )
    return settings
