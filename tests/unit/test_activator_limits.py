"""Per-connector send rate limits (wall clock) and the feedback events of a delivery."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.activator.feedback import MESSAGE_FAILED, MESSAGE_SENT, feedback
from services.activator.models import Delivery
from services.activator.ratelimit import RateLimiter
from shared.events import AcceptedEvent, msg_id_for, subject_for

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


C1 = ("ws", "c1")


async def test_a_wave_is_spaced_at_the_rate_not_sent_as_a_burst() -> None:
    clock = FakeTime()
    limiter = RateLimiter(1.0, now=clock, sleep=clock.sleep)
    assert [await limiter.acquire(C1, 10.0) for _ in range(5)] == [True] * 5
    assert clock.slept == pytest.approx([0.1, 0.2, 0.3, 0.4])  # the first goes at once


async def test_tokens_accrue_while_idle_but_never_beyond_one() -> None:
    clock = FakeTime()
    limiter = RateLimiter(1.0, now=clock, sleep=clock.sleep)
    await limiter.acquire(C1, 2.0)
    clock.now += 60
    await limiter.acquire(C1, 2.0)
    await limiter.acquire(C1, 2.0)
    assert clock.slept == pytest.approx([0.5])


async def test_a_turn_beyond_the_bound_is_refused_and_the_connector_is_busy() -> None:
    clock = FakeTime()
    limiter = RateLimiter(1.0, now=clock, sleep=clock.sleep)
    taken = [await limiter.acquire(C1, 2.0) for _ in range(5)]
    assert taken == [True, True, True, False, False]  # at 0, 0.5 and 1.0 s; 1.5 s is too far
    assert limiter.busy() == {C1: pytest.approx(1.0)}
    clock.now += 1.0
    assert limiter.busy() == {}
    assert await limiter.acquire(C1, 2.0)  # its turn is within the bound again


async def test_connectors_are_limited_apart_and_unlimited_ones_not_at_all() -> None:
    clock = FakeTime()
    limiter = RateLimiter(1.0, now=clock, sleep=clock.sleep)
    await limiter.acquire(("ws", "a"), 1.0)
    await limiter.acquire(("ws", "b"), 1.0)
    for _ in range(100):
        assert await limiter.acquire(("ws", "c"), None)
    assert clock.slept == []


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
