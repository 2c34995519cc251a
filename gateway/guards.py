"""Checks at the edge, before any service sees a request: paths that could mean another
path get 400; bodies over the limit get 413; NUL characters, which PostgreSQL cannot store
in text or JSON, get 422 wherever they are (path, query or an escaped \u0000 in a JSON
body)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logging import get_logger
from shared.problems import problem_response

log = get_logger(__name__)

METRICS = "edge_metrics"


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused_paths = Counter(
            "waypost_gateway_refused_paths_total",
            "Requests refused at the edge for a path that could name another path",
            ["kind"],
            registry=registry,
        )


def _metrics(scope: Scope) -> EdgeMetrics | None:
    """The app's edge metrics once its lifespan made them (the middleware comes first)."""
    state: Any = getattr(getattr(scope.get("app"), "state", None), "svc", None)
    found = state.extras.get(METRICS) if state is not None else None
    return found if isinstance(found, EdgeMetrics) else None


# Routes that accept compressed bodies and check the decoded body themselves.
DECODED_LATER = ("/segment/",)


class InputGuardMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = path_refusal(scope.get("raw_path") or scope["path"].encode())
        if refusal is not None:
            metrics = _metrics(scope)
            if metrics is not None:
                metrics.refused_paths.labels(refusal.kind).inc()
            log.warning("gateway.path_refused", reason=refusal.kind)
            response = problem_response(400, "Bad request", refusal.detail)
            await response(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            await self._too_large(scope, receive, send)
            return
        if _has_nul(scope, body):
            response = problem_response(
                422, "Validation failed", "NUL characters (U+0000) are not accepted"
            )
            await response(scope, _replay(body, receive), send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, "Payload too large", f"the body is over the limit of {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


@dataclass(frozen=True)
class PathRefusal:
    kind: str
    detail: str


# Percent-encoded "/", "\\" and ".", also encoded again (%252f, %25252e, ...): each could
# turn into a separator or a dot segment in a hop that decodes once more. A percent sign
# of its own ("100%" is "100%25") stays allowed.
_ENCODED = re.compile(rb"%(25)*(2f|5c|2e)", re.IGNORECASE)


def path_refusal(raw_path: bytes) -> PathRefusal | None:
    """Why ``raw_path`` (as sent, still percent-encoded) is refused, or None.

    The route table authorises a path and the proxy forwards it: both must be the same
    path for every server on the way, whatever it normalises. So a path with dot
    segments, empty segments, backslashes or encoded separators and dots never gets as
    far as the route table; a normal client never sends one.
    """
    if not raw_path.startswith(b"/"):
        return PathRefusal("not_absolute", "the path must start with '/'")
    if b"\\" in raw_path:
        return PathRefusal("backslash", "backslashes are not accepted in the path")
    encoded = _ENCODED.search(raw_path)
    if encoded is not None:
        return PathRefusal(
            "encoded", f"percent-encoded {encoded.group(0).decode()!r} is not accepted in the path"
        )
    segments = raw_path.split(b"/")[1:]
    if any(s in (b".", b"..") for s in segments):
        return PathRefusal("dot_segment", "'.' and '..' segments are not accepted in the path")
    if any(s == b"" for s in segments[:-1]):  # a trailing slash is one empty last segment
        return PathRefusal("empty_segment", "empty segments ('//') are not accepted in the path")
    if not _same_once_decoded(raw_path):
        return PathRefusal("encoded", "the path decodes, more than once, into another path")
    return None


def _same_once_decoded(raw_path: bytes, rounds: int = 8) -> bool:
    """However often a hop decodes the path (``%25%32%66`` is ``%2f``, then ``/``), it keeps
    its separators and gains no backslash or dot segment. Decoding only ever adds those,
    so the fully decoded path is the one to check."""
    decoded = raw_path
    for _ in range(rounds):
        again = unquote_to_bytes(decoded)
        if again == decoded:
            break
        decoded = again
    else:
        return False  # still decoding: nothing sane is encoded this deep
    return (
        decoded.count(b"/") == raw_path.count(b"/")
        and b"\\" not in decoded
        and not any(s in (b".", b"..") for s in decoded.split(b"/"))
    )


# An escaped NUL that is not itself an escaped backslash followed by "u0000".
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def _has_nul(scope: Scope, body: bytes) -> bool:
    target = scope.get("raw_path", b"") + b"?" + scope.get("query_string", b"")
    if b"%00" in target or b"\x00" in target:
        return True
    encoding = dict(scope["headers"]).get(b"content-encoding", b"identity").lower()
    if encoding != b"identity" and scope["path"].startswith(DECODED_LATER):
        return False  # compressed: the route decodes the body and checks that
    return body_has_nul(body)


def body_has_nul(body: bytes) -> bool:
    """A NUL in ``body``, raw or as an escaped \\u0000 in JSON."""
    return b"\x00" in body or _ESCAPED_NUL.search(body) is not None


def _replay(body: bytes, upstream: Receive) -> Receive:
    """The body once, then the client's own messages: a streamed answer listens for the
    client's disconnect, and an invented one would cut the answer short."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive
