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
from dataclasses import asdict, dataclass
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
