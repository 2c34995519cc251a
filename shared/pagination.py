"""Cursor pagination: ``?limit=`` (default 50, max 500) and an opaque ``?cursor=``.

A cursor is the position of the last row shown (base64 of a JSON array), handed back as
given. A client may send anything there, so decoding checks the shape the list expects,
element by element: the right number of values, each of its type and within what the
database can take (timezone-aware times inside Python's and PostgreSQL's range, text
without NUL or lone surrogates, integers that fit a bigint). Whatever fails is a 422 with
the path ``cursor``, never a failed query. A cursor of another list with the same shape
is a valid position here: it only moves where the page starts, and every list stays
scoped to the caller's workspace and grants whatever the cursor says.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from shared.problems import FieldError, ProblemError

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Cursor = Annotated[str | None, Query(max_length=500, description="From a previous page")]

# (created_at, id): the position of most lists.
Keyset = tuple[datetime, str]
KEYSET: tuple[type, ...] = (datetime, str)
# Longest text a position holds (ids and names are at most 200 characters).
MAX_TEXT = 200
MAX_INT = 2**63 - 1


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(position: list[Any] | tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position), default=str).encode()).decode()


class _Bad(ValueError):
    pass


def _bad(why: str) -> ProblemError:
    return ProblemError(422, "Validation failed", "bad cursor", [FieldError("cursor", why)])


def decode_cursor(cursor: str | None, shape: tuple[type, ...] = KEYSET) -> tuple[Any, ...] | None:
    """The position ``cursor`` holds, one value per type of ``shape`` (``datetime``,
    ``str`` or ``int``); a 422 naming ``cursor`` for anything else."""
    if cursor is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii", "strict")))
    except (binascii.Error, ValueError, UnicodeError, RecursionError):
        raise _bad("not a cursor") from None
    if not isinstance(value, list) or len(value) != len(shape):
        raise _bad("not a cursor of this list")
    try:
        return tuple(_typed(item, kind) for item, kind in zip(value, shape, strict=True))
    except _Bad as exc:
        raise _bad(f"not a cursor of this list: {exc}") from None


def _typed(item: Any, kind: type) -> Any:
    if kind is datetime:
        return _time(item)
    if kind is str:
        return _text(item)
    if kind is int:
        if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item <= MAX_INT:
            raise _Bad("a position out of range")
        return item
    raise TypeError(f"no cursor field of type {kind.__name__}")


def _time(item: Any) -> datetime:
    if not isinstance(item, str) or len(item) > 64:
        raise _Bad("a time that is not one")
    try:
        when = datetime.fromisoformat(item)
        if when.tzinfo is None:
            raise _Bad("a time without its offset")
        return when.astimezone(UTC)  # out of range once in UTC: OverflowError
    except (ValueError, OverflowError):
        raise _Bad("a time that is not one") from None


def _text(item: Any) -> str:
    if not isinstance(item, str) or len(item) > MAX_TEXT or "\x00" in item:
        raise _Bad("an id that is not one")
    try:
        item.encode()
    except UnicodeEncodeError:
        raise _Bad("an id that is not one") from None
    return item
