"""What must hold once the faults are over and the load has drained: every accepted event
had its effect exactly once, nobody is stuck, nothing was dead-lettered."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from services.activator.senders import message_id
from tests.faults.load import Load
from tests.faults.system import System
from tests.helpers import eventually
from tests.sinks import Mailbox
from tests.stack import Workspace

SENDER = "shop@example.com"
WITHIN_S = 180.0


async def journey(ws: Workspace, smtp_port: int) -> str:
    """Signup enters and sends one email at once; the ``message_sent`` that comes back is
    the goal, so a profile that had its email delivered leaves the journey."""
    async with ws.client() as c:
        config = {"host": "127.0.0.1", "port": smtp_port, "from": SENDER}
        connector = await c.post(
            "/v1/connectors", json={"name": "mail", "type": "smtp", "config": config}
        )
        template = await c.post("/v1/templates", json={
            "name": "hello", "channel": "email", "status": "ready",
            "subject": "Hello {{ profile.first_name }}", "body": "Welcome."})  # fmt: skip
        body = {
            "name": "Faults",
            "reentry": {"mode": "never"},
            "goal": {"criteria": {"event": "message_sent"}},
            "stages": [{
                "name": "Signed up",
                "entry": {"event": "signup"},
                "steps": [{"id": "hello", "type": "activation", "channel": "email",
                           "connector_id": connector.json()["id"],
                           "template_id": template.json()["id"], "to_attribute": "email"}],
            }],
        }  # fmt: skip
        created = await c.post("/v1/journeys", json=body)
        assert created.status_code == 201, created.text
        jid: str = created.json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    return jid


async def settled(ws: Workspace, journey_id: str, profiles: int) -> dict[str, Any]:
    """The journey's analytics once every profile entered, had its email sent and left."""
    async with ws.client() as c:

        async def done() -> dict[str, Any] | None:
            r = await c.get(f"/v1/journeys/{journey_id}/analytics")
            report: dict[str, Any] = r.json() if r.status_code == 200 else {}
            # Counters and memberships are read one after the other: wait for both.
            if report.get("entered", 0) < profiles or report["active"]:
                return None
            if report["goal"]["reached"] < report["entered"]:
                return None
            return report if report["activations"]["pending"] == 0 else None

        return await eventually(done, f"{profiles} profiles through the journey", WITHIN_S)


async def assert_exactly_once(
    system: System, ws: Workspace, journey_id: str, load: Load, box: Mailbox
) -> None:
    profiles = load.profiles()
    n = len(profiles)
    report = await settled(ws, journey_id, n)
    assert report["entered"] == n
    assert report["active"] == 0
    assert report["goal"]["reached"] == n, report
    assert report["activations"] == {
        "requested": n, "sent": n, "skipped": 0, "failed": 0, "pending": 0
    }, report  # fmt: skip

    activations = await _timeline(system, ws, profiles)
    await _deliveries(system, ws, activations)
    await _mailbox(box, activations, n)
    await _applied_once(system, ws, load, activations)
    await _nothing_left_behind(system)


async def _timeline(system: System, ws: Workspace, profiles: set[str]) -> dict[str, str]:
    """One entry, one activation and one exit (goal) per profile; its activation ids."""
    rows = await system.rows(
        "SELECT profile_id, kind, detail FROM runtime.timeline WHERE workspace_id = $1",
        ws.id,
    )  # fmt: skip
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    activations: dict[str, str] = {}
    for row in rows:
        kinds[row["profile_id"]][row["kind"]] += 1
        if row["kind"] == "activation":
            activations[row["profile_id"]] = _json(row["detail"])["activation_id"]
    assert set(kinds) == profiles
    wrong = {
        p: k for p, k in kinds.items() if (k["entered"], k["activation"], k["left"]) != (1, 1, 1)
    }
    assert not wrong, f"{len(wrong)} profiles moved other than once: {list(wrong.items())[:5]}"
    return activations


async def _deliveries(system: System, ws: Workspace, activations: dict[str, str]) -> None:
    rows = await system.rows(
        "SELECT activation_id, profile_id, status FROM activator.deliveries "
        "WHERE workspace_id = $1", ws.id,
    )  # fmt: skip
    assert len(rows) == len(activations)
    assert {r["profile_id"]: r["activation_id"] for r in rows} == activations
    assert {r["status"] for r in rows} == {"sent"}


async def _mailbox(box: Mailbox, activations: dict[str, str], n: int) -> None:
    """Each profile got its one activation. The same activation twice is allowed (a send
    the activator could not record before it was killed goes again with the same id)."""

    async def all_delivered() -> bool:
        return len({m["Message-ID"] for m in box.messages}) >= n

    await eventually(all_delivered, "every email at the sink", WITHIN_S)
    ids: dict[str, set[str]] = defaultdict(set)
    for message in box.messages:
        ids[str(message["To"])].add(str(message["Message-ID"]))
    expected = {f"{p}@example.com": {message_id(a, SENDER)} for p, a in activations.items()}
    assert ids == expected


async def _applied_once(
    system: System, ws: Workspace, load: Load, activations: dict[str, str]
) -> None:
    """Every accepted event and every ``message_sent`` was applied once, and only those."""
    rows = await system.rows(
        "SELECT event_id, count(*) AS n FROM runtime.explanations WHERE workspace_id = $1 "
        "GROUP BY event_id", ws.id,
    )  # fmt: skip
    applied = {r["event_id"]: r["n"] for r in rows}
    sent = {f"{a}:sent" for a in activations.values()}
    assert set(applied) == load.accepted | sent
    assert set(applied.values()) == {1}


async def _nothing_left_behind(system: System) -> None:
    """No event waits in the inbox, no command in an outbox, nothing was dead-lettered."""
    for table in ("gateway.event_inbox", "runtime.outbox", "activator.outbox"):
        (row,) = await system.rows(f"SELECT count(*) AS n FROM {table} WHERE published_at IS NULL")
        assert row["n"] == 0, f"{row['n']} unpublished rows in {table}"
    async with system.bus() as nc:
        info = await nc.jetstream().stream_info("DEADLETTER")
    assert info.state.messages == 0, f"{info.state.messages} messages dead-lettered"


def _json(value: Any) -> Any:
    import json

    return json.loads(value) if isinstance(value, str) else value
