"""A streaming reverse proxy to the services over one pooled httpx client."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

import httpx
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from shared.identity import HEADER_PREFIX
from shared.logging import correlation_headers, get_logger
from shared.problems import problem_response

log = get_logger(__name__)

# RFC 9110 section 7.6.1, plus what the client computes again for the next hop.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


# The gateway's own server sets these on the way out.
UPSTREAM_ONLY = frozenset({"date", "server"})


def _forward_headers(
    headers: Mapping[str, str], drop: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP | drop]


def upstream_url(base_url: str, request: Request) -> httpx.URL | None:
    """The service's URL for ``request``: the path and query exactly as the client sent them
    (still percent-encoded), or None when what would be sent is not the path the route
    table matched (``scope["path"]``), whether httpx would normalise it or it decodes to
    something else. The edge guard already refuses such paths; this keeps "authorised"
    and "forwarded" the same path even if that guard changed."""
    matched: str = request.scope["path"]
    raw: bytes = request.scope.get("raw_path") or matched.encode()
    query: bytes = request.scope.get("query_string", b"")
    target = raw + (b"?" + query if query else b"")
    url = httpx.URL(base_url).copy_with(raw_path=target)
    if url.raw_path != target or unquote(raw.decode("latin-1")) != matched:
        return None
    return url


async def forward(
    client: httpx.AsyncClient,
    base_url: str,
    service: str,
    request: Request,
    identity_headers: Mapping[str, str],
) -> Response:
    """Send ``request`` to ``base_url`` and stream the answer back; 503/504 if it can't.

    The caller's identity travels in ``x-waypost-*`` headers that only the gateway sets:
    any a client sent are dropped here.
    """
    added = {**correlation_headers(), **identity_headers}
    replaced = {k.lower() for k in added}
    headers = [
        (k, v)
        for k, v in _forward_headers(request.headers)
        if k.lower() not in replaced and not k.lower().startswith(HEADER_PREFIX)
    ]
    headers += list(added.items())
    url = upstream_url(base_url, request)
    if url is None:
        log.warning("gateway.path_mismatch", service=service)
        return problem_response(400, "Bad request", "the path cannot be forwarded as it was sent")
    upstream = client.build_request(request.method, url, headers=headers, content=request.stream())
    try:
        response = await client.send(upstream, stream=True)
    except httpx.TimeoutException:
        log.warning("gateway.upstream_timeout", service=service)
        return problem_response(504, "Upstream timeout", f"{service} did not answer in time")
    except httpx.TransportError as exc:
        log.warning("gateway.upstream_unavailable", service=service, error=str(exc))
        return problem_response(503, "Service unavailable", f"{service} is not reachable")
    return StreamingResponse(
        response.aiter_raw(),
        status_code=response.status_code,
        headers=dict(_forward_headers(response.headers)),
        background=BackgroundTask(response.aclose),
    )
