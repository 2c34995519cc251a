"""Experiments end to end through the gateway on the virtual clock: profiles are assigned,
conversions are posted for one path far more often, the decision appears once and stays
(a runtime restart and a repeated event included), later entrants all take the winner; a
stopped journey or a passed max_duration leaves it inconclusive; bad experiments are 422."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from shared.settings import ClockMode
from tests.conftest import Servers, started_servers
from tests.helpers import eventually
from tests.stack import Stack, new_workspace, running_stack

T0 = "2026-11-23T10:00:00+00:00"


@pytest.fixture(scope="module")
def own_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with started_servers(tmp_path_factory.mktemp("experiments")) as own:
        yield own


@pytest.fixture(scope="module")
async def virtual(own_servers: Servers) -> AsyncIterator[Stack]:
    """A virtual-clock stack on servers of its own: its runtime owns every partition, so
    conversions are counted on its clock (the session's real-clock runtime would otherwise
    take a share of the partitions and count them on the real one)."""
    async with running_stack(own_servers, clock=ClockMode.VIRTUAL) as stack:
        yield stack


def experiment_journey(**experiment: Any) -> dict[str, Any]:
    """Path A (the control) waits on ``wa``, path B on ``wb``: where a profile is says which
    path it took."""
    return {
        "name": f"Experiment {uuid.uuid4().hex[:6]}",
        "stages": [{
            "name": "Trial",
            "entry": {"event": "signup"},
            "steps": [{
                "id": "x1", "type": "split", "mode": "experiment",
                "paths": [
                    {"name": "A", "percent": 50, "control": True,
                     "steps": [{"id": "wa", "type": "wait", "duration": "P30D"}]},
                    {"name": "B", "percent": 50,
                     "steps": [{"id": "wb", "type": "wait", "duration": "P30D"}]},
                ],
                "experiment": {"metric": {"event": "purchase"}, "window": "PT1H",
                               "min_per_path": 40, "confidence": 0.95,
                               "on_winner": "send_all", **experiment},
            }],
        }],
    }  # fmt: skip


async def publish(c: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await c.post("/v1/journeys", json=body)
    assert r.status_code == 201, r.text
    jid: str = r.json()["id"]
    r = await c.post(f"/v1/journeys/{jid}/publish")
    assert r.status_code == 200, r.text
    return jid


async def post(c: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 500):
        r = await c.post("/v1/events/batch", json={"events": events[start : start + 500]})
        assert r.status_code == 202, r.text
        assert not r.json().get("rejected"), r.text


def signups(profiles: list[str]) -> list[dict[str, Any]]:
    return [{"profile_id": p, "name": "signup", "event_id": f"signup-{p}"} for p in profiles]


async def experiment(c: httpx.AsyncClient, jid: str, step: str = "x1") -> dict[str, Any]:
    r = await c.get(f"/v1/journeys/{jid}/experiments/{step}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def steps_of(c: httpx.AsyncClient, jid: str) -> dict[str, str]:
    """Where each profile in the journey is (its step)."""
    out: dict[str, str] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        r = await c.get(f"/v1/journeys/{jid}/profiles", params=params)
        assert r.status_code == 200, r.text
        out |= {m["profile_id"]: m["step"] for m in r.json()["items"]}
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return out


async def assigned(c: httpx.AsyncClient, jid: str, total: int) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body = await experiment(c, jid)
        return body if sum(p["assigned"] for p in body["paths"]) == total else None

    return await eventually(probe, f"{total} profiles assigned")


async def test_the_better_path_wins_once_and_later_entrants_take_it(virtual: Stack) -> None:
    ws = await new_workspace(virtual)
    async with ws.client() as c:
        jid = await publish(c, experiment_journey())
        first = [f"p{i:03d}" for i in range(120)]
        await post(c, signups(first))
        body = await assigned(c, jid, 120)
        assert body["status"] == "collecting"
        assert body["winner"] is None
        assert body["method"].startswith("mSPRT")
        where = await steps_of(c, jid)
        on_a = sorted(p for p in first if where[p] == "wa")
        on_b = sorted(p for p in first if where[p] == "wb")
        assert len(on_a) + len(on_b) == 120
        assert len(on_a) >= 40
        assert len(on_b) >= 40
        counts = {p["name"]: p["assigned"] for p in body["paths"]}
        assert counts == {"A": len(on_a), "B": len(on_b)}

        # One in ten of A buys, four in five of B; a purchase sent twice counts once.
        buyers = on_a[::10] + [p for i, p in enumerate(on_b) if i % 5]
        purchases = [{"profile_id": p, "name": "purchase", "event_id": f"buy-{p}"} for p in buyers]
        await post(c, purchases + purchases[:5])

        async def converted() -> dict[str, Any] | None:
            body = await experiment(c, jid)
            got = {p["name"]: p["converted"] for p in body["paths"]}
            return body if sum(got.values()) == len(buyers) else None

        body = await eventually(converted, "the conversions counted")
        # No window has closed: nothing is decided however clear the counts look.
        assert body["status"] == "collecting"
        assert all(p["rate"] is None for p in body["paths"])
        assert {p["name"]: p["converted"] for p in body["paths"]} == {
            "A": len(on_a[::10]), "B": len(buyers) - len(on_a[::10]),
        }  # fmt: skip

        r = await c.post("/v1/admin/clock", json={"advance": "PT2H"})
        assert r.status_code == 200, r.text

        async def decided() -> dict[str, Any] | None:
            body = await experiment(c, jid)
            return body if body["status"] == "decided" else None

        body = await eventually(decided, "a decision")
        assert body["winner"] == "B"
        decided_at = body["decided_at"]
        rates = {p["name"]: p for p in body["decision"]}
        assert rates["B"]["rate"] > rates["A"]["rate"]
        assert rates["B"]["p_value"] <= 0.05
        assert rates["B"]["lift_vs_control"] > 1
        assert rates["A"]["lift_vs_control"] is None

        # Everyone who reaches the split now takes the winner, and is not counted in it.
        later = [f"q{i:03d}" for i in range(30)]
        await post(c, signups(later))

        async def all_in() -> dict[str, str] | None:
            where = await steps_of(c, jid)
            return where if all(p in where for p in later) else None

        where = await eventually(all_in, "the later profiles in the journey")
        assert {where[p] for p in later} == {"wb"}
        r = await c.get(f"/v1/profiles/{later[0]}/timeline")
        taken = [e["detail"] for e in r.json()["items"] if e["kind"] == "branch_taken"]
        assert taken == [{"path": "B", "experiment": "winner"}]
        assert sum(p["assigned"] for p in (await experiment(c, jid))["paths"]) == 120

        # A new runtime reads the same decision and changes nothing.
        assert virtual.restart_runtime is not None
        await virtual.restart_runtime()
        after = [f"r{i:03d}" for i in range(10)]
        await post(c, signups(after))

        async def restarted_in() -> dict[str, str] | None:
            where = await steps_of(c, jid)
            return where if all(p in where for p in after) else None

        where = await eventually(restarted_in, "profiles entered after the restart")
        assert {where[p] for p in after} == {"wb"}
        await c.post("/v1/admin/clock", json={"advance": "PT2H"})
        body = await experiment(c, jid)
        assert (body["status"], body["winner"], body["decided_at"]) == ("decided", "B", decided_at)
        assert sum(p["assigned"] for p in body["paths"]) == 120
        assert sum(p["converted"] for p in body["paths"]) == len(buyers)

        # The simulator, told which journey it simulates, sends a newcomer to the winner too.
        r = await c.post("/v1/journeys/simulate", json={
            "journey": experiment_journey(), "journey_id": jid,
            "events": [{"profile_id": "newcomer", "name": "signup", "timestamp": T0}],
        })  # fmt: skip
        assert r.status_code == 200, r.text
        (simulated,) = r.json()["profiles"]
        taken = [e["detail"] for e in simulated["path"] if e["kind"] == "branch_taken"]
        assert taken == [{"path": "B", "experiment": "winner"}]


async def test_the_simulator_shows_the_path_each_profile_would_take(virtual: Stack) -> None:
    ws = await new_workspace(virtual)
    async with ws.client() as c:
        jid = await publish(c, experiment_journey())
        profiles = [f"p{i:02d}" for i in range(30)]
        await post(c, signups(profiles))
        await assigned(c, jid, 30)
        live = {p: {"wa": "A", "wb": "B"}[s] for p, s in (await steps_of(c, jid)).items()}
        r = await c.post("/v1/journeys/simulate", json={
            "journey": experiment_journey(), "journey_id": jid,
            "events": [{"profile_id": p, "name": "signup", "timestamp": T0} for p in profiles],
        })  # fmt: skip
        assert r.status_code == 200, r.text
        simulated = {
            p["profile_id"]: e["detail"]["path"]
            for p in r.json()["profiles"]
            for e in p["path"]
            if e["kind"] == "branch_taken"
        }
        assert simulated == live
        # An erased profile no longer counts.
        assert (await c.delete("/v1/profiles/p00")).status_code == 204
        assert sum(p["assigned"] for p in (await experiment(c, jid))["paths"]) == 29
        r = await c.post("/v1/journeys/simulate", json={
            "journey": experiment_journey(), "journey_id": "someone-elses",
            "events": [{"profile_id": "p00", "name": "signup", "timestamp": T0}],
        })  # fmt: skip
        assert r.status_code == 404, r.text


async def test_report_goes_on_splitting_after_the_decision(virtual: Stack) -> None:
    ws = await new_workspace(virtual)
    async with ws.client() as c:
        jid = await publish(c, experiment_journey(on_winner="report", min_per_path=20))
        first = [f"p{i:03d}" for i in range(80)]
        await post(c, signups(first))
        await assigned(c, jid, 80)
        where = await steps_of(c, jid)
        on_b = [p for p in first if where[p] == "wb"]
        assert 20 <= len(on_b) <= 60, "each path needs min_per_path profiles"
        await post(c, [{"profile_id": p, "name": "purchase"} for p in on_b])

        async def converted() -> bool:
            body = await experiment(c, jid)
            return sum(p["converted"] for p in body["paths"]) == len(on_b)

        await eventually(converted, "the conversions counted")
        await c.post("/v1/admin/clock", json={"advance": "PT2H"})

        async def decided() -> dict[str, Any] | None:
            body = await experiment(c, jid)
            return body if body["status"] == "decided" else None

        try:
            body = await eventually(decided, "a decision")
        except AssertionError as exc:
            raise AssertionError(f"no decision: {await experiment(c, jid)}") from exc
        assert body["winner"] == "B"
        later = [f"q{i:03d}" for i in range(40)]
        await post(c, signups(later))
        body = await assigned(c, jid, 120)
        assert {p["name"]: p["assigned"] > 0 for p in body["paths"]} == {"A": True, "B": True}
        where = await steps_of(c, jid)
        assert {where[p] for p in later} == {"wa", "wb"}


async def test_a_stopped_journey_or_a_passed_max_duration_is_inconclusive(
    virtual: Stack,
) -> None:
    ws = await new_workspace(virtual)
    async with ws.client() as c:
        stopped = await publish(c, experiment_journey())
        # Days, not hours: the module's earlier tests moved the shared clock on by hours.
        limited = await publish(c, experiment_journey(max_duration="P2D"))
        await post(c, signups([f"p{i}" for i in range(10)]))
        await assigned(c, stopped, 10)
        await assigned(c, limited, 10)
        assert (await c.post(f"/v1/journeys/{stopped}/stop")).status_code == 200

        async def inconclusive(jid: str) -> dict[str, Any] | None:
            body = await experiment(c, jid)
            return body if body["status"] == "inconclusive" else None

        body = await eventually(lambda: inconclusive(stopped), "the stopped one inconclusive")
        assert body["winner"] is None
        assert "stopped" in body["reason"]
        assert (await experiment(c, limited))["status"] == "collecting"
        await c.post("/v1/admin/clock", json={"advance": "P3D"})
        body = await eventually(lambda: inconclusive(limited), "the limited one inconclusive")
        assert body["winner"] is None
        assert "max_duration" in body["reason"]


async def test_an_unknown_step_or_one_that_is_no_experiment_is_404(virtual: Stack) -> None:
    ws = await new_workspace(virtual)
    async with ws.client() as c:
        jid = await publish(c, experiment_journey())
        assert (await c.get(f"/v1/journeys/{jid}/experiments/wa")).status_code == 404
        assert (await c.get(f"/v1/journeys/{jid}/experiments/nope")).status_code == 404
        assert (await c.get("/v1/journeys/nope/experiments/x1")).status_code == 404
    viewer = await ws.key("viewer")
    async with ws.client(viewer) as c:
        assert (await c.get(f"/v1/journeys/{jid}/experiments/x1")).status_code == 200
    ingest = await ws.key("ingest")
    async with ws.client(ingest) as c:
        assert (await c.get(f"/v1/journeys/{jid}/experiments/x1")).status_code == 403
    async with virtual.client(None) as c:
        doc = (await c.get("/openapi.json")).json()
    assert "get" in doc["paths"]["/v1/journeys/{journey_id}/experiments/{step_id}"]
    paths = doc["components"]["schemas"]["ExperimentOut"]["properties"]["paths"]
    assert paths["items"]["$ref"].endswith("/ExperimentPathOut")


async def test_invalid_experiments_are_422_with_their_paths(virtual: Stack) -> None:
    ws = await new_workspace(virtual, require_event_triggers=True)
    body = experiment_journey()
    split = body["stages"][0]["steps"][0]
    split["paths"][0]["percent"] = 60
    split["paths"][1]["control"] = True
    async with ws.client() as c:
        r = await c.post("/v1/journeys", json=body)
        assert r.status_code == 422, r.text
        errors = {e["path"]: e["message"] for e in r.json()["errors"]}
        assert "add up to 100 (found 110)" in errors["stages[0].steps[0].paths"]
        assert "at most one control" in errors["stages[0].steps[0].paths[1].control"]

        body = experiment_journey()
        body["stages"][0]["entry"] = {"event": "email_opened"}
        r = await c.post("/v1/journeys", json=body)
        assert r.status_code == 201, r.text
        r = await c.post(f"/v1/journeys/{r.json()['id']}/publish")
        assert r.status_code == 422, r.text
        paths = [e["path"] for e in r.json()["errors"]]
        assert paths == ["stages[0].steps[0].experiment.metric.event"]
