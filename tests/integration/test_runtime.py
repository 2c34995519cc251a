"""The runtime against real NATS and PostgreSQL: accepted events move profiles through
live journeys; timers, activations and journey changes flow over the bus."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from nats.aio.client import Client as NATS

from shared import bus
from shared.events import AcceptedEvent, partition_of, subject_for
from shared.topology import DEADLETTER, EVENTS, dead_letter_subject
from tests.helpers import eventually
from tests.stack import Workspace

PARTITIONS = 16


def journey() -> dict[str, Any]:
    return {
        "name": f"Welcome {uuid.uuid4().hex[:6]}",
        "goal": {"criteria": {"event": "purchase"}, "target_percent": 50},
        "stages": [{
            "name": "Signed up",
            "entry": {"event": "signup"},
            "steps": [
                {"id": "wait-1h", "type": "wait", "duration": "PT1H"},
                {"id": "hello", "type": "activation", "channel": "sms", "connector_id": "{c}",
                 "template_id": "{t}", "to_attribute": "phone"},
            ],
        }],
    }  # fmt: skip


async def live_journey(workspace: Workspace) -> str:
    async with workspace.client() as c:
        conn = await c.post(
            "/v1/connectors",
            json={
                "name": f"c{uuid.uuid4().hex[:6]}",
                "type": "sms_http",
                "config": {"url": "http://127.0.0.1:9/x"},
            },
        )
        tmpl = await c.post("/v1/templates", json={"name": f"t{uuid.uuid4().hex[:6]}",
                            "channel": "sms", "body": "hi", "status": "ready"})  # fmt: skip
        body = journey()
        step = body["stages"][0]["steps"][1]
        step["connector_id"], step["template_id"] = conn.json()["id"], tmpl.json()["id"]
        jid: str = (await c.post("/v1/journeys", json=body)).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    return jid


async def send(nc: NATS, ws: str, profile: str, name: str, event_id: str | None = None,
               **traits: Any) -> str:  # fmt: skip
    now = datetime.now(UTC)
    event = AcceptedEvent(
        workspace_id=ws, event_id=event_id or uuid.uuid4().hex, profile_id=profile, name=name,
        timestamp=now, accepted_at=now, traits=traits,
    )  # fmt: skip
    await bus.publish(nc.jetstream(), subject_for(ws, profile, PARTITIONS),
                      event.model_dump(mode="json"), event.msg_id)  # fmt: skip
    return event.event_id


async def messages(nc: NATS, stream: str, subject: str) -> list[dict[str, Any]]:
    sub = await nc.jetstream().pull_subscribe(subject, stream=stream)
    try:
        return [bus.decode(m) for m in await sub.fetch(200, timeout=1)]
    except TimeoutError:  # nats-py raises either its own subclass or the plain one
        return []
    finally:
        await sub.unsubscribe()


async def test_an_event_enters_a_profile_and_a_timer_delivers(
    workspace: Workspace, nc: NATS
) -> None:
    jid = await live_journey(workspace)
    ws = workspace.id
    event_id = await send(nc, ws, "ada", "signup", phone="+15550100")
    await send(nc, ws, "ada", "signup", event_id=event_id)  # a duplicate: no effect

    async with workspace.client() as c:

        async def inside() -> dict[str, Any] | None:
            r = await c.get("/v1/profiles/ada")
            return r.json() if r.status_code == 200 and r.json()["journeys"] else None

        profile = await eventually(inside, "the profile to enter")
        assert profile["attributes"] == {"phone": "+15550100"}
        (membership,) = profile["journeys"]
        assert membership | {"entered_at": None} == {
            "journey_id": jid, "version": 1, "stage": "Signed up", "step": "wait-1h",
            "state": "active", "entered_at": None,
        }  # fmt: skip

        schedules = await eventually(
            lambda: messages(nc, "TIMERS", f"timers.schedule.{ws}"), "the wait's timer command"
        )
        (timer,) = schedules
        assert timer["due_at"] > datetime.now(UTC).isoformat()
        fired = timer | {"fired_at": datetime.now(UTC).isoformat()}
        await bus.publish(nc.jetstream(), f"timers.fired.{ws}", fired, f"fired:{timer['timer_id']}")

        requested = await eventually(
            lambda: messages(nc, "ACTIVATIONS", f"activations.requested.{ws}"), "the activation"
        )
        (activation,) = requested
        assert activation["to"] == "+15550100"
        assert activation["step_id"] == "hello"

        timeline = (await c.get("/v1/profiles/ada/timeline")).json()["items"]
        kinds = [e["kind"] for e in timeline]
        assert kinds[:3] == ["entered", "step_started", "waiting"]
        assert "activation" in kinds
        assert timeline[0]["cause"] == {"event_id": event_id}
        why = (await c.get("/v1/profiles/ada/explain", params={"journey_id": jid})).json()
        assert [i["outcome"] for i in why["items"]] == ["entered"]
        stats = (await c.get(f"/v1/journeys/{jid}/analytics")).json()
        assert stats["entered"] == 1
        assert stats["active"] == 1
        assert stats["stages"][0]["steps"][0]["entered"] == 1

        await send(nc, ws, "ada", "purchase")

        async def converted() -> bool:
            return (await c.get(f"/v1/journeys/{jid}/analytics")).json()["goal"]["reached"] == 1

        await eventually(converted, "the goal")
        final = (await c.get(f"/v1/journeys/{jid}/analytics")).json()
        assert final["goal"] == {"reached": 1, "percent": 100.0, "target_percent": 50,
                                 "target_met": True}  # fmt: skip
        members = (await c.get(f"/v1/journeys/{jid}/profiles", params={"state": "left"})).json()
        assert [(m["profile_id"], m["outcome"]) for m in members["items"]] == [("ada", "goal")]


async def test_stop_makes_everyone_leave_and_delete_erases(workspace: Workspace, nc: NATS) -> None:
    jid = await live_journey(workspace)
    for p in ("p1", "p2"):
        await send(nc, workspace.id, p, "signup")
    async with workspace.client() as c:

        async def both_in() -> bool:
            r = await c.get(f"/v1/journeys/{jid}/profiles", params={"state": "active"})
            return len(r.json()["items"]) == 2

        await eventually(both_in, "two profiles inside")
        assert (await c.post(f"/v1/journeys/{jid}/stop")).status_code == 200

        async def all_left() -> bool:
            r = await c.get(f"/v1/journeys/{jid}/profiles", params={"state": "left"})
            return {m["outcome"] for m in r.json()["items"]} == {"stopped"} and len(
                r.json()["items"]) == 2  # fmt: skip

        await eventually(all_left, "everyone to leave")
        assert (await c.delete("/v1/profiles/p1")).status_code == 204
        assert (await c.get("/v1/profiles/p1")).status_code == 404
        assert (await c.get("/v1/profiles/p1/timeline")).json()["items"] == []
        assert (await c.delete("/v1/profiles/p1")).status_code == 404
    erasures = await messages(nc, "ACTIVATIONS", f"activations.erase.{workspace.id}")
    assert [(m["workspace_id"], m["profile_id"]) for m in erasures] == [(workspace.id, "p1")]


async def test_publish_with_migrate_moves_profiles_whose_position_exists(
    workspace: Workspace, nc: NATS
) -> None:
    jid = await live_journey(workspace)
    await send(nc, workspace.id, "mover", "signup")
    async with workspace.client() as c:

        async def inside() -> bool:
            r = await c.get("/v1/profiles/mover")
            return r.status_code == 200 and bool(r.json()["journeys"])

        await eventually(inside, "the profile to enter")
        v1 = (await c.get(f"/v1/journeys/{jid}")).json()
        await c.post(f"/v1/journeys/{jid}/versions")
        body = {k: v1[k] for k in ("name", "stages", "goal")} | {"description": "v2"}
        assert (await c.put(f"/v1/journeys/{jid}", json=body)).status_code == 200
        moved = await c.post(f"/v1/journeys/{jid}/publish", json={"in_flight": "migrate"})
        assert moved.json() == {"status": "live", "version": 2, "migrated": 1}
        (membership,) = (await c.get("/v1/profiles/mover")).json()["journeys"]
        assert membership["version"] == 2
        assert membership["step"] == "wait-1h"

        await c.post(f"/v1/journeys/{jid}/versions")
        renamed = body | {"stages": [body["stages"][0] | {"name": "Renamed"}]}
        assert (await c.put(f"/v1/journeys/{jid}", json=renamed)).status_code == 200
        stay = await c.post(f"/v1/journeys/{jid}/publish", json={"in_flight": "migrate"})
        assert stay.json()["migrated"] == 0
        (membership,) = (await c.get("/v1/profiles/mover")).json()["journeys"]
        assert membership["version"] == 2


async def test_when_the_schedule_closes_everyone_inside_leaves(
    workspace: Workspace, nc: NATS
) -> None:
    from datetime import timedelta

    async with workspace.client() as c:
        body = journey()
        body["stages"][0]["steps"] = [{"id": "wait-1d", "type": "wait", "duration": "P1D"}]
        closes = datetime.now(UTC) + timedelta(seconds=3)
        body["schedule"] = {"end_at": closes.isoformat()}
        jid = (await c.post("/v1/journeys", json=body)).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
        await send(nc, workspace.id, "late", "signup")

        async def left() -> dict[str, Any] | None:
            r = await c.get("/v1/profiles/late")
            journeys = r.json().get("journeys") if r.status_code == 200 else None
            return journeys[0] if journeys and journeys[0]["state"] == "left" else None

        member = await eventually(left, "the schedule to close")
        assert member["outcome"] == "stopped"
        timeline = (await c.get("/v1/profiles/late/timeline")).json()["items"]
        assert timeline[-1]["detail"] == {"outcome": "stopped", "reason": "schedule ended"}


async def dead_letters(nc: NATS, durable: str) -> list[tuple[bytes, str]]:
    """(body, reason) of every message the consumer ``durable`` dead-lettered so far."""
    sub = await nc.jetstream().pull_subscribe(
        dead_letter_subject(EVENTS.name, durable), stream=DEADLETTER.name
    )
    found: list[tuple[bytes, str]] = []
    try:
        while True:
            batch = await sub.fetch(500, timeout=1)
            found += [(m.data, (m.headers or {}).get(bus.DEAD_REASON, "")) for m in batch]
    except TimeoutError:  # nats-py raises either its own subclass or the plain one
        return found
    finally:
        await sub.unsubscribe()


async def test_events_of_unknown_workspaces_and_garbage_are_dead_lettered_the_rest_apply(
    workspace: Workspace, nc: NATS
) -> None:
    await live_journey(workspace)
    profile = f"p-{uuid.uuid4().hex[:6]}"
    partition = partition_of(profile, PARTITIONS)
    ghost = f"ghost{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    # All three on one partition, so one consumer sees them in one order.
    await send(nc, ghost, profile, "signup")
    await js.publish(f"events.{workspace.id}.{partition}", b"\xff not json")
    await send(nc, workspace.id, profile, "signup")

    async def entered() -> bool:
        async with workspace.client() as c:
            r = await c.get(f"/v1/profiles/{profile}")
        return r.status_code == 200 and len(r.json()["journeys"]) == 1

    await eventually(entered, "the good event to apply after the bad ones")

    async def both_dead() -> bool:
        reasons = [r for _, r in await dead_letters(nc, f"runtime-p{partition}")]
        return any(ghost in r and "unknown workspace" in r for r in reasons) and any(
            "not an accepted event" in r for r in reasons
        )

    await eventually(both_dead, "the ghost workspace's event and the garbage dead-lettered")


async def test_a_time_of_day_wait_uses_the_workspace_timezone_when_the_profile_has_none(
    workspace: Workspace, nc: NATS
) -> None:
    async with workspace.client() as c:
        r = await c.put("/v1/workspace/settings", json={"default_timezone": "Asia/Tokyo"})
        assert r.status_code == 200, r.text
        body = {
            "name": f"Morning {uuid.uuid4().hex[:6]}",
            "stages": [{
                "name": "Signed up",
                "entry": {"event": "signup"},
                "steps": [{"id": "nine", "type": "wait", "time_of_day": "09:00"}],
            }],
        }  # fmt: skip
        jid = (await c.post("/v1/journeys", json=body)).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    profile = f"p-{uuid.uuid4().hex[:6]}"
    await send(nc, workspace.id, profile, "signup")

    async def waiting_until() -> datetime | None:
        async with workspace.client() as c:
            r = await c.get(f"/v1/profiles/{profile}/timeline")
        waits = [e for e in r.json()["items"] if e["kind"] == "waiting"] if r.is_success else []
        return datetime.fromisoformat(waits[0]["detail"]["due_at"]) if waits else None

    due = await eventually(waiting_until, "the profile to wait")
    local = due.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute) == (9, 0)
    assert due.astimezone(UTC).hour == 0  # 09:00 in Tokyo, not 09:00 UTC


async def test_longest_ids_and_huge_integers_are_applied_and_erased(
    workspace: Workspace, nc: NATS
) -> None:
    """A 200-character profile id makes timer and message ids longer than the outbox keeps;
    an integer beyond 64 bits is valid JSON. Neither may stall the partition."""
    jid = await live_journey(workspace)
    profile = "p" * 199 + uuid.uuid4().hex[:1]
    huge = 2**80
    await send(nc, workspace.id, profile, "signup", order=huge)
    async with workspace.client() as c:

        async def waiting() -> dict[str, Any] | None:
            r = await c.get(f"/v1/profiles/{profile}")
            inside = r.status_code == 200 and r.json()["journeys"][0]["journey_id"] == jid
            return r.json() if inside else None

        found = await eventually(waiting, "the profile to enter and wait")
        assert found["attributes"]["order"] == huge
        assert (await c.delete(f"/v1/profiles/{profile}")).status_code == 204
        assert (await c.get(f"/v1/profiles/{profile}")).status_code == 404


async def test_a_pause_and_a_resume_apply_to_the_very_next_event(
    workspace: Workspace, nc: NATS
) -> None:
    """The runtime learns of each change through the designer's change beacon before it
    applies an event sent after the designer answered, well inside its periodic recheck."""
    jid = await live_journey(workspace)
    ws = workspace.id
    async with workspace.client() as c:

        async def outcome(profile: str) -> str | None:
            r = await c.get(f"/v1/profiles/{profile}/explain", params={"journey_id": jid})
            items = r.json()["items"] if r.status_code == 200 else []
            return str(items[0]["outcome"]) if items else None

        async def decided(profile: str) -> str:
            found: str = await eventually(lambda: outcome(profile), f"{profile}'s event applied")
            return found

        await send(nc, ws, "first", "signup")
        assert await decided("first") == "entered"
        assert (await c.post(f"/v1/journeys/{jid}/pause")).status_code == 200
        await send(nc, ws, "while-paused", "signup")
        assert await decided("while-paused") == "paused"
        assert (await c.post(f"/v1/journeys/{jid}/resume")).status_code == 200
        await send(nc, ws, "resumed", "signup")
        assert await decided("resumed") == "entered"
