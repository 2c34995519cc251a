"""Signed tracking tokens for HTML email: an open pixel and rewritten links.

The activator puts them into the HTML it sends; the gateway verifies them at ``/t/o/{token}``
and ``/t/c/{token}`` and records ``email_opened`` / ``email_clicked`` for the profile. A
token is the message's coordinates (and for a click the original URL) and when it was
signed, signed with HMAC SHA-256, so a forged or altered token records nothing; the gateway
also refuses to record with a token older than its ``tracking_token_max_age_days``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
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
    issued_at: int | None = None  # when it was signed: Unix seconds on the product clock

    def issued(self) -> datetime | None:
        return None if self.issued_at is None else datetime.fromtimestamp(self.issued_at, UTC)


_TEXT_FIELDS = ("workspace_id", "profile_id", "journey_id", "step_id", "activation_id")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(mark: Mark, secret: str) -> str:
    body = _b64(json.dumps(asdict(mark), separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac[:16])}"


def verify(token: str, secret: str) -> Mark | None:
    """The mark in ``token``, or None if it was not signed with ``secret``. Whatever the
    token holds, this answers and never raises: it comes from anyone on the internet."""
    body, _, mac = token.partition(".")
    if not mac or not (body.isascii() and mac.isascii()):
        return None
    expected = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()[:16])
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        return None
    try:
        data = json.loads(_unb64(body))
    except (ValueError, RecursionError):  # bad base64 or JSON, or not UTF-8
        return None
    return _mark(data)


def _mark(data: object) -> Mark | None:
    """A mark from the signed JSON, if it has a mark's fields with a mark's types."""
    if not isinstance(data, dict) or not set(data) <= {f.name for f in fields(Mark)}:
        return None
    if not all(isinstance(data.get(name), str) for name in _TEXT_FIELDS):
        return None
    url, issued_at = data.get("url"), data.get("issued_at")
    if url is not None and not isinstance(url, str):
        return None
    if issued_at is not None and (type(issued_at) is not int or not 0 <= issued_at < 2**37):
        return None
    return Mark(**data)


def expired(mark: Mark, now: datetime, max_age: timedelta) -> bool:
    """Whether ``mark`` is too old to record anything. A token that does not say when it
    was signed (signed before tokens carried the time) is too old."""
    issued = mark.issued()
    return issued is None or now - issued > max_age


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
