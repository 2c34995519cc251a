"""The limits that keep one message from stopping a queue: the window of event times, the
profile cap, and the size NATS counts against its ``max_payload``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, cast

import pytest
from nats.js import JetStreamContext

from gateway.ingest import Limits, check_event, check_profile
from services.runtime.needs import profile_fields, trimmed
from services.runtime.processor import Processor
from services.runtime.store import ProfileRecord
from shared import bus
from shared.event_schema import EARLIEST, LATEST, declaration, parse, time_problem, violations
from shared.events import AcceptedEvent
from shared.problems import ProblemError

# Times


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # year 0 in UTC
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),  # year 10000
        datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
    ],
)
def test_times_outside_the_window_have_a_problem(value: datetime) -> None:
    assert time_problem(value) is not None


@pytest.mark.parametrize("value", [EARLIEST, LATEST, datetime(2026, 3, 1, tzinfo=UTC)])
def test_times_inside_the_window_have_none(value: datetime) -> None:
    assert time_problem(value) is None


def test_an_event_time_out_of_range_is_a_problem_at_its_path() -> None:
    raw = {"profile_id": "p", "name": "x", "timestamp": "0001-01-01T00:00:00+01:00"}
    event, errors = check_event(raw, ("events", 2))
    assert event is None
    assert [e.path for e in errors] == ["events[2].timestamp"]
    assert "1970" in errors[0].message


def test_a_trigger_date_time_property_out_of_range_is_a_violation() -> None:
    schema, _ = parse(declaration({"at": {"type": "string", "format": "date-time"}}))
    assert schema is not None
    assert violations(schema, {"at": "0001-01-01T00:00:00+01:00"}, "properties", 5)
    assert not violations(schema, {"at": "2026-01-01T00:00:00+01:00"}, "properties", 5)


# The profile cap at the gateway


def test_traits_and_attributes_over_the_cap_name_it() -> None:
    limits = Limits(event_bytes=64 * 1024, profile_bytes=1024)
    big = {"bio": "x" * 1024}
    event, errors = check_event({"profile_id": "p", "name": "x", "traits": big}, (), limits)
    assert event is None
    assert [(e.path, "1024" in e.message) for e in errors] == [("traits", True)]
    with pytest.raises(ProblemError) as raised:
        check_profile({"attributes": big}, limits)
    assert [(e.path, "1024" in e.message) for e in raised.value.errors] == [("attributes", True)]
    assert check_profile({"attributes": {"bio": "x" * 900}}, limits).attributes


# The merged profile in the runtime


def _update(traits: dict[str, Any], kind: str = "profile") -> AcceptedEvent:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return AcceptedEvent(
        workspace_id="w", event_id="e", profile_id="p", name="profile_updated", timestamp=now,
        accepted_at=now, properties={"consent": {"email": False}}, traits=traits, kind=kind,
    )  # fmt: skip


def _processor(cap: int) -> Processor:
    return Processor(cast(Any, None), cast(Any, None), None, cast(Any, None), None, cap)


def test_a_merge_over_the_cap_changes_nothing_and_says_why() -> None:
    row = ProfileRecord("p", {"a": "x" * 600}, {})
    why = _processor(1024)._merge(row, _update({"b": "x" * 600}))
    assert why is not None
    assert "1024" in why
    assert (row.attributes, row.consent, row.changed) == ({"a": "x" * 600}, {}, False)


def test_a_merge_within_the_cap_applies_traits_and_consent() -> None:
    row = ProfileRecord("p", {"a": 1}, {})
    assert _processor(1024)._merge(row, _update({"b": 2})) is None
    assert (row.attributes, row.consent, row.changed) == ({"a": 1, "b": 2}, {"email": False}, True)


def test_a_profile_over_the_cap_from_before_may_shrink_but_not_grow() -> None:
    row = ProfileRecord("p", {"a": "x" * 2000}, {})
    assert _processor(1024)._merge(row, _update({"a": "short"}, kind="event")) is None
    row = ProfileRecord("p", {"a": "x" * 2000}, {})
    assert _processor(1024)._merge(row, _update({"b": "more"}, kind="event")) is not None


# Sizes NATS counts


def _js(max_payload: int) -> JetStreamContext:
    return cast(JetStreamContext, SimpleNamespace(_nc=SimpleNamespace(max_payload=max_payload)))


def test_the_header_block_is_counted_as_the_client_writes_it() -> None:
    headers = {"Nats-Msg-Id": "m-1", "X-Trace-ID": "t"}
    written = b"NATS/1.0\r\nNats-Msg-Id: m-1\r\nX-Trace-ID: t\r\n\r\n"
    assert bus.header_bytes(headers) == len(written)
    assert bus.header_bytes({}) == 0


def test_a_message_over_max_payload_is_too_large_and_poison() -> None:
    js = _js(100)
    headers = {"Nats-Msg-Id": "m"}
    room = 100 - bus.header_bytes(headers)
    bus.check_size(js, "s", b"x" * room, headers)
    with pytest.raises(bus.TooLarge) as raised:
        bus.check_size(js, "s", b"x" * (room + 1), headers)
    assert isinstance(raised.value, bus.Poison)


def test_a_dead_letter_copy_drops_a_body_that_no_longer_fits() -> None:
    js = _js(4096)
    headers = {bus.DEAD_REASON: "why"}
    assert bus.fitting_copy(js, b"small", headers) == (b"small", headers)
    data, kept = bus.fitting_copy(js, b"x" * 4000, headers)
    assert data == b""
    assert kept == {**headers, bus.DEAD_DROPPED: "4000"}


# What an activation carries of the profile


@pytest.mark.parametrize(
    ("sources", "fields"),
    [
        (["Hi {{ profile.first_name }}", "{{ profile['plan'] }}"], {"first_name", "plan"}),
        (["{% if profile.age > 18 %}{{ profile.address.city }}{% endif %}"], {"age", "address"}),
        (["{{ event.properties.total }}", None, ""], set()),
    ],
)
def test_the_attributes_a_template_reads_are_found(
    sources: list[str | None], fields: set[str]
) -> None:
    assert profile_fields(sources) == fields


@pytest.mark.parametrize(
    "source",
    [
        "{{ profile }}",
        "{{ profile | tojson }}",
        "{{ profile.get('x') }}",
        "{% for k, v in profile.items() %}{{ k }}{% endfor %}",
        "{{ profile[key] }}",
        "{% set profile = event %}{{ profile.x }}",
        "{% for profile in people %}{{ profile.x }}{% endfor %}",
        "{% macro m(profile) %}{{ profile.x }}{% endmacro %}",
        "{{ profile.first_name",  # a syntax error: it fails at rendering anyway
    ],
)
def test_a_template_that_may_read_any_attribute_gets_the_whole_profile(source: str) -> None:
    assert profile_fields([source]) is None


def test_the_profile_is_trimmed_to_what_is_read_and_the_timezone() -> None:
    profile = {"first_name": "Ada", "notes": "x" * 1000, "timezone": "Europe/Paris"}
    assert trimmed(profile, frozenset({"first_name", "missing"})) == {
        "first_name": "Ada",
        "timezone": "Europe/Paris",
    }
    assert trimmed(profile, None) == profile
