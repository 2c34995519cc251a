"""Partner webhooks: ``POST /hooks/{source_id}``, signed per Standard Webhooks, mapped to an
event with the source's mapping and accepted like ``POST /v1/events``."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from standardwebhooks import Webhook

from gateway.cache import TtlCache
from gateway.ingest import INGEST, Accepted, Ingest, parse_json
from gateway.ratelimit import OPEN_LIMITS, OpenLimits, too_many
from shared import jsonpath
from shared.app import get_state
from shared.problems import FieldError, ProblemError, invalid

SOURCES = "webhook_sources"
TOLERANCE = timedelta(minutes=5)
_SOURCE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The mapped fields that are identifiers: a partner's numeric ids are taken as text.
_IDS = ("profile_id", "event_id", "name")


@dataclass(frozen=True)
class Source:
    id: str
    workspace_id: str
    secret: str
    mapping: dict[str, str]
    # The secret before the last rotation, accepted until ``previous_until``.
    previous_secret: str | None = None
    previous_until: datetime | None = None

    def secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery may be signed with at ``now``."""
        if self.previous_secret and self.previous_until and now < self.previous_until:
            return [self.secret, self.previous_secret]
        return [self.secret]


class SourceCache:
    """Webhook sources asked of the designer and remembered for at most ``ttl_s``."""

    def __init__(
        self, client: httpx.AsyncClient, designer_url: str, ttl_s: float = 1.0, size: int = 10_000
    ) -> None:
        self._client = client
        self._url = designer_url
        self._cache: TtlCache[Source | None] = TtlCache(ttl_s, size)

    async def get(self, source_id: str) -> Source | None:
        return await self._cache.get(source_id, self._ask)

    async def _ask(self, source_id: str) -> Source | None:
        try:
            r = await self._client.get(
                f"{self._url}/internal/webhooks/sources/{quote(source_id, safe='')}"
            )
        except httpx.HTTPError as exc:
            raise ProblemError(503, "Service unavailable", "designer is not reachable") from exc
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise ProblemError(503, "Service unavailable", f"designer answered {r.status_code}")
        data = r.json()
        until = data.get("previous_secret_until")
        return Source(
            data["id"], data["workspace_id"], data["secret"], dict(data["mapping"]),
            data.get("previous_secret"), datetime.fromisoformat(until) if until else None,
        )  # fmt: skip


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "Unauthorized", detail)


def verify(source: Source, body: bytes, headers: dict[str, str], now: datetime) -> str:
    """The delivery's ``webhook-id`` once its signature and timestamp check out; else 401.

    The time is checked against the product's clock (which may be virtual), the signature
    as Standard Webhooks computes it, with the current secret or, in the grace period
    after a rotation, the previous one."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        raise _unauthorized("send webhook-id, webhook-timestamp and webhook-signature headers")
    try:
        sent = datetime.fromtimestamp(int(stamp), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise _unauthorized("webhook-timestamp must be whole seconds since the epoch") from None
    if abs(sent - now) > TOLERANCE:
        raise _unauthorized("webhook-timestamp is more than 5 minutes from the current time")
    expected: list[bytes] = []
    try:
        text = body.decode()
        for secret in source.secrets(now):
            signed = Webhook(secret).sign(msg_id, sent, text).partition(",")[2]
            expected.append(base64.b64decode(signed))
    except (UnicodeDecodeError, ValueError, binascii.Error):
        raise _unauthorized("the signature does not match") from None
    for candidate in signatures.split():
        version, _, signature = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(signature, validate=True)
        except (ValueError, binascii.Error):
            continue
        if any(hmac.compare_digest(e, given) for e in expected):
            return msg_id
    raise _unauthorized("the signature does not match")


def map_event(mapping: dict[str, str], payload: Any, msg_id: str) -> dict[str, Any]:
    """The raw event for ``payload``: the mapped fields, the payload as its properties."""
    if not isinstance(payload, dict):
        raise invalid([FieldError("$", "the payload must be a JSON object")])
    event: dict[str, Any] = {"event_id": msg_id, "properties": payload}
    for field, path in mapping.items():
        value = jsonpath.find(payload, jsonpath.parse(path))
        if isinstance(value, int) and not isinstance(value, bool) and field in _IDS:
            value = str(value)
        if value is not None:
            event[field] = value
    return event


router = APIRouter(tags=["partner webhooks"])


@router.post(
    "/hooks/{source_id}",
    status_code=202,
    summary="Receive a partner's signed webhook as an event",
    responses={
        401: {"description": "Missing or bad signature, or a timestamp out of tolerance."},
        404: {"description": "No such webhook source (or it was revoked)."},
        429: {"description": "Over the client's, the source's or the failed-attempt rate "
              "(Retry-After says when to try again)."},
    },
)  # fmt: skip
async def receive(request: Request, source_id: str) -> Accepted:
    """Limited per client address and per source (429 with Retry-After); a client with too
    many unknown sources or bad signatures is refused before anything is checked."""
    state = get_state(request)
    limits: OpenLimits = state.extras[OPEN_LIMITS]
    limits.refuse_if_failing(request)
    wait = limits.hit(request, "hooks", source_id)
    if wait > 0:
        raise too_many("too many webhook deliveries; slow down", wait)
    cache: SourceCache = state.extras[SOURCES]
    source = await cache.get(source_id) if _SOURCE_ID.match(source_id) else None
    if source is None:
        limits.failure(request, "webhook_source")
        raise ProblemError(404, "Not found", f"webhook source {source_id} does not exist")
    body = await request.body()
    try:
        msg_id = verify(source, body, dict(request.headers), state.clock.now())
    except ProblemError:
        limits.failure(request, "webhook_signature")
        raise
    ingest: Ingest = state.extras[INGEST]
    return await ingest.accept_for(
        source.workspace_id, map_event(source.mapping, parse_json(body), msg_id)
    )
