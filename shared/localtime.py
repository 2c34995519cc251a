"""The next local time of day in a timezone, the way a person reads a wall clock.

On a spring-forward day a time inside the gap (02:30 when clocks jump from 02:00 to 03:00)
happens when the clocks jump: 03:00. On a fall-back day a time that occurs twice happens
the first time only.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def zone(name: str | None, fallback: str = "UTC") -> tzinfo:
    """The IANA zone ``name``, else ``fallback``, else UTC; never raises."""
    for candidate in (name, fallback):
        if isinstance(candidate, str) and candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return UTC


def wall_clock(day: date, at: time, tz: tzinfo) -> datetime:
    """The instant a wall clock in ``tz`` shows ``at`` on ``day`` (first time; gap -> its end)."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive:
        return first.astimezone(UTC)
    # In a gap: the first instant whose wall clock reads at or past ``naive``.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first.astimezone(UTC)
    low, high = min(low, high), max(low, high)
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= naive:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def next_time_of_day(
    now: datetime, at: time, tz: tzinfo, days: Collection[str] | None = None
) -> datetime:
    """The first instant at or after ``now`` when the clock in ``tz`` shows ``at``,
    on one of ``days`` (``"mon"``..``"sun"``) when given."""
    local_today = now.astimezone(tz).date()
    for offset in range(0, 15):
        day = local_today + timedelta(days=offset)
        if days and WEEKDAYS[day.weekday()] not in days:
            continue
        candidate = wall_clock(day, at, tz)
        if candidate >= now:
            return candidate
    raise ValueError("no matching day within two weeks")  # unreachable with valid days


def parse_hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))
