"""The activator's delivery rules as pure functions: consent, recipient, caps, quiet hours,
the spread after quiet hours, and retry backoff."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.activator import policy
from services.activator.models import SkipReason
from services.activator.schemas import ActivationRequested, QuietHours, WorkspaceRules

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday; 21:00 in Tokyo
TOKYO = ZoneInfo("Asia/Tokyo")
NIGHT = QuietHours(start="21:00", end="08:00")


def request(**changes: Any) -> ActivationRequested:
    values: dict[str, Any] = {
        "activation_id": "act_1",
        "workspace_id": "ws1",
        "profile_id": "ada",
        "journey_id": "j1",
        "version": 1,
        "step_id": "a1",
        "channel": "email",
        "connector_id": "c1",
        "template_id": "t1",
        "to": "ada@example.org",
        "consent": {},
        "context": {"profile": {}},
        "requested_at": NOW.isoformat(),
    }
    return ActivationRequested.model_validate({**values, **changes})


def rules(**changes: Any) -> WorkspaceRules:
    return WorkspaceRules.model_validate(changes)


# --- consent and recipient --------------------------------------------------------------


@pytest.mark.parametrize(
    ("consent", "mode", "allowed"),
    [({}, "opt_out", True), ({}, "opt_in", False), ({"email": True}, "opt_in", True),
     ({"email": False}, "opt_out", False), ({"sms": True}, "opt_in", False),
     ({"email": "yes"}, "opt_out", False)],
)  # fmt: skip
def test_consent_is_missing_means_allowed_unless_opt_in(
    consent: dict[str, Any], mode: str, allowed: bool
) -> None:
    assert policy.consented(consent, "email", rules(consent_mode=mode)) is allowed


@pytest.mark.parametrize(
    ("to", "expected"),
    [("ada@example.org", "ada@example.org"), (" +15550100 ", "+15550100"), (15550100, "15550100"),
     (None, None), ("", None), ("   ", None), (True, None), ({"a": 1}, None), ("x" * 1001, None)],
)  # fmt: skip
def test_recipient_is_a_non_empty_string_or_number(to: Any, expected: str | None) -> None:
    assert policy.recipient(to) == expected


def test_refusal_names_consent_before_recipient() -> None:
    assert policy.refusal(request(consent={"email": False}, to=None), rules()) is (
        SkipReason.NO_CONSENT
    )
    assert policy.refusal(request(to=None), rules()) is SkipReason.NO_RECIPIENT
    assert policy.refusal(request(), rules()) is None


def test_a_webhook_without_recipient_is_addressed_to_its_profile() -> None:
    hook = request(channel="webhook", to=None)
    assert policy.refusal(hook, rules()) is None
    assert policy.recipient_for(hook) == "ada"


# --- frequency caps ---------------------------------------------------------------------


def test_caps_count_what_was_used_and_each_admitted_request() -> None:
    daily = rules(frequency_caps=[{"channel": "email", "max": 2, "per": "P1D"}])
    key = policy.CapKey("ada", "email", timedelta(days=1))
    batch = [request(activation_id=f"a{i}") for i in range(4)]
    assert policy.over_caps(batch, daily, {}) == {"a2", "a3"}
    assert policy.over_caps(batch, daily, {key: 1}) == {"a1", "a2", "a3"}
    others = [request(activation_id="b", profile_id="bob"), request(activation_id="s",
              channel="sms")]  # fmt: skip
    assert policy.over_caps(others, daily, {key: 5}) == set()


def test_every_cap_of_a_channel_must_have_room() -> None:
    two = rules(frequency_caps=[{"channel": "sms", "max": 5, "per": "P1D"},
                                {"channel": "sms", "max": 1, "per": "PT1H"}])  # fmt: skip
    batch = [request(activation_id=f"a{i}", channel="sms") for i in range(2)]
    assert policy.over_caps(batch, two, {}) == {"a1"}
    assert policy.cap_keys(batch, two) == {
        policy.CapKey("ada", "sms", timedelta(days=1)),
        policy.CapKey("ada", "sms", timedelta(hours=1)),
    }


# --- quiet hours ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "start", "end", "inside"),
    [(time(22), time(21), time(8), True), (time(7, 59), time(21), time(8), True),
     (time(8), time(21), time(8), False), (time(12), time(21), time(8), False),
     (time(13), time(12), time(14), True), (time(14), time(12), time(14), False),
     (time(3), time(3), time(3), False)],
)  # fmt: skip
def test_quiet_hours_may_span_midnight(local: time, start: time, end: time, inside: bool) -> None:
    assert policy.in_quiet_hours(local, start, end) is inside


def test_a_message_inside_quiet_hours_waits_for_the_window_in_the_profiles_zone() -> None:
    opening = policy.window_opening(NOW, NIGHT, TOKYO)
    assert opening == datetime(2026, 3, 3, 8, 0, tzinfo=TOKYO)
    assert policy.window_opening(NOW, NIGHT, ZoneInfo("Europe/Paris")) is None  # 13:00 there
    assert policy.window_opening(NOW, None, TOKYO) is None


def test_release_is_the_opening_plus_a_fixed_spread() -> None:
    released = policy.release_at(NOW, NIGHT, TOKYO, "act_1", 600)
    opening = datetime(2026, 3, 3, 8, 0, tzinfo=TOKYO)
    assert opening <= released < opening + timedelta(minutes=10)
    assert released == policy.release_at(NOW, NIGHT, TOKYO, "act_1", 600)  # every replica
    assert policy.release_at(NOW, NIGHT, TOKYO, "act_1", 0) == opening
    assert policy.release_at(NOW, NIGHT, UTC, "act_1", 600) == NOW  # noon in UTC


def test_the_spread_smooths_a_wave_over_the_whole_period() -> None:
    offsets = [policy.spread_offset(f"act_{i}", 600).total_seconds() for i in range(1000)]
    assert all(0 <= o < 600 for o in offsets)
    per_minute = [sum(1 for o in offsets if m * 60 <= o < (m + 1) * 60) for m in range(10)]
    assert min(per_minute) > 60  # about 100 each: no minute takes the burst


def test_quiet_hours_across_a_daylight_saving_change() -> None:
    new_york = ZoneInfo("America/New_York")
    # 2026-03-08: clocks jump from 02:00 to 03:00; the window 01:00-02:30 ends at 03:00.
    late = datetime(2026, 3, 8, 1, 30, tzinfo=new_york)
    opening = policy.window_opening(late, QuietHours(start="01:00", end="02:30"), new_york)
    assert opening == datetime(2026, 3, 8, 3, 0, tzinfo=new_york)


def test_the_profile_zone_falls_back_to_the_workspace_then_utc() -> None:
    paris = rules(default_timezone="Europe/Paris")
    assert policy.profile_zone({"profile": {"timezone": "Asia/Tokyo"}}, paris) == TOKYO
    assert policy.profile_zone({"profile": {}}, paris) == ZoneInfo("Europe/Paris")
    unknown = {"profile": {"timezone": "Mars/Olympus"}}
    assert policy.profile_zone(unknown, paris) == ZoneInfo("Europe/Paris")
    assert policy.profile_zone(unknown, rules(default_timezone="Nowhere/Else")) == UTC
    assert NOW.astimezone(policy.profile_zone({}, rules())).utcoffset() == timedelta(0)


ZONES = ["Asia/Tokyo", "America/New_York", "Europe/London", "Australia/Lord_Howe"]


@given(
    st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(ZONES),
)
def test_a_release_is_never_inside_quiet_hours(now: datetime, zone_name: str) -> None:
    tz = ZoneInfo(zone_name)
    released = policy.release_at(now, NIGHT, tz, "act_1", 0)
    assert released >= now
    assert not policy.in_quiet_hours(released.astimezone(tz).time(), time(21), time(8))


# --- backoff ----------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    waits = [policy.backoff(n, 10, 300, 0.0).total_seconds() for n in range(1, 8)]
    assert waits == [5, 10, 20, 40, 80, 150, 150]
    assert policy.backoff(2, 10, 300, 0.999).total_seconds() == pytest.approx(19.99)


def test_backoff_honours_retry_after_within_the_cap() -> None:
    assert policy.backoff(1, 10, 300, 0.0, retry_after_s=120).total_seconds() == 120
    assert policy.backoff(1, 10, 300, 0.0, retry_after_s=1).total_seconds() == 5
    assert policy.backoff(1, 10, 300, 0.0, retry_after_s=86_400).total_seconds() == 300
