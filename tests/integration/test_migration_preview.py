"""The dry run of a migrating publish through the gateway: who may ask, when there is
nothing to preview, counts that match the publish after it, and nothing changed by asking."""

from __future__ import annotations

from typing import Any

from tests.helpers import eventually
from tests.stack import Workspace


def two_steps(name: str, second: str) -> dict[str, Any]:
    return {
        "name": name,
        "stages": [{
            "name": "Signed up",
            "entry": {"event": "signup"},
            "steps": [{"id": "wait-1", "type": "wait", "duration": "P1D"},
                      {"id": second, "type": "wait", "duration": "P1D"}],
        }],
    }  # fmt: skip


async def inside(c: Any, journey_id: str) -> dict[str, int]:
    r = await c.get(f"/v1/journeys/{journey_id}/profiles", params={"state": "active"})
    assert r.status_code == 200, r.text
    return {m["profile_id"]: m["version"] for m in r.json()["items"]}


async def test_the_preview_needs_a_draft_of_a_live_journey_and_a_writer(
    workspace: Workspace,
) -> None:
    async with workspace.client() as c:
        r = await c.post("/v1/journeys", json=two_steps("Preview refusals", "wait-2"))
        jid = r.json()["id"]
        r = await c.post(f"/v1/journeys/{jid}/publish/preview")
        assert r.status_code == 409, r.text  # never published: no one inside to move
        assert r.headers["content-type"].startswith("application/problem+json")
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
        r = await c.post(f"/v1/journeys/{jid}/publish/preview")
        assert r.status_code == 409, r.text  # live, but no draft to move onto
        r = await c.post("/v1/journeys/no-such-journey/publish/preview")
        assert r.status_code == 404, r.text
    async with workspace.client(await workspace.key("viewer")) as c:
        r = await c.post(f"/v1/journeys/{jid}/publish/preview")
        assert r.status_code == 403, r.text


async def test_the_preview_counts_what_the_publish_then_moves_and_changes_nothing(
    workspace: Workspace,
) -> None:
    async with workspace.client() as c:
        r = await c.post("/v1/journeys", json=two_steps("Preview counts", "wait-2"))
        jid = r.json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
        for n in range(3):
            r = await c.post("/v1/events", json={"profile_id": f"p-{n}", "name": "signup"})
            assert r.status_code == 202, r.text

        async def three() -> bool:
            return len(await inside(c, jid)) == 3

        await eventually(three, "three profiles inside")
        assert (await c.post(f"/v1/journeys/{jid}/versions")).status_code == 201
        # The draft drops the step they wait at: every one of them stays.
        other = two_steps("Preview counts", "wait-3")
        other["stages"][0]["steps"][0]["id"] = "other"
        r = await c.put(f"/v1/journeys/{jid}", json=other)
        assert r.status_code == 200, r.text
        r = await c.post(f"/v1/journeys/{jid}/publish/preview")
        assert r.status_code == 200, r.text
        plan = r.json()
        assert (plan["version"], plan["active"], plan["would_move"], plan["would_stay"]) == (
            2, 3, 0, 3
        )  # fmt: skip
        (row,) = plan["steps"]
        assert (row["version"], row["stage"], row["step"], row["stay"]) == (
            1,
            "Signed up",
            "wait-1",
            3,
        )
        assert "wait-1" in row["reason"]

        # Back to a draft that keeps the step: all three would move, and the publish moves them.
        r = await c.put(f"/v1/journeys/{jid}", json=two_steps("Preview counts", "wait-3"))
        assert r.status_code == 200, r.text
        r = await c.post(f"/v1/journeys/{jid}/publish/preview")
        assert r.json()["would_move"] == 3
        assert set((await inside(c, jid)).values()) == {1}  # asking moved no one
        r = await c.get(f"/v1/journeys/{jid}")
        assert r.json()["status"] == "draft"  # nor published anything
        r = await c.post(f"/v1/journeys/{jid}/publish", json={"in_flight": "migrate"})
        assert r.status_code == 200, r.text
        assert r.json()["migrated"] == 3
        assert set((await inside(c, jid)).values()) == {2}


async def test_openapi_documents_the_preview(workspace: Workspace) -> None:
    async with workspace.client() as c:
        r = await c.get("/openapi.json")
    assert r.status_code == 200
    assert "post" in r.json()["paths"]["/v1/journeys/{journey_id}/publish/preview"]
