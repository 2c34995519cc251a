from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.durations import Duration, describe, format_duration, parse_duration, to_timedelta


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT3H", timedelta(hours=3)),
        ("P1D", timedelta(days=1)),
        ("PT0S", timedelta(0)),
        ("P0D", timedelta(0)),
        ("P2DT3H30M", timedelta(days=2, hours=3, minutes=30)),
        ("PT1.5S", timedelta(seconds=1.5)),
        ("PT1,5S", timedelta(seconds=1.5)),
        ("PT0.000001S", timedelta(microseconds=1)),
        ("P1W", timedelta(weeks=1)),
        ("P1W2D", timedelta(days=9)),
        ("PT1M", timedelta(minutes=1)),
        ("PT36H", timedelta(hours=36)),
        ("P1.5D", timedelta(days=1, hours=12)),
        ("P24D", timedelta(days=24)),
        ("P1DT1S", timedelta(days=1, seconds=1)),
    ],
)
def test_parse_a_valid_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert to_timedelta(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("P1Y", "years and months have no fixed length"),
        ("P2M", "years and months have no fixed length"),
        ("P1Y2M3DT4H", "years and months have no fixed length"),
        ("-PT1H", "cannot be negative"),
        ("3H", "must start with 'P'"),
        ("", "must start with 'P'"),
        ("pt3h", "must start with 'P'"),
        ("P", "names no amount of time"),
        ("PT", "names no amount of time"),
        ("P1DT", "'T' must be followed by hours, minutes or seconds"),
        ("PT1.5H30M", "only the last component may have a fraction"),
        ("PT3H4H", "is not an ISO 8601 duration"),
        ("P1H", "is not an ISO 8601 duration"),
        ("PT1H ", "is not an ISO 8601 duration"),
        ("P\u0661D", "is not an ISO 8601 duration"),  # an Arabic-Indic digit one
        ("P99999999999D", "too long"),
    ],
)
def test_refuse_an_invalid_duration_with_the_reason(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "PT0S"),
        (timedelta(hours=3), "PT3H"),
        (timedelta(days=1), "P1D"),
        (timedelta(weeks=1), "P7D"),
        (timedelta(days=2, hours=3, minutes=30), "P2DT3H30M"),
        (timedelta(seconds=1.5), "PT1.5S"),
        (timedelta(microseconds=1), "PT0.000001S"),
        (timedelta(days=1, seconds=1), "P1DT1S"),
        (-timedelta(hours=1), "-PT1H"),
    ],
)
def test_format_a_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=100_000)))
def test_format_then_parse_gives_the_same_timedelta(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(
    ("value", "reading"),
    [
        (timedelta(0), "0 seconds"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(days=24), "24 days"),
        (timedelta(days=1, hours=2, seconds=1), "1 day 2 hours 1 second"),
        (timedelta(seconds=1.5), "1.5 seconds"),
    ],
)
def test_describe_a_duration_for_messages(value: timedelta, reading: str) -> None:
    assert describe(value) == reading


class _Timer(BaseModel):
    after: Duration
    every: Duration = "PT0S"


def test_duration_field_keeps_the_string_as_written() -> None:
    timer = _Timer.model_validate({"after": "P1W"})
    assert timer.after == "P1W"
    assert timer.model_dump(mode="json") == {"after": "P1W", "every": "PT0S"}
    assert to_timedelta(timer.after) == timedelta(days=7)


def test_bad_duration_field_is_an_error_at_its_field() -> None:
    with pytest.raises(ValidationError) as info:
        _Timer.model_validate({"after": "P1M", "every": 5})
    errors = {e["loc"]: e for e in info.value.errors()}
    assert set(errors) == {("after",), ("every",)}
    assert "years and months have no fixed length" in errors[("after",)]["msg"]
    assert errors[("every",)]["type"] == "string_type"


def test_duration_json_schema_names_the_format() -> None:
    schema = _Timer.model_json_schema()["properties"]["after"]
    assert schema["type"] == "string"
    assert schema["format"] == "duration"
