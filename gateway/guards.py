"""Checks at the edge, before any service sees a request: bodies over the limit get 413;
NUL characters, which PostgreSQL cannot store in text or JSON, get 422 wherever they are
(path, query or an escaped \u0000 in a JSON body)."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import problem_response

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
