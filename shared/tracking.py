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
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from html import escape

OPEN_PATH = "/t/o/"
CLICK_PATH = "/t/c/"
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)


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
    """Every http(s) link rewritten to the click endpoint, and an open pixel at the end."""
    base = public_url.rstrip("/")

    def rewrite(match: re.Match[str]) -> str:
        token = sign(Mark(**{**asdict(mark), "url": _unescape(match.group(3))}), secret)
        return f"{match.group(1)}{match.group(2)}{base}{CLICK_PATH}{token}{match.group(2)}"

    tracked = _HREF.sub(rewrite, html)
    pixel = (
        f'<img src="{escape(base + OPEN_PATH + sign(mark, secret))}" width="1" height="1" '
        'alt="" style="display:none">'
    )
    if re.search(r"</body\s*>", tracked, re.IGNORECASE):
        return re.sub(r"(</body\s*>)", pixel + r"\1", tracked, count=1, flags=re.IGNORECASE)
    return tracked + pixel


def _unescape(url: str) -> str:
    return url.replace("&amp;", "&")


# A transparent 1x1 GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
