"""Segment-compatible ingestion: ``/segment/v1/{batch,track,identify}`` for partners whose
Segment or RudderStack SDKs point their ``host`` at ``<gateway>/segment``.

``track`` messages become events and ``identify`` messages profile updates, validated and
stored exactly like ``POST /v1/events`` and ``PUT /v1/profiles/{id}``; the answer is
Segment's ``{"success": true}`` once they are committed.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request

from gateway.guards import body_has_nul
from gateway.ingest import (
    INGEST,
    MAX_BATCH,
    InboxRow,
    Ingest,
    Limits,
    check_event,
    check_profile,
    event_row,
    parse_json,
    profile_row,
)
from gateway.settings import GatewaySettings
from shared.app import get_state
from shared.identity import Identity
from shared.problems import FieldError, ProblemError

# Where each event field comes from in a track message, for error paths.
_TRACK_FIELDS = {
    "event_id": "messageId",
    "profile_id": "userId",
    "name": "event",
    "timestamp": "timestamp",
    "properties": "properties",
    "traits": "context.traits",
}
_KINDS = ("track", "identify")


def _bad(errors: Sequence[FieldError]) -> ProblemError:
    return ProblemError(400, "Bad request", f"{len(errors)} problem(s) in the request", errors)


def decode_body(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body, gunzipped when sent with ``Content-Encoding: gzip``; 413 past ``limit``."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        body = raw
    elif encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(raw, limit + 1)
        except zlib.error:
            raise _bad([FieldError("$", "the body is not valid gzip")]) from None
        if len(body) > limit:
            raise ProblemError(
                413, "Payload too large", f"the decompressed body is over {limit} bytes"
            )
        if not inflater.eof:
            raise _bad([FieldError("$", "the gzip body is truncated")])
    else:
        raise ProblemError(415, "Unsupported media type", f"Content-Encoding {encoding} is unknown")
    if body_has_nul(body):
        raise ProblemError(422, "Validation failed", "NUL characters (U+0000) are not accepted")
    return body


def _profile_id(message: dict[str, Any]) -> Any:
    user = message.get("userId")
    return user if user not in (None, "") else message.get("anonymousId")


def _moved(errors: Sequence[FieldError], at: str, fields: dict[str, str]) -> list[FieldError]:
    """Errors about the mapped record, told in terms of the Segment message at ``at``."""
    moved = []
    for error in errors:
        head, sep, rest = error.path.partition(".")
        head, bracket, index = head.partition("[")
        field = fields.get(head, head) if head != "$" else ""
        path = ".".join(p for p in (at, field) if p) + (bracket + index) + (sep + rest)
        moved.append(FieldError(path or "$", error.message))
    return moved


def track_row(
    workspace_id: str, message: dict[str, Any], at: str, now: datetime, limits: Limits
) -> tuple[InboxRow | None, list[FieldError]]:
    context = message.get("context")
    raw = {
        "event_id": message.get("messageId"),
        "profile_id": _profile_id(message),
        "name": message.get("event"),
        "timestamp": message.get("timestamp"),
        "properties": message.get("properties"),
        "traits": context.get("traits") if isinstance(context, dict) else None,
    }
    event, errors = check_event({k: v for k, v in raw.items() if v is not None}, (), limits)
    if event is None:
        fields = dict(_TRACK_FIELDS)
        if message.get("userId") in (None, ""):
            fields["profile_id"] = "anonymousId"
        return None, _moved(errors, at, fields)
    return event_row(workspace_id, event, now), []


def identify_row(
    workspace_id: str, message: dict[str, Any], at: str, now: datetime, limits: Limits
) -> tuple[InboxRow | None, list[FieldError]]:
    errors: list[FieldError] = []
    profile_id = _profile_id(message)
    if not isinstance(profile_id, str) or not 1 <= len(profile_id) <= 200:
        path = f"{at}.userId" if at else "userId"
        errors.append(FieldError(path, "give userId or anonymousId (1 to 200 characters)"))
    try:
        body = check_profile({"attributes": message.get("traits") or {}}, limits)
    except ProblemError as exc:
        errors += _moved(exc.errors, at, {"attributes": "traits"})
        return None, errors
    if errors:
        return None, errors
    assert isinstance(profile_id, str)
    return profile_row(workspace_id, profile_id, body, now), []


async def accept(ingest: Ingest, identity: Identity, messages: list[tuple[str, Any]]) -> None:
    """Every message (path, message) or none: 400 with every problem, else all committed in
    order. Messages of other types are skipped."""
    now, rows, errors = ingest.now(), [], []
    for at, message in messages:
        if not isinstance(message, dict):
            errors.append(FieldError(at or "$", "must be an object"))
            continue
        kind = message.get("type")
        if kind not in _KINDS:
            continue
        make = track_row if kind == "track" else identify_row
        row, problems = make(identity.workspace_id, message, at, now, ingest.limits)
        if row is not None:
            rows.append(row)
        errors += problems
    if errors:
        ingest.metrics.rejected.inc(len(messages))
        raise _bad(errors)
    await ingest.writer.write(rows)


Caller = Callable[..., Awaitable[Identity]]


def router(caller: Caller) -> APIRouter:
    """The Segment routes; ``caller`` authorises the request from its Basic credentials."""
    api = APIRouter(prefix="/segment/v1", tags=["segment-compatible ingestion"])
    authorised = Depends(caller)

    async def messages(request: Request) -> Any:
        state = get_state(request)
        assert isinstance(state.settings, GatewaySettings)
        raw = decode_body(
            await request.body(),
            request.headers.get("content-encoding", ""),
            state.settings.max_body_bytes,
        )
        try:
            return parse_json(raw)
        except ProblemError as exc:
            raise _bad(exc.errors) from None

    def service(request: Request) -> Ingest:
        ingest: Ingest = get_state(request).extras[INGEST]
        return ingest

    @api.post("/batch")
    async def batch(*, who: Identity = authorised, request: Request) -> dict[str, bool]:
        body = await messages(request)
        items = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise _bad([FieldError("batch", f"must be a list of 1 to {MAX_BATCH} messages")])
        await accept(service(request), who, [(f"batch[{i}]", m) for i, m in enumerate(items)])
        return {"success": True}

    @api.post("/track")
    async def track(*, who: Identity = authorised, request: Request) -> dict[str, bool]:
        body = await messages(request)
        if isinstance(body, dict):
            body = {**body, "type": "track"}
        await accept(service(request), who, [("", body)])
        return {"success": True}

    @api.post("/identify")
    async def identify(*, who: Identity = authorised, request: Request) -> dict[str, bool]:
        body = await messages(request)
        if isinstance(body, dict):
            body = {**body, "type": "identify"}
        await accept(service(request), who, [("", body)])
        return {"success": True}

    return api
