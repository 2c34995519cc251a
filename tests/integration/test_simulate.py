"""The simulator through the gateway: paths and messages in simulated time, nothing sent."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.helpers import eventually
from tests.scenarios import load
from tests.stack import Workspace, new_workspace

T0 = "2026-11-23T10:00:00+00:00"


async def simulate(workspace: Workspace, payload: dict[str, Any]) -> Any:
    async with workspace.client() as c:
        return await c.post("/v1/journeys/simulate", json=payload)


async def test_multichannel_cart_in_simulated_time(workspace: Workspace) -> None:
    journey = load("multichannel-cart")
    r = await simulate(workspace, {
        "journey": journey,
        "profiles": [{"profile_id": "opener", "attributes": {"email": "o@x.io"}},
                     {"profile_id": "ignorer", "attributes": {"email": "i@x.io", "phone": "+1"}},
                     {"profile_id": "buyer", "attributes": {"email": "b@x.io"}}],
        "events": [
            {"profile_id": p, "name": "cart_abandoned", "timestamp": T0}
            for p in ("opener", "ignorer", "buyer")
        ] + [
            {"profile_id": "opener", "name": "email_opened", "timestamp": "2026-11-23T12:00:00Z",
             "properties": {"step_id": "email-1"}},
            {"profile_id": "buyer", "name": "purchase_completed",
             "timestamp": "2026-11-23T11:00:00Z"},
        ],
    })  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    outcomes = {p["profile_id"]: p["outcome"] for p in body["profiles"]}
    assert outcomes == {"opener": "active", "ignorer": "active", "buyer": "goal"}
    sent = [(a["profile_id"], a["step_id"]) for a in body["activations"]]
    assert sorted(sent) == sorted([
        ("opener", "email-1"), ("ignorer", "email-1"), ("buyer", "email-1"),
        ("ignorer", "sms-1"), ("ignorer", "push-1"),
    ])  # fmt: skip
    push = next(a for a in body["activations"] if a["step_id"] == "push-1")
    assert push["at"].startswith("2026-11-25T10:00:00")  # a day's timeout, then a day's wait
    ignorer = next(p for p in body["profiles"] if p["profile_id"] == "ignorer")
    taken = [e["detail"] for e in ignorer["path"] if e["kind"] == "branch_taken"]
    assert taken == [{"path": "no"}]
    assert ignorer["path"][0]["kind"] == "entered"
    assert ignorer["path"][0]["cause"]["event_id"]


async def test_a_bad_journey_is_refused_with_paths(workspace: Workspace) -> None:
    r = await simulate(workspace, {"journey": {"name": "x", "stages": []}, "events": []})
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"].startswith("journey.stages")


# --- limits -------------------------------------------------------------------------------


def welcome(wait: str = "PT1H") -> dict[str, Any]:
    return {
        "name": "Welcome",
        "reentry": {"mode": "always"},
        "stages": [{
            "name": "Signed up",
            "entry": {"event": "signup"},
            "steps": [
                {"id": "wait", "type": "wait", "duration": wait},
                {"id": "hello", "type": "activation", "channel": "sms", "connector_id": "c",
                 "template_id": "t", "to_attribute": "phone"},
            ],
        }],
    }  # fmt: skip


def signups(n: int, profiles: int, start: datetime) -> list[dict[str, Any]]:
    return [
        {"profile_id": f"p{i % profiles}", "name": "signup", "traits": {"phone": "+1555"},
         "timestamp": (start + timedelta(minutes=i)).isoformat()}
        for i in range(n)
    ]  # fmt: skip


START = datetime(2026, 11, 23, 10, tzinfo=UTC)


def carts(n: int) -> list[dict[str, Any]]:
    return [
        {"profile_id": f"p{i}", "name": "cart_abandoned", "traits": {"email": "x@y.io"},
         "timestamp": (START + timedelta(seconds=i)).isoformat()}
        for i in range(n)
    ]  # fmt: skip


async def test_a_simulation_over_a_limit_is_a_422_naming_it(workspace: Workspace) -> None:
    cart = load("multichannel-cart")  # 5 steps
    cases = [
        # 4,001 events through 5 steps: more event-steps than one simulation runs.
        (cart, carts(4_001), "simulation limit"),
        # Within the event-steps, but every event answers several entries and messages.
        (cart, carts(3_900), "answer limit"),
        # A wait that runs past the year 9999 (it answered 500 before).
        (welcome("P365D"), signups(3, 1, datetime(9999, 6, 1, tzinfo=UTC)), "years 1 to 9999"),
    ]
    for journey, events, limit in cases:
        r = await simulate(workspace, {"journey": journey, "events": events})
        assert r.status_code == 422, (limit, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json")
        (error,) = r.json()["errors"]
        assert error["path"] == "events"
        assert limit in error["message"], error


async def running_simulations(workspace: Workspace) -> float:
    async with httpx.AsyncClient() as scrape:
        text = (await scrape.get(f"{workspace.stack.service_urls['runtime']}/metrics")).text
    found = re.search(r"^waypost_runtime_simulations_running (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_the_runtime_answers_other_requests_while_a_large_simulation_runs(
    workspace: Workspace,
) -> None:
    """The largest simulation the limits allow runs in a worker: a read of another tenant
    through the gateway is answered while it is still under way."""
    other = await new_workspace(workspace.stack)
    # 1,300 carts of profiles with every address: 15 entries each, near the answer limit.
    events = carts(1_300)
    profiles = [{"profile_id": f"p{i}", "attributes": {"email": "x@y.io", "phone": "+1"}}
                for i in range(1_300)]  # fmt: skip
    big = asyncio.create_task(
        simulate(
            workspace,
            {"journey": load("multichannel-cart"), "events": events, "profiles": profiles},
        )
    )

    async def under_way() -> bool:
        return await running_simulations(workspace) >= 1

    await eventually(under_way, "the simulation to be running")
    async with other.client() as c:
        read = await c.get("/v1/profiles/nobody")
    assert read.status_code == 404
    # The read was answered while the simulation was still under way (on the runtime's loop
    # it would have waited for the whole simulation, and this would see it finished).
    assert await running_simulations(workspace) >= 1
    assert not big.done()
    answer = await big
    assert answer.status_code == 200, answer.text[:300]
    body = answer.json()
    assert len(body["profiles"]) == 1_300
    assert len(body["activations"]) >= 1_300
