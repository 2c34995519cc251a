"""Journey analytics against what the profiles did: counts on every branch and split path,
profiles whose steps ended counted as finished rather than on their last step, ends by
outcome, and totals that add up across a migrate publish with the move on the timeline."""

from __future__ import annotations

import uuid
from typing import Any

from nats.aio.client import Client as NATS

from tests.helpers import eventually
from tests.integration.test_runtime import send
from tests.stack import Workspace


def journey() -> dict[str, Any]:
    return {
        "name": f"Paths {uuid.uuid4().hex[:6]}",
        "goal": {"criteria": {"event": "purchase"}},
        "stages": [{
            "name": "Trial",
            "entry": {"event": "signup"},
            "exit_criteria": [{"criteria": {"event": "cancel"}}],
            "steps": [
                {"id": "plan", "type": "split", "mode": "attribute",
                 "cases": [{"criteria": {"profile": [
                     {"attribute": "plan", "op": "eq", "value": "pro"}]}, "steps": []}],
                 "default": []},
                {"id": "clicked", "type": "branch", "criteria": {"event": "click"},
                 "timeout": "P1D",
                 "yes": [{"id": "done", "type": "end"}],
                 "no": [{"id": "nudge", "type": "wait", "duration": "P1D"}]},
            ],
        }],
    }  # fmt: skip


async def test_paths_finished_profiles_and_ends_add_up(workspace: Workspace, nc: NATS) -> None:
    async with workspace.client() as c:
        jid = (await c.post("/v1/journeys", json=journey())).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
        for profile, plan in (("a", "pro"), ("b", "free"), ("c", "pro"), ("d", "free")):
            await send(nc, workspace.id, profile, "signup", plan=plan)

        async def stats(want: Any) -> dict[str, Any] | None:
            a: dict[str, Any] = (await c.get(f"/v1/journeys/{jid}/analytics")).json()
            return a if want(a) else None

        await eventually(lambda: stats(lambda a: a["waiting"] == 4), "all four on the branch")
        await send(nc, workspace.id, "a", "click")
        await send(nc, workspace.id, "b", "cancel")
        await send(nc, workspace.id, "c", "purchase")
        a = await eventually(
            lambda: stats(lambda a: a["finished"] == 1 and a["exits"]["exited"] == 1
                          and a["goal"]["reached"] == 1), "a click, a cancel and a purchase",
        )  # fmt: skip

    # Only "d" waits on the branch; "a" took yes and ran out of steps: finished, not on it.
    assert (a["entered"], a["active"], a["waiting"], a["finished"]) == (4, 2, 1, 1)
    assert a["ends"] == {"goal": 1, "exited": 1, "stale": 0, "jumped": 0, "stopped": 0,
                         "finished": 1}  # fmt: skip
    assert a["paths"]["plan"] == [
        {"path": "case 0", "count": 2, "percent": 50.0},
        {"path": "default", "count": 2, "percent": 50.0},
    ]
    assert a["paths"]["clicked"] == [{"path": "yes", "count": 1, "percent": 100.0}]
    (stage,) = a["stages"]
    steps = {s["id"]: s for s in stage["steps"]}
    assert (steps["clicked"]["entered"], steps["clicked"]["active"]) == (4, 1)
    assert steps["clicked"]["finished"] == 0
    assert (steps["done"]["entered"], steps["done"]["active"], steps["done"]["finished"]) == (
        1,
        0,
        1,
    )
    assert stage["ends"]["exited"] == 1
    assert stage["ends"]["goal"] == 1
    assert (stage["active"], stage["finished"]) == (2, 1)
    assert a["steps"]["clicked"]["active"] == 1
    assert a["steps"]["done"]["finished"] == 1


async def test_totals_add_up_across_a_migrate_and_the_timeline_records_the_move(
    workspace: Workspace, nc: NATS
) -> None:
    async with workspace.client() as c:
        body = journey()
        jid = (await c.post("/v1/journeys", json=body)).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
        for profile in ("m1", "m2"):
            await send(nc, workspace.id, profile, "signup", plan="pro")

        async def entered(version: int | None = None) -> int:
            q = "" if version is None else f"?version={version}"
            return int((await c.get(f"/v1/journeys/{jid}/analytics{q}")).json()["entered"])

        await eventually(lambda: _equals(entered, 2), "both to enter v1")
        assert (await c.post(f"/v1/journeys/{jid}/versions")).status_code in (200, 201)
        v2 = body | {"description": "v2"}
        assert (await c.put(f"/v1/journeys/{jid}", json=v2)).status_code == 200
        moved = await c.post(f"/v1/journeys/{jid}/publish", json={"in_flight": "migrate"})
        assert moved.json()["migrated"] == 2
        await send(nc, workspace.id, "m3", "signup", plan="free")
        await eventually(lambda: _equals(entered, 3), "a third to enter v2")

        a = (await c.get(f"/v1/journeys/{jid}/analytics")).json()
        assert (a["entered"], a["active"]) == (3, 3)
        by = {v["version"]: v for v in a["versions"]}
        assert (by[1]["entered"], by[1]["active"], by[1]["migrated_out"]) == (2, 0, 2)
        assert (by[2]["entered"], by[2]["active"], by[2]["migrated_in"]) == (1, 3, 2)
        assert await entered(2) == 1
        assert await entered(1) == 2

        items = (await c.get("/v1/profiles/m1/timeline")).json()["items"]
        (move,) = [i for i in items if i["kind"] == "migrated"]
        assert move["version"] == 2
        assert move["step_id"] == "clicked"
        detail = move["detail"]
        assert (detail["from_version"], detail["from_step"]) == (1, "clicked")
        assert (detail["to_version"], detail["to_step"]) == (2, "clicked")


async def _equals(read: Any, want: int) -> bool:
    return bool(await read() == want)


async def test_the_analytics_fields_are_documented(workspace: Workspace) -> None:
    async with workspace.stack.client(None) as c:
        doc = (await c.get("/openapi.json")).json()
    route = doc["paths"]["/v1/journeys/{journey_id}/analytics"]["get"]
    ok = route["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/AnalyticsOut")
    schemas = doc["components"]["schemas"]
    fields = schemas["AnalyticsOut"]["properties"]
    assert {"waiting", "finished", "ends", "paths", "versions"} <= set(fields)
    assert "finished" in schemas["StepOut"]["properties"]
    assert "migrated_in" in schemas["VersionOut"]["properties"]
