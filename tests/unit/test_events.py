"""The event envelope on EVENTS and where each profile's events go."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.events import (
    AcceptedEvent,
    msg_id_for,
    partition_of,
    subject_for,
    workspace_subjects,
)

NOW = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
ENVELOPE: dict[str, Any] = {
    "workspace_id": "0f3c9a",
    "event_id": "e-1",
    "profile_id": "alice",
    "name": "cart_add",
    "timestamp": NOW,
    "accepted_at": NOW,
    "properties": {"cart": {"total": 60}},
    "traits": {"plan": "pro"},
    "kind": "event",
}


@pytest.mark.parametrize(
    ("profile_id", "partitions", "expected"),
    [("profile-42", 16, 14), ("alice", 16, 7), ("alice", 1000, 735), ("", 16, 0)],
)
def test_a_profile_always_lands_in_the_same_partition(
    profile_id: str, partitions: int, expected: int
) -> None:
    assert partition_of(profile_id, partitions) == expected


def test_partitions_are_the_same_in_another_process() -> None:
    """Python salts str hashes per process; the partition must not depend on that."""
    code = "from shared.events import partition_of; print(partition_of('bob@example.com', 16))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert int(other) == partition_of("bob@example.com", 16)


@given(st.text(max_size=200), st.integers(min_value=1, max_value=4096))
def test_a_partition_is_in_range(profile_id: str, partitions: int) -> None:
    assert 0 <= partition_of(profile_id, partitions) < partitions


@given(st.lists(st.text(min_size=1, max_size=20), min_size=200, max_size=200, unique=True))
def test_profiles_spread_over_partitions(profile_ids: list[str]) -> None:
    used = {partition_of(p, 16) for p in profile_ids}
    assert len(used) >= 8


@pytest.mark.parametrize("partitions", [0, -1])
def test_there_is_at_least_one_partition(partitions: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        partition_of("alice", partitions)


def test_subject_and_message_id() -> None:
    assert subject_for("w1", "alice", 16) == "events.w1.7"
    assert msg_id_for("w1", "e-1") == "w1:e-1"
    assert workspace_subjects("w1") == "events.w1.*"
    event = AcceptedEvent.model_validate(ENVELOPE)
    assert event.subject(16) == "events.0f3c9a.7"
    assert event.msg_id == "0f3c9a:e-1"


def test_the_envelope_survives_json() -> None:
    event = AcceptedEvent.model_validate(ENVELOPE)
    again = AcceptedEvent.model_validate_json(event.model_dump_json())
    assert again == event
    assert again.timestamp == NOW


def test_the_envelope_defaults_to_an_event_without_properties() -> None:
    event = AcceptedEvent.model_validate(
        {k: v for k, v in ENVELOPE.items() if k not in ("properties", "traits", "kind")}
    )
    assert (event.kind, event.properties, event.traits) == ("event", {}, {})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timestamp": "2026-01-31T09:00:00"}, "timestamp"),
        ({"accepted_at": datetime(2026, 1, 31)}, "accepted_at"),
        ({"kind": "command"}, "kind"),
        ({"workspace_id": "a.b"}, "workspace_id"),
        ({"workspace_id": "a*"}, "workspace_id"),
        ({"profile_id": ""}, "profile_id"),
        ({"name": "x" * 201}, "name"),
        ({"properties": [1]}, "properties"),
        ({"extra": 1}, "extra"),
    ],
)
def test_the_envelope_refuses_what_cannot_travel(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AcceptedEvent.model_validate(ENVELOPE | change)
    assert [e["loc"][0] for e in caught.value.errors()] == [field]
