"""The simulator through the gateway: paths and messages in simulated time, nothing sent."""

from __future__ import annotations

from typing import Any

from tests.scenarios import load
from tests.stack import Workspace

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
