"""Per-connector send rate limits (wall clock) and the feedback events of a delivery."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.activator.feedback import MESSAGE_FAILED, MESSAGE_SENT, feedback
from services.activator.models import Delivery
from services.activator.ratelimit import LocalTurns, RateLimiter, grant
from shared.events import AcceptedEvent, msg_id_for, subject_for

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


C1 = ("ws", "c1")


def limiter_at(clock: FakeTime) -> RateLimiter:
    return RateLimiter(1.0, LocalTurns(clock), now=clock)


async def test_a_wave_is_spaced_at_the_rate_not_sent_as_a_burst() -> None:
    limiter = limiter_at(FakeTime())
    waits = await limiter.turns(C1, 10.0, 5)
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])  # the first goes at once


async def test_the_next_group_takes_the_turns_after_the_last_one() -> None:
    clock = FakeTime()
    limiter = limiter_at(clock)
    assert await limiter.turns(C1, 10.0, 3) == pytest.approx([0.0, 0.1, 0.2])
    clock.now += 0.05
    assert await limiter.turns(C1, 10.0, 2) == pytest.approx([0.25, 0.35])


async def test_turns_accrue_while_idle_but_never_more_than_one() -> None:
    clock = FakeTime()
    limiter = limiter_at(clock)
    await limiter.turns(C1, 2.0, 1)
    clock.now += 60
    assert await limiter.turns(C1, 2.0, 2) == pytest.approx([0.0, 0.5])


async def test_turns_beyond_the_bound_are_refused_and_the_connector_is_busy() -> None:
    clock = FakeTime()
    limiter = limiter_at(clock)
    waits = await limiter.turns(C1, 2.0, 5)
    assert waits == pytest.approx([0.0, 0.5, 1.0])  # 1.5 s is further than the bound
    assert limiter.busy() == {C1: pytest.approx(0.5)}  # until 1.5 s is within it
    clock.now += 0.5
    assert limiter.busy() == {}
    assert await limiter.turns(C1, 2.0, 1) == pytest.approx([1.0])


async def test_replicas_sharing_one_schedule_keep_to_the_rate_together() -> None:
    clock = FakeTime()
    shared = LocalTurns(clock)
    one, two = RateLimiter(1.0, shared, now=clock), RateLimiter(1.0, shared, now=clock)
    first = await one.turns(C1, 4.0, 3)
    second = await two.turns(C1, 4.0, 3)
    assert sorted([*first, *second]) == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert len(second) == 2


def test_the_rule_grants_nothing_when_the_next_turn_is_beyond_the_bound() -> None:
    given = grant(next_at=12.0, now=10.0, rate=1.0, wanted=3, max_wait=1.0)
    assert (given.granted, given.first_in, given.next_in) == (0, 2.0, 2.0)


async def test_connectors_are_limited_apart_and_unlimited_ones_not_at_all() -> None:
    limiter = limiter_at(FakeTime())
    assert await limiter.turns(("ws", "a"), 1.0, 1) == [0.0]
    assert await limiter.turns(("ws", "b"), 1.0, 1) == [0.0]
    assert await limiter.turns(("ws", "c"), None, 100) == [0.0] * 100


def delivery() -> Delivery:
    return Delivery(
        activation_id="act_9", workspace_id="ws1", profile_id="ada", journey_id="j1", version=2,
        step_id="a1", channel="email",
    )  # fmt: skip


def test_message_sent_is_an_accepted_event_on_the_profiles_subject() -> None:
    item = feedback(delivery(), MESSAGE_SENT, NOW, 16)
    event = AcceptedEvent.model_validate(item.payload)
    assert item.subject == subject_for("ws1", "ada", 16)
    assert item.msg_id == msg_id_for("ws1", "act_9:sent")
    assert (event.name, event.event_id, event.kind) == ("message_sent", "act_9:sent", "event")
    assert event.timestamp == event.accepted_at == NOW
    assert event.properties == {"journey_id": "j1", "step_id": "a1", "activation_id": "act_9",
                                "channel": "email"}  # fmt: skip


def test_message_failed_carries_the_reason() -> None:
    item = feedback(delivery(), MESSAGE_FAILED, NOW, 16, "HTTP 400 from provider")
    event = AcceptedEvent.model_validate(item.payload)
    assert event.event_id == "act_9:failed"
    assert event.properties["reason"] == "HTTP 400 from provider"
