"""Signed tracking tokens for HTML email: an open pixel and rewritten links.

The activator puts them into the HTML it sends; the gateway verifies them at ``/t/o/{token}``
and ``/t/c/{token}`` and records ``email_opened`` / ``email_clicked`` for the profile. A
token is the message's coordinates (and for a click the original URL) signed with HMAC
SHA-256, so a forged or altered token records nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from html import escape

OPEN_PATH = "/t/o/"
CLICK_PATH = "/t/c/"
# The pieces of a tracked link: ``<a`` that starts a tag, an ``href`` attribute name, and
# its quoted http(s) value. Each is matched on its own, never with a pattern that scans
# ahead for the others (see ``_links``).
_A_TAG = re.compile(r"<a\b", re.IGNORECASE)
_HREF_NAME = re.compile(r"\bhref", re.IGNORECASE)
_HREF_VALUE = re.compile(r"""href\s*=\s*(["'])(https?://[^"']+)\1""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class Mark:
    workspace_id: str
    profile_id: str
    journey_id: str
    step_id: str
    activation_id: str
    url: str | None = None  # the original link of a click


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(mark: Mark, secret: str) -> str:
    body = _b64(json.dumps(asdict(mark), separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac[:16])}"


def verify(token: str, secret: str) -> Mark | None:
    """The mark in ``token``, or None if it was not signed with ``secret``."""
    body, _, mac = token.partition(".")
    expected = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()[:16])
    if not mac or not hmac.compare_digest(mac, expected):
        return None
    try:
        data = json.loads(_unb64(body))
        return Mark(**data)
    except (ValueError, TypeError):
        return None


def instrument(html: str, mark: Mark, secret: str, public_url: str) -> str:
    """Every http(s) link rewritten to the click endpoint, and an open pixel at the end.

    Linear in the size of ``html`` whatever it holds (see ``_links``)."""
    base = public_url.rstrip("/")
    parts: list[str] = []
    done = 0
    for start, stop in _links(html):
        url = _unescape(html[start:stop])
        token = sign(Mark(**{**asdict(mark), "url": url}), secret)
        parts += [html[done:start], base, CLICK_PATH, token]
        done = stop
    parts.append(html[done:])
    tracked = "".join(parts)
    pixel = (
        f'<img src="{escape(base + OPEN_PATH + sign(mark, secret))}" width="1" height="1" '
        'alt="" style="display:none">'
    )
    end = _BODY_END.search(tracked)
    if end is None:
        return tracked + pixel
    return tracked[: end.start()] + pixel + tracked[end.start() :]


def _links(html: str) -> Iterator[tuple[int, int]]:
    """The (start, stop) of every link value to rewrite, in order: for each ``<a`` tag, the
    first ``href`` with a quoted http(s) value before the tag's first ``>``.

    A single pattern saying that (``<a\\b[^>]*?\\bhref...``) scans from every ``<a`` to
    the next ``>``, which is quadratic in an email of unclosed ``<a`` (60 KB took 48 s), and
    the standard library's HTML parser is quadratic on such input too. Here every ``href``
    is tried once, and one pass pairs each ``<a`` with the first of them that matched: the
    same links as that pattern would find, in time linear in the input."""
    values = [
        (found.start(), value.start(2), value.end(2), value.end())
        for found in _HREF_NAME.finditer(html)
        if (value := _HREF_VALUE.match(html, found.start())) is not None
    ]
    at = 0  # the first of ``values`` that may still belong to a later tag
    resume = 0  # nothing before this is looked at again (the last rewritten value ends here)
    closing = -1  # the first ``>`` after the current tag's name, if known
    for tag in _A_TAG.finditer(html):
        name_end = tag.end()
        if tag.start() < resume:
            continue
        while at < len(values) and values[at][0] < name_end:
            at += 1
        if at == len(values):
            return
        if closing < name_end:
            closing = html.find(">", name_end)
            closing = len(html) if closing < 0 else closing
        href, start, stop, end = values[at]
        if href < closing:
            yield start, stop
            resume = end


def _unescape(url: str) -> str:
    return url.replace("&amp;", "&")


# A transparent 1x1 GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
