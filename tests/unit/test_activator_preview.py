"""The activator's decisions on a simulation's messages, each at its simulated time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.activator.preview import decide
from services.activator.schemas import ActivationRequested, FrequencyCap, QuietHours, WorkspaceRules

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def ask(n: int, at: datetime, *, profile: str = "ada", **changes: Any) -> ActivationRequested:
    fields: dict[str, Any] = {
        "activation_id": f"a{n}", "workspace_id": "ws", "profile_id": profile,
        "journey_id": "simulated", "version": 1, "step_id": f"s{n}", "channel": "sms",
        "connector_id": "c", "template_id": "t", "to": "+15550100", "requested_at": at,
    }  # fmt: skip
    return ActivationRequested.model_validate(fields | changes)


def test_consent_consent_mode_and_recipient_skip_with_their_reasons() -> None:
    asks = [
        ask(1, T0, consent={"sms": False}),
        ask(2, T0, to=None),
        ask(3, T0, consent={"sms": True}),
        ask(4, T0, profile="bob"),
    ]
    opt_out = decide(asks, WorkspaceRules(), 0)
    assert [opt_out[a.activation_id].reason for a in asks] == [
        "no_consent", "no_recipient", None, None,
    ]  # fmt: skip
    opt_in = decide(asks, WorkspaceRules(consent_mode="opt_in"), 0)
    assert [opt_in[a.activation_id].reason for a in asks] == [
        "no_consent", "no_consent", None, "no_consent",
    ]  # fmt: skip


def test_caps_count_the_simulation_s_own_messages_within_their_period() -> None:
    rules = WorkspaceRules(
        frequency_caps=[FrequencyCap(channel="sms", max=1, per=timedelta(days=1))]
    )
    asks = [
        ask(1, T0),
        ask(2, T0 + timedelta(hours=1)),  # within a day of the first: capped
        ask(3, T0 + timedelta(hours=2), consent={"sms": False}),  # skipped: uses no place
        ask(4, T0 + timedelta(days=1, hours=1)),  # the first is a day old: goes
        ask(5, T0 + timedelta(hours=3), profile="bob"),  # another profile's budget
    ]
    decided = decide(asks, rules, 0)
    assert [decided[a.activation_id].reason for a in asks] == [
        None, "frequency_cap", "no_consent", None, None,
    ]  # fmt: skip


def test_quiet_hours_hold_until_the_window_opens_in_the_profile_s_zone() -> None:
    rules = WorkspaceRules(quiet_hours=QuietHours(start="22:00", end="08:00"))
    night = ask(1, T0, context={"profile": {"timezone": "Asia/Tokyo"}})
    late = ask(2, T0 + timedelta(hours=2), context={"profile": {"timezone": "Asia/Tokyo"}})
    day = ask(3, T0)  # noon in UTC
    decided = decide([night, late, day], rules, 0)
    assert decided["a1"].held_until is None  # 21:00 in Tokyo
    assert decided["a2"].held_until == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # 08:00 there
    assert decided["a3"] == decided["a1"]
