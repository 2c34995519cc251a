"""Wall-clock maths: the next local time of day, as a person reads the clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

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
