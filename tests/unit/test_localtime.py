"""Wall-clock maths: the next local time of day, as a person reads the clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

import pytest

from shared.localtime import next_time_of_day, parse_hhmm, zone

NEW_YORK = zone("America/New_York")


def local(dt: datetime) -> str:
    return dt.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M %Z")


def test_a_time_in_the_spring_forward_gap_happens_when_the_clocks_jump() -> None:
    midnight = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST, clocks jump at 02:00
    assert local(next_time_of_day(midnight, time(2, 30), NEW_YORK)) == "2026-03-08 03:00 EDT"


def test_a_time_that_occurs_twice_in_the_fall_happens_once() -> None:
    midnight = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT, clocks fall back at 02:00
    first = next_time_of_day(midnight, time(1, 30), NEW_YORK)
    assert local(first) == "2026-11-01 01:30 EDT"
    after = next_time_of_day(first + timedelta(minutes=1), time(1, 30), NEW_YORK)
    assert local(after) == "2026-11-02 01:30 EST"  # not the second 01:30 of that night


def test_weekdays_and_today_or_tomorrow() -> None:
    monday_evening = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # 17:00 in New York, Monday
    assert local(next_time_of_day(monday_evening, time(18, 0), NEW_YORK)) == "2026-11-23 18:00 EST"
    assert local(next_time_of_day(monday_evening, time(9, 0), NEW_YORK)) == "2026-11-24 09:00 EST"
    friday = next_time_of_day(monday_evening, time(9, 0), NEW_YORK, ["fri", "sat"])
    assert local(friday) == "2026-11-27 09:00 EST"
    exactly = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # 18:00 New York: due now
    assert next_time_of_day(exactly, time(18, 0), NEW_YORK) == exactly


@pytest.mark.parametrize("name", [None, "", "Mars/Olympus", 42])
def test_an_unknown_zone_falls_back(name: object) -> None:
    assert zone(name, "Asia/Tokyo") == zone("Asia/Tokyo")  # type: ignore[arg-type]
    assert zone(name, "nowhere") is UTC  # type: ignore[arg-type]


def test_parse_hhmm() -> None:
    assert parse_hhmm("09:05") == time(9, 5)


# Each zone's 2026 transitions: (zone, spring-forward day, a wall time inside the gap, where
# the clocks land after the gap; fall-back day, a wall time in the repeated interval).
TRANSITIONS = [
    ("America/New_York", date(2026, 3, 8), time(2, 30), time(3, 0),
     date(2026, 11, 1), time(1, 30)),
    ("Europe/London", date(2026, 3, 29), time(1, 30), time(2, 0),
     date(2026, 10, 25), time(1, 30)),
    ("Australia/Sydney", date(2026, 10, 4), time(2, 30), time(3, 0),
     date(2026, 4, 5), time(2, 30)),
    # A 30-minute shift: 02:00 -> 02:30 in spring, 02:00 -> 01:30 in autumn.
    ("Australia/Lord_Howe", date(2026, 10, 4), time(2, 15), time(2, 30),
     date(2026, 4, 5), time(1, 45)),
]  # fmt: skip
ZONE_NAMES = [t[0] for t in TRANSITIONS]


def _starts(day: date, tz: tzinfo, hours: int) -> list[datetime]:
    """Every 5 minutes from local midnight of ``day`` for ``hours`` hours, as instants."""
    midnight = datetime.combine(day, time(0, 0), tzinfo=tz).astimezone(UTC)
    return [midnight + timedelta(minutes=5 * k) for k in range(hours * 12)]


@pytest.mark.parametrize(
    ("name", "day", "at", "after_gap"), [t[:4] for t in TRANSITIONS], ids=ZONE_NAMES
)
def test_a_time_in_the_gap_fires_once_when_the_clocks_have_jumped(
    name: str, day: date, at: time, after_gap: time
) -> None:
    tz = zone(name)
    gap_end = datetime.combine(day, after_gap, tzinfo=tz).astimezone(UTC)
    assert (gap_end - timedelta(seconds=1)).astimezone(tz).time() < at  # a real gap
    starts = [s for s in _starts(day, tz, 6) if s <= gap_end]
    # Whenever the wait begins that night before the gap, it is due once: at its end.
    assert {next_time_of_day(s, at, tz) for s in starts} == {gap_end}
    assert gap_end.astimezone(tz).time() == after_gap
    # Once it fired, the next one is the next day's, at the wall time asked for.
    following = next_time_of_day(gap_end + timedelta(seconds=1), at, tz)
    assert following.astimezone(tz).date() == day + timedelta(days=1)
    assert following.astimezone(tz).time() == at


@pytest.mark.parametrize(("name", "day", "at"), [(t[0], t[4], t[5]) for t in TRANSITIONS],
                         ids=ZONE_NAMES)  # fmt: skip
def test_a_time_the_fall_back_repeats_fires_once_the_first_time(
    name: str, day: date, at: time
) -> None:
    tz = zone(name)
    starts = _starts(day, tz, 5)
    due_that_day = {
        due for due in (next_time_of_day(s, at, tz) for s in starts)
        if due.astimezone(tz).date() == day
    }  # fmt: skip
    assert len(due_that_day) == 1
    (first,) = due_that_day
    shift = _offset(first, tz) - _offset(first + timedelta(hours=3), tz)
    repeat = first + shift  # the same wall time once the clocks went back
    assert first.astimezone(tz).time() == at
    assert first.astimezone(tz).fold == 0  # the earlier of the two
    assert repeat.astimezone(tz).time() == at  # the clock shows it again later...
    assert repeat.astimezone(tz).fold == 1
    # ...but a wait begun after the first one is due the next day, not at the repeat.
    later = next_time_of_day(first + timedelta(minutes=1), at, tz)
    assert later.astimezone(tz).date() == day + timedelta(days=1)
    assert later > repeat


def _offset(instant: datetime, tz: tzinfo) -> timedelta:
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None
    return offset
