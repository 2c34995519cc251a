"""The product used as a customer would, black box through the gateway on the virtual
clock: post events, move time, and see what real sinks received."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from shared.settings import ClockMode
from tests.conftest import Servers
from tests.helpers import eventually, serving
from tests.scenarios import load
from tests.sinks import HttpSink, Mailbox, run_mailbox
from tests.stack import Stack, Workspace, new_workspace, running_stack
from waypost import demo
from waypost.demo import Sinks, example_names

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def virtual(servers: Servers) -> AsyncIterator[Stack]:
    async with running_stack(servers, clock=ClockMode.VIRTUAL) as stack:
        yield stack


async def setup_welcome(ws: Workspace, smtp_port: int) -> str:
    async with ws.client() as c:
        connector = await c.post(
            "/v1/connectors",
            json={
                "name": "mail",
                "type": "smtp",
                "config": {"host": "127.0.0.1", "port": smtp_port, "from": "shop@example.com"},
            },
        )
        template = await c.post("/v1/templates", json={
            "name": "welcome", "channel": "email", "status": "ready",
            "subject": "Welcome, {{ profile.first_name }}",
            "body": "Thanks for signing up via {{ event.properties.source }}."})  # fmt: skip
        body = load("welcome")
        step = body["stages"][0]["steps"][1]
        step["connector_id"] = connector.json()["id"]
        step["template_id"] = template.json()["id"]
        jid: str = (await c.post("/v1/journeys", json=body)).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    return jid


@pytest.fixture
def box() -> Iterator[Mailbox]:
    yield from run_mailbox()


async def test_welcome_email_goes_out_an_hour_after_signup(virtual: Stack, box: Mailbox) -> None:
    ws = await new_workspace(virtual)
    jid = await setup_welcome(ws, box.port)
    async with ws.client() as c:
        accepted = await c.post("/v1/events", json={
            "profile_id": "ada", "name": "newsletter_signup",
            "properties": {"source": "footer"},
            "traits": {"email": "ada@example.com", "first_name": "Ada"}})  # fmt: skip
        assert accepted.status_code == 202, accepted.text

        async def waiting() -> dict[str, Any] | None:
            r = await c.get("/v1/profiles/ada")
            journeys = r.json().get("journeys") if r.status_code == 200 else None
            return journeys[0] if journeys else None

        member = await eventually(waiting, "ada to enter the journey")
        assert member["step"] == "wait-1h"
        assert box.messages == []

        await c.post("/v1/admin/clock", json={"advance": "PT59M"})
        await c.post("/v1/admin/clock", json={"advance": "PT1M"})

        async def delivered() -> bool:
            return bool(box.messages)

        await eventually(delivered, "the welcome email")
        (mail,) = box.messages
        assert mail["Subject"] == "Welcome, Ada"
        assert "via footer" in mail.get_content()
        assert box.envelopes[0][1] == ["ada@example.com"]

        async def recorded() -> list[dict[str, Any]] | None:
            items = (await c.get("/v1/deliveries", params={"journey_id": jid})).json()
            return items["items"] if items["items"] and items["items"][0]["status"] == "sent" \
                else None  # fmt: skip

        (delivery,) = await eventually(recorded, "the delivery to be recorded as sent")
        assert delivery["profile_id"] == "ada"
        kinds = [e["kind"] for e in (await c.get("/v1/profiles/ada/timeline")).json()["items"]]
        assert kinds.count("activation") == 1


async def test_multichannel_cart_opened_email_stops_the_texts(virtual: Stack, box: Mailbox) -> None:
    sink = HttpSink()
    received = sink.received
    ws = await new_workspace(virtual)
    async with serving(sink.app()) as sink_url, ws.client() as c:
        ids: dict[str, str] = {}
        for name, kind, config in (
            ("smtp", "smtp", {"host": "127.0.0.1", "port": box.port, "from": "s@example.com"}),
            ("sms", "sms_http", {"url": f"{sink_url}/send"}),
            ("push", "push_http", {"url": f"{sink_url}/send"}),
        ):
            r = await c.post("/v1/connectors", json={"name": name, "type": kind, "config": config})
            ids[f"{{{{connector:{name}}}}}"] = r.json()["id"]
        for name, channel in (("cart-email", "email"), ("cart-sms", "sms"), ("cart-push", "push")):
            template = {"name": name, "channel": channel, "status": "ready",
                        "body": f"{channel} for {{{{ profile.first_name }}}}"}  # fmt: skip
            if channel == "email":
                template |= {
                    "subject": "Your cart",
                    "html": '<p>Back to <a href="https://shop.example/cart">cart</a></p>',
                }
            r = await c.post("/v1/templates", json=template)
            ids[f"{{{{template:{name}}}}}"] = r.json()["id"]
        text = json.dumps(load("multichannel-cart"))
        for placeholder, ident in ids.items():
            text = text.replace(placeholder, ident)
        jid = (await c.post("/v1/journeys", json=json.loads(text))).json()["id"]
        assert (await c.post(f"/v1/journeys/{jid}/publish")).status_code == 200

        for who in ("opener", "ignorer"):
            traits = {"email": f"{who}@example.com", "phone": "+1555", "push_token": "tok",
                      "first_name": who}  # fmt: skip
            r = await c.post("/v1/events", json={"profile_id": who, "name": "cart_abandoned",
                                                 "traits": traits})  # fmt: skip
            assert r.status_code == 202

        async def two_emails() -> bool:
            return len(box.messages) == 2

        await eventually(two_emails, "both cart emails")
        opener_mail = next(m for m in box.messages if m["To"] == "opener@example.com")
        html = opener_mail.get_body(preferencelist=("html",)).get_content()
        (pixel,) = re.findall(r'<img src="([^"]+/t/o/[^"]+)"', html)
        async with httpx.AsyncClient() as browser:
            image = await browser.get(pixel.replace("&amp;", "&"))
        assert image.headers["content-type"] == "image/gif"

        async def opened() -> bool:
            timeline = (await c.get("/v1/profiles/opener/timeline")).json()["items"]
            return any(e["kind"] == "branch_taken" and e["detail"] == {"path": "yes"}
                       for e in timeline)  # fmt: skip

        await eventually(opened, "the open to take the yes path")
        await c.post("/v1/admin/clock", json={"advance": "P1D"})

        async def one_text() -> bool:
            return len(received) == 1

        await eventually(one_text, "the ignorer's text")
        await c.post("/v1/admin/clock", json={"advance": "P1D"})

        async def push_too() -> bool:
            return len(received) == 2

        await eventually(push_too, "the ignorer's push")
        assert [m["to"] for m in received] == ["+1555", "tok"]
        assert received[0]["body"] == "sms for ignorer"


async def publish_scenario(
    c: httpx.AsyncClient,
    name: str,
    connectors: dict[str, tuple[str, dict[str, Any]]],
    templates: dict[str, dict[str, Any]],
) -> str:
    """Create the named connectors and ready templates, put their ids in the example
    journey ``name`` and publish it; answers the journey id."""
    ids: dict[str, str] = {}
    for connector, (kind, config) in connectors.items():
        r = await c.post("/v1/connectors", json={"name": connector, "type": kind, "config": config})
        assert r.status_code == 201, r.text
        ids[f"{{{{connector:{connector}}}}}"] = r.json()["id"]
    for template, fields in templates.items():
        r = await c.post("/v1/templates", json={"name": template, "status": "ready", **fields})
        assert r.status_code == 201, r.text
        ids[f"{{{{template:{template}}}}}"] = r.json()["id"]
    text = json.dumps(load(name))
    for placeholder, ident in ids.items():
        text = text.replace(placeholder, ident)
    r = await c.post("/v1/journeys", json=json.loads(text))
    assert r.status_code == 201, r.text
    jid: str = r.json()["id"]
    published = await c.post(f"/v1/journeys/{jid}/publish")
    assert published.status_code == 200, published.text
    return jid


async def post_event(c: httpx.AsyncClient, profile_id: str, name: str, **fields: Any) -> str:
    event_id = f"{profile_id}-{name}-{uuid.uuid4().hex[:8]}"
    r = await c.post("/v1/events", json={"event_id": event_id, "profile_id": profile_id,
                                         "name": name, **fields})  # fmt: skip
    assert r.status_code == 202, r.text
    return event_id


async def explained(
    c: httpx.AsyncClient, profile_id: str, jid: str, event_id: str
) -> dict[str, Any]:
    """The explanation of one event for one journey, once the runtime has recorded it."""

    async def probe() -> dict[str, Any] | None:
        r = await c.get(f"/v1/profiles/{profile_id}/explain", params={"journey_id": jid})
        items = r.json()["items"] if r.status_code == 200 else []
        return next((i for i in items if i["event_id"] == event_id), None)

    return await eventually(probe, f"the explanation of {event_id}")


async def membership(c: httpx.AsyncClient, profile_id: str, jid: str) -> dict[str, Any] | None:
    r = await c.get(f"/v1/profiles/{profile_id}")
    journeys = r.json().get("journeys", []) if r.status_code == 200 else []
    return next((m for m in journeys if m["journey_id"] == jid), None)


async def at_step(
    c: httpx.AsyncClient, profile_id: str, jid: str, step: str, state: str = "active"
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        m = await membership(c, profile_id, jid)
        return m if m and m["step"] == step and m["state"] == state else None

    return await eventually(probe, f"{profile_id} {state} at {step}")


async def timeline(c: httpx.AsyncClient, profile_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await c.get(f"/v1/profiles/{profile_id}/timeline")).json()[
        "items"
    ]
    return items


async def clock_now(c: httpx.AsyncClient) -> datetime:
    return datetime.fromisoformat((await c.get("/v1/admin/clock")).json()["now"])


async def advance(c: httpx.AsyncClient, duration: str) -> None:
    r = await c.post("/v1/admin/clock", json={"advance": duration})
    assert r.status_code == 200, r.text


async def set_clock(c: httpx.AsyncClient, at: datetime) -> None:
    r = await c.post("/v1/admin/clock", json={"set": at.isoformat()})
    assert r.status_code == 200, r.text


CART_ITEMS = [{"name": "Red kettle", "qty": 1}, {"name": "Tea sampler", "qty": 3}]
CART_REMINDER = {
    "channel": "email",
    "subject": "{{ profile.first_name }}, your cart is waiting",
    # ``items`` is also a dict method's name: the template must still see the key.
    "body": "{% for item in event.properties.cart.items %}"
    "* {{ item.qty }} x {{ item.name }}\n{% endfor %}Total {{ event.properties.cart.total }}",
}


async def test_abandoned_cart_reminds_lists_items_and_respects_goal_and_cooldown(
    virtual: Stack, box: Mailbox
) -> None:
    ws = await new_workspace(virtual)
    async with ws.client() as c:
        smtp = ("smtp", {"host": "127.0.0.1", "port": box.port, "from": "shop@example.com"})
        jid = await publish_scenario(
            c, "abandoned-cart", {"smtp": smtp}, {"cart-reminder": CART_REMINDER}
        )
        traits = {"email": "sam@example.com", "first_name": "Sam"}
        empty = await post_event(c, "sam", "cart_add", traits=traits,
                                 properties={"cart": {"total": 0, "items": []}})  # fmt: skip
        refused = await explained(c, "sam", jid, empty)
        assert refused["outcome"] == "no_match"
        assert any("cart.total" in reason for reason in refused["reasons"]), refused
        assert await membership(c, "sam", jid) is None

        cart = {"total": 57.5, "items": CART_ITEMS}
        await post_event(c, "sam", "cart_add", properties={"cart": cart})
        await post_event(c, "bea", "cart_add", properties={"cart": cart},
                         traits={"email": "bea@example.com", "first_name": "Bea"})  # fmt: skip
        await at_step(c, "sam", jid, "wait-3h")
        await at_step(c, "bea", jid, "wait-3h")
        await post_event(c, "bea", "purchase", properties={"order": "o-1"})
        bea = await at_step(c, "bea", jid, "wait-3h", state="left")
        assert bea["outcome"] == "goal"

        await advance(c, "PT2H59M")
        assert box.messages == []
        await advance(c, "PT1M")

        async def delivered() -> bool:
            return bool(box.messages)

        await eventually(delivered, "the cart reminder")
        (mail,) = box.messages
        assert box.envelopes[0][1] == ["sam@example.com"]
        assert mail["Subject"] == "Sam, your cart is waiting"
        assert mail.get_content().strip().splitlines() == [
            "* 1 x Red kettle", "* 3 x Tea sampler", "Total 57.5"]  # fmt: skip
        assert not any(e["kind"] == "activation" for e in await timeline(c, "bea"))
        assert (await c.get("/v1/deliveries", params={"profile_id": "bea"})).json()["items"] == []

        # The reminder sent, Sam stays in the stage until the purchase meets the goal.
        await at_step(c, "sam", jid, "cart-email")
        await post_event(c, "sam", "purchase")
        await at_step(c, "sam", jid, "cart-email", state="left")
        too_soon = await post_event(c, "sam", "cart_add", properties={"cart": cart})
        cooling = await explained(c, "sam", jid, too_soon)
        assert cooling["outcome"] == "reentry_refused"
        assert any("cooldown" in reason for reason in cooling["reasons"]), cooling

        await advance(c, "PT24H")
        again = await post_event(c, "sam", "cart_add", properties={"cart": cart})
        assert (await explained(c, "sam", jid, again))["outcome"] == "entered"
        await at_step(c, "sam", jid, "wait-3h")
        entries = [e for e in await timeline(c, "sam") if e["kind"] == "entered"]
        assert [e["detail"]["entry"] for e in entries] == [1, 2]

        analytics = (await c.get(f"/v1/journeys/{jid}/analytics")).json()
        assert analytics["entered"] == 3
        assert analytics["active"] == 1
        assert analytics["exits"]["goal"] == 2
        assert analytics["goal"]["reached"] == 2
        assert analytics["activations"]["sent"] == 1


def next_nine(now: datetime, zone: str) -> datetime:
    """The first 09:00 wall-clock time in ``zone`` at or after ``now``."""
    local = now.astimezone(ZoneInfo(zone))
    nine = local.replace(hour=9, minute=0, second=0, microsecond=0)
    if nine < local:
        nine = (local + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    return nine.astimezone(UTC)


def entries_of(items: list[dict[str, Any]], kind: str, step: str) -> list[dict[str, Any]]:
    return [e for e in items if e["kind"] == kind and e.get("step_id") == step]


async def test_three_stage_onboarding_moves_by_milestones_waits_for_local_nine_and_splits(
    virtual: Stack, box: Mailbox
) -> None:
    sink = HttpSink()
    ws = await new_workspace(virtual)
    async with serving(sink.app()) as sink_url, ws.client() as c:
        smtp = ("smtp", {"host": "127.0.0.1", "port": box.port, "from": "shop@example.com"})
        templates = {
            "tips": {"channel": "email", "subject": "Tips",
                     "body": "Tips for {{ profile.first_name }}"},
            "browse": {"channel": "email", "subject": "Still looking?", "body": "Come back"},
            "vip": {"channel": "push", "body": "VIP picks for {{ profile.first_name }}"},
            "cart-sms": {"channel": "sms", "body": "Your cart, {{ profile.first_name }}"},
        }  # fmt: skip
        jid = await publish_scenario(c, "three-stage", {
            "smtp": smtp,
            "push": ("push_http", {"url": f"{sink_url}/send"}),
            "sms": ("sms_http", {"url": f"{sink_url}/send"})}, templates)  # fmt: skip

        # Dan has no timezone: the workspace default, UTC. He stays behind in Registered.
        zones = {"ana": "Asia/Tokyo", "ben": "America/New_York", "cleo": "Asia/Tokyo",
                 "dan": "UTC"}  # fmt: skip
        for who, zone in zones.items():
            traits = {"email": f"{who}@example.com", "first_name": who, "timezone": zone,
                      "push_token": f"tok-{who}", "phone": f"+1-{who}"}  # fmt: skip
            if who == "ana":
                traits["tier"] = "vip"
            if who == "dan":
                del traits["timezone"]
            await post_event(c, who, "account_created", traits=traits)
        for who in zones:
            await at_step(c, who, jid, "wait-tomorrow-9")
        # Unsubscribing ends Browsing, not Registered.
        kept = await post_event(c, "dan", "unsubscribe")
        assert (await explained(c, "dan", jid, kept))["outcome"] == "no_match"
        now = await clock_now(c)
        due = {who: next_nine(now, zone) for who, zone in zones.items()}
        for who in zones:
            (waiting,) = entries_of(await timeline(c, who), "waiting", "wait-tomorrow-9")
            assert datetime.fromisoformat(waiting["detail"]["due_at"]) == due[who]

        def mailed() -> set[str]:
            return {to for _from, tos in box.envelopes for to in tos}

        for at in sorted(set(due.values())):
            await set_clock(c, at - timedelta(minutes=1))
            assert mailed() == {f"{w}@example.com" for w, d in due.items() if d < at}
            await set_clock(c, at)
            expected = {f"{w}@example.com" for w, d in due.items() if d <= at}

            async def tips_out(expected: set[str] = expected) -> bool:
                return mailed() == expected

            await eventually(tips_out, f"the tips emails due at {at}")
        for who in zones:
            (sent,) = entries_of(await timeline(c, who), "activation", "tips-email")
            assert datetime.fromisoformat(sent["at"]) == due[who]
            await at_step(c, who, jid, "tips-email")

        # Browsing: the VIP gets a push at once, the others wait two days for an email.
        for who in ("ana", "ben", "cleo"):
            await post_event(c, who, "product_viewed")
        # After the push the VIP's path joins the split's next step: the end of the flow.
        await at_step(c, "ana", jid, "end-browsing")
        await at_step(c, "ben", jid, "wait-2d")
        await at_step(c, "cleo", jid, "wait-2d")

        async def pushed() -> bool:
            return bool(sink.received)

        await eventually(pushed, "the VIP push")
        assert [(m["to"], m["body"]) for m in sink.received] == [("tok-ana", "VIP picks for ana")]
        await post_event(c, "cleo", "unsubscribe")
        cleo = await at_step(c, "cleo", jid, "wait-2d", state="left")
        assert (cleo["stage"], cleo["outcome"]) == ("Browsing", "exited")
        await advance(c, "P2D")

        async def browse_email() -> bool:
            return len(box.messages) == 5

        await eventually(browse_email, "ben's browsing email")
        assert box.messages[-1]["Subject"] == "Still looking?"
        assert box.envelopes[-1][1] == ["ben@example.com"]
        assert [m for m in box.messages if m["To"] == "cleo@example.com"][1:] == []

        # Carting: a crowd walks all three stages at once and meets the random holdout. The
        # clock stands on a 09:00 above, when a time-of-day wait goes on at once: move off it.
        await advance(c, "PT1H")
        crowd = [f"p{i:02d}" for i in range(20)]
        for who in crowd:
            await post_event(c, who, "account_created",
                             traits={"phone": f"+1-{who}", "first_name": who})  # fmt: skip
            await post_event(c, who, "product_viewed")
            await post_event(c, who, "cart_add")
        carting = ["ana", "ben", *crowd]
        for who in ("ana", "ben"):
            await post_event(c, who, "cart_add")
        paths: dict[str, str] = {}
        for who in carting:

            async def split(who: str = who) -> str | None:
                taken = entries_of(await timeline(c, who), "branch_taken", "holdout")
                return taken[0]["detail"]["path"] if taken else None

            paths[who] = await eventually(split, f"{who}'s holdout split")
        texted = {who for who, path in paths.items() if path == "path 0"}
        held = {who for who, path in paths.items() if path == "path 1"}
        assert texted | held == set(carting)

        async def texts() -> bool:
            return len(sink.received) == 1 + len(texted)

        await eventually(texts, "a text to everyone not held out")
        assert {m["to"] for m in sink.received[1:]} == {f"+1-{who}" for who in texted}
        for who in carting:
            texts_to = entries_of(await timeline(c, who), "activation", "cart-sms")
            assert len(texts_to) == (who in texted), (who, paths[who])
        for who in crowd:
            kinds = [(e["kind"], e.get("step_id")) for e in await timeline(c, who)]
            assert ("activation", "tips-email") not in kinds
            assert ("activation", "browse-email") not in kinds

        await post_event(c, "p00", "purchase")
        last = "cart-sms" if paths["p00"] == "path 0" else "holdout"
        assert (await at_step(c, "p00", jid, last, state="left"))["outcome"] == "goal"

        # Dan outstays Registered's seven days.
        (entered,) = [e for e in await timeline(c, "dan") if e["kind"] == "entered"]
        await set_clock(c, datetime.fromisoformat(entered["at"]) + timedelta(days=7, minutes=1))
        dan = await at_step(c, "dan", jid, "tips-email", state="left")
        assert (dan["stage"], dan["outcome"]) == ("Registered", "stale")

        async def settled() -> dict[str, Any] | None:
            a: dict[str, Any] = (await c.get(f"/v1/journeys/{jid}/analytics")).json()
            return a if a["activations"]["pending"] == 0 else None

        analytics = await eventually(settled, "every activation to settle")
        stages = {s["name"]: s for s in analytics["stages"]}
        steps = {s["id"]: s for stage in analytics["stages"] for s in stage["steps"]}
        assert analytics["entered"] == 24
        assert analytics["exits"] == {"goal": 1, "exited": 1, "stale": 1, "jumped": 0, "stopped": 0}
        assert analytics["goal"] == {"reached": 1, "percent": round(100 / 24, 2),
                                     "target_percent": 20, "target_met": False}  # fmt: skip
        assert analytics["active"] == 21
        assert [stages[n]["entered"] for n in ("Registered", "Browsing", "Carting")] == [24, 23, 22]
        assert [stages[n]["active"] for n in ("Registered", "Browsing", "Carting")] == [0, 0, 21]
        assert steps["holdout"]["entered"] == 22
        assert steps["cart-sms"]["entered"] == len(texted)
        assert steps["tips-email"]["entered"] == 4
        assert steps["vip-push"]["entered"] == 1
        assert steps["browse-email"]["entered"] == 1
        assert analytics["activations"]["sent"] == 4 + 1 + 1 + len(texted)


@pytest.mark.parametrize("name", example_names())
async def test_every_example_plays_as_its_script_says(virtual: Stack, name: str) -> None:
    """What `waypost demo` does, in a workspace that requires event triggers: the examples'
    triggers declared, the journey published, its events posted and the clock moved; every
    message the script expects arrives at the sinks, and no other."""
    ws = await new_workspace(virtual, require_event_triggers=True)
    lines: list[str] = []
    async with ws.client() as c, Sinks() as sinks:
        await demo.declare_triggers(c)
        ids = await demo.make_resources(c, demo.placeholders(demo.journey(name)), sinks, "t")
        jid = await demo.publish(c, name, ids, "t")
        played = await demo.play(c, name, "t", sinks, virtual=True, say=lines.append)
        assert played.stopped_at is None
        assert [e for e in played.expected if "optional" not in e], "it expects a message"

        async def settled() -> dict[str, int] | None:
            r = await c.get(f"/v1/journeys/{jid}/analytics")
            counts: dict[str, int] = r.json()["activations"]
            return counts if counts["pending"] == 0 and counts["sent"] == len(sinks.messages) \
                else None  # fmt: skip

        counts = await eventually(settled, f"every message of {name} to be delivered")
        assert counts["skipped"] == counts["failed"] == 0, counts
        missing, unexpected = demo.unmatched(sinks.messages, played.expected)
        assert (missing, unexpected) == ([], [])
