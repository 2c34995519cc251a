"""ISO 8601 durations (``PT3H``, ``P1D``, ``P2DT3H30M``, ``PT1.5S``, ``P1W``) as timedeltas.

Journeys keep durations as the strings their authors wrote, so a journey reads back the way
it was sent; the runtime turns them into timedeltas with ``to_timedelta``. Years and months
are refused: they have no fixed length, and a timer must know exactly when it falls due.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

_NUMBER = r"[0-9]+(?:[.,][0-9]+)?"
_PATTERN = re.compile(
    rf"P(?:(?P<weeks>{_NUMBER})W)?(?:(?P<days>{_NUMBER})D)?"
    rf"(?:T(?:(?P<hours>{_NUMBER})H)?(?:(?P<minutes>{_NUMBER})M)?(?:(?P<seconds>{_NUMBER})S)?)?"
)
_UNITS = ("weeks", "days", "hours", "minutes", "seconds")
_MICROSECONDS = {
    "weeks": Decimal(7 * 86_400_000_000),
    "days": Decimal(86_400_000_000),
    "hours": Decimal(3_600_000_000),
    "minutes": Decimal(60_000_000),
    "seconds": Decimal(1_000_000),
}
_EXAMPLES = "e.g. PT30M, PT3H, P1D, P1W or P2DT3H30M"


def parse_duration(text: str) -> timedelta:
    """``"P2DT3H30M"`` -> ``timedelta(days=2, hours=3, minutes=30)``; ValueError if invalid."""
    match = _PATTERN.fullmatch(text)
    shown = _shown(text)
    if match is None:
        raise ValueError(_explain_mismatch(text, shown))
    parts = {unit: match.group(unit) for unit in _UNITS}
    given = [unit for unit in _UNITS if parts[unit] is not None]
    if not given:
        raise ValueError(f"'{shown}' names no amount of time ({_EXAMPLES})")
    if text.endswith("T"):
        raise ValueError(f"'{shown}': 'T' must be followed by hours, minutes or seconds")
    # ISO 8601 allows a decimal fraction on the smallest component only.
    if any(_has_fraction(parts[unit]) for unit in given[:-1]):
        raise ValueError(f"'{shown}': only the last component may have a fraction")
    total = sum((_decimal(parts[unit]) * _MICROSECONDS[unit] for unit in given), start=Decimal(0))
    try:
        return timedelta(microseconds=int(total.to_integral_value()))
    except OverflowError:
        raise ValueError(f"'{shown}' is too long to be a duration") from None


@lru_cache(maxsize=4096)
def to_timedelta(text: str) -> timedelta:
    """The timedelta of a duration already validated by ``Duration`` (cached: hot path)."""
    return parse_duration(text)


def _shown(text: str) -> str:
    # Messages quote the input; a huge one is cut so the message stays readable.
    return text if len(text) <= 40 else text[:37] + "..."


def _explain_mismatch(text: str, shown: str) -> str:
    if text.startswith("-"):
        return f"'{shown}': a duration cannot be negative"
    if not text.startswith("P"):
        return f"'{shown}' is not an ISO 8601 duration: it must start with 'P' ({_EXAMPLES})"
    date_part = text[1:].split("T", 1)[0]
    if "Y" in date_part or "M" in date_part:
        return (
            f"'{shown}': years and months have no fixed length and are not allowed; "
            "use weeks or days instead (e.g. P30D)"
        )
    return f"'{shown}' is not an ISO 8601 duration ({_EXAMPLES})"


def _has_fraction(number: str | None) -> bool:
    return number is not None and ("." in number or "," in number)


def _decimal(number: str | None) -> Decimal:
    try:
        return Decimal((number or "0").replace(",", "."))
    except InvalidOperation:  # pragma: no cover - the pattern admits digits only
        raise ValueError(f"'{number}' is not a number") from None


def format_duration(value: timedelta) -> str:
    """``timedelta(days=2, hours=3, minutes=30)`` -> ``"P2DT3H30M"``; zero is ``"PT0S"``.

    A negative value is written with a leading ``-`` (for messages only: parsing refuses it).
    """
    if value < timedelta(0):
        return "-" + format_duration(-value)
    days = value.days
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds or value.microseconds:
        time += _seconds(seconds, value.microseconds) + "S"
    if not days and not time:
        return "PT0S"
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")


def _seconds(seconds: int, microseconds: int) -> str:
    if not microseconds:
        return str(seconds)
    return f"{seconds}.{microseconds:06d}".rstrip("0")


def describe(value: timedelta) -> str:
    """A short reading for messages: ``timedelta(days=24)`` -> ``"24 days"``."""
    if value < timedelta(0):
        return "minus " + describe(-value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    units = ((value.days, "day"), (hours, "hour"), (minutes, "minute"))
    words = [_count(n, unit) for n, unit in units if n]
    if value.microseconds:
        # Below 60, so ``:g`` never writes an exponent.
        words.append(f"{seconds + value.microseconds / 1_000_000:g} seconds")
    elif seconds:
        words.append(_count(seconds, "second"))
    return " ".join(words) or "0 seconds"


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _check_duration(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as exc:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None
    return text


# A string field holding an ISO 8601 duration: it dumps as written; read it with to_timedelta.
Duration = Annotated[
    str,
    Field(json_schema_extra={"format": "duration"}, examples=["PT3H", "P1D"]),
    AfterValidator(_check_duration),
]
