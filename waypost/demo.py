"""``waypost demo``: the example journeys of ``examples/`` played against a running system.

The demo starts local sinks (an SMTP server for email, one HTTP endpoint for SMS and push
providers) and prints every message as it arrives. Through the public API, with an admin
key, it declares the examples' event triggers, creates connectors pointing at the sinks and
the templates the journeys name, publishes each journey and posts the events of its script.
On a virtual clock (``waypost up --clock virtual``) it also moves time as the script says,
so a welcome email an hour away arrives a second later; on the real clock it says which
waits are left. The end-to-end tests play the same scripts with the same code.

Every name the demo creates carries a run suffix, so running it twice never collides with
the first run's journeys or profiles.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from waypost.embedded import free_port

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PLACEHOLDER = re.compile(r"\{\{(connector|template):([^}]+)\}\}")
CONNECTOR_TYPES = {"email": "smtp", "sms": "sms_http", "push": "push_http"}


# The order the demo tells them in, simplest first; any other example comes after.
ORDER = ("welcome", "abandoned-cart", "multichannel-cart", "three-stage")


def example_names() -> list[str]:
    """The example journeys, by file name (``welcome`` for ``welcome.journey.json``)."""
    names = [p.name.removesuffix(".journey.json") for p in EXAMPLES.glob("*.journey.json")]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def _read(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def journey(name: str) -> dict[str, Any]:
    """An example journey as written, with its ``{{connector:..}}`` / ``{{template:..}}``."""
    body: dict[str, Any] = _read(f"{name}.journey.json")
    return body


def script(name: str) -> dict[str, Any]:
    """The events that drive an example: ``story``, ``script`` (``post`` an event or
    ``advance`` the clock by a duration) and the messages to ``expect``."""
    found: dict[str, Any] = _read(f"{name}.events.json")
    return found


def templates() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = _read("templates.json")
    return found


def event_triggers() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = _read("event-triggers.json")
    return found


def placeholders(body: dict[str, Any]) -> set[tuple[str, str]]:
    """Every ``(kind, name)`` a journey's placeholders name."""
    return {(m[1], m[2]) for m in PLACEHOLDER.finditer(json.dumps(body))}


def substitute(body: dict[str, Any], ids: dict[tuple[str, str], str]) -> dict[str, Any]:
    """The journey with each placeholder replaced by the id of what it names."""
    text = PLACEHOLDER.sub(lambda m: ids[(m[1], m[2])], json.dumps(body))
    concrete: dict[str, Any] = json.loads(text)
    return concrete


# --- the sinks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One message as a sink received it."""

    channel: str
    to: str
    subject: str | None
    body: str

    def matches(self, expected: dict[str, Any]) -> bool:
        """Whether this is the message ``expected`` describes (``optional`` says why it
        may not come, and is not compared)."""
        wanted = {k: v for k, v in expected.items() if k != "optional"}
        return all(getattr(self, key) == value for key, value in wanted.items())

    def line(self) -> str:
        head = f"{self.channel:<5} -> {self.to}"
        return f"{head}  {self.subject!r}" if self.subject else f"{head}  {self.body!r}"


@dataclass
class Sinks:
    """An SMTP server and an HTTP provider endpoint on loopback, keeping what arrives."""

    on_message: Callable[[Message], None] = lambda message: None
    messages: list[Message] = field(default_factory=list)
    smtp_port: int = 0
    http_url: str = ""

    def _keep(self, message: Message) -> None:
        self.messages.append(message)
        self.on_message(message)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        part = parsed.get_body(("plain", "html"))
        text = part.get_content().strip() if part is not None else ""
        for to in envelope.rcpt_tos:
            self._keep(Message("email", to, str(parsed["Subject"]), text))
        return "250 Message accepted for delivery"

    async def _provider(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._keep(
            Message(request.match_info["channel"], str(body.get("to")), None, body.get("body", ""))
        )
        return web.json_response({"ok": True})

    async def __aenter__(self) -> Sinks:
        self.smtp_port = free_port()
        self._smtp = Controller(self, hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        app = web.Application()
        app.router.add_post("/{channel}", self._provider)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.http_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
        self._smtp.stop()


# --- loading and playing ----------------------------------------------------------------


class DemoError(Exception):
    """The API refused something the demo needs; the message says what and why."""


def _check(response: httpx.Response, *ok: int) -> dict[str, Any]:
    if response.status_code not in ok:
        method, url = response.request.method, response.request.url.path
        raise DemoError(f"{method} {url} answered {response.status_code}: {response.text}")
    answer: dict[str, Any] = response.json() if response.content else {}
    return answer


async def declare_triggers(client: httpx.AsyncClient) -> None:
    """Publish the examples' event triggers (updated in place when they exist)."""
    for trigger in event_triggers():
        r = await client.post("/v1/event-triggers", json=trigger)
        if r.status_code == 409:
            r = await client.put(f"/v1/event-triggers/{trigger['name']}", json=trigger)
        _check(r, 200, 201)


async def make_resources(
    client: httpx.AsyncClient, wanted: set[tuple[str, str]], sinks: Sinks, suffix: str
) -> dict[tuple[str, str], str]:
    """Connectors to the sinks and ready templates for every placeholder; their ids."""
    channels = {name: spec["channel"] for name, spec in templates().items()}
    connector_channel = {"smtp": "email", "sms": "sms", "push": "push"}
    ids: dict[tuple[str, str], str] = {}
    for kind, name in sorted(wanted):
        if kind == "connector":
            channel = connector_channel[name]
            config: dict[str, Any] = (
                {"host": "127.0.0.1", "port": sinks.smtp_port, "from": "demo@example.com"}
                if channel == "email"
                else {"url": f"{sinks.http_url}/{channel}"}
            )
            payload = {"name": f"{name} {suffix}", "type": CONNECTOR_TYPES[channel],
                       "config": config}  # fmt: skip
            ids[(kind, name)] = _check(await client.post("/v1/connectors", json=payload), 201)["id"]
        else:
            spec = {"name": f"{name} {suffix}", "status": "ready", **templates()[name]}
            assert spec["channel"] == channels[name]
            ids[(kind, name)] = _check(await client.post("/v1/templates", json=spec), 201)["id"]
    return ids


async def publish(
    client: httpx.AsyncClient, name: str, ids: dict[tuple[str, str], str], suffix: str
) -> str:
    """Create the example journey (named with the run suffix) and publish it; its id."""
    body = substitute(journey(name), ids)
    body["name"] = f"{body['name']} ({suffix})"
    created = _check(await client.post("/v1/journeys", json=body), 201)
    _check(await client.post(f"/v1/journeys/{created['id']}/publish"), 200)
    return str(created["id"])


Say = Callable[[str], None]


async def poll(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float) -> None:
    """Ask ``check`` again every tenth of a second until it holds; DemoError after
    ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            raise DemoError(f"still waiting after {timeout_s:.0f}s for {what}")
        await asyncio.sleep(0.1)


async def applied(client: httpx.AsyncClient, profile_id: str, event_id: str) -> bool:
    """Whether the runtime has applied an event: its explanation is there."""
    r = await client.get(f"/v1/profiles/{profile_id}/explain")
    return r.status_code == 200 and any(i["event_id"] == event_id for i in r.json()["items"])


def unmatched(
    messages: list[Message], wanted: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[Message]]:
    """The expected messages without an arrival (optional ones left out) and the arrivals
    nothing expected; each arrival meets one expectation, required ones first."""
    left = list(messages)
    missing = []
    for want in sorted(wanted, key=lambda w: "optional" in w):
        match = next((m for m in left if m.matches(want)), None)
        if match is not None:
            left.remove(match)
        elif "optional" not in want:
            missing.append(want)
    return missing, left


def all_arrived(messages: list[Message], wanted: list[dict[str, Any]]) -> bool:
    """Whether every expected message that is not optional has arrived."""
    return not unmatched(messages, wanted)[0]


def arrival(sinks: Sinks, wanted: list[dict[str, Any]]) -> Callable[[], Awaitable[bool]]:
    async def arrived() -> bool:
        return all_arrived(sinks.messages, wanted)

    return arrived


@dataclass
class Played:
    """What a script did: the messages it expected, and whether it ran to its end (on a
    real clock it stops at the first move of time)."""

    expected: list[dict[str, Any]] = field(default_factory=list)
    stopped_at: str | None = None


async def play(
    client: httpx.AsyncClient,
    name: str,
    suffix: str,
    sinks: Sinks,
    *,
    virtual: bool,
    say: Say,
    timeout_s: float = 60.0,
) -> Played:
    """Play an example's script: ``post`` an event (its profile id and event id carry the
    run suffix), ``advance`` the virtual clock once every event posted so far is applied (so
    what they start is timed from before the move), ``expect`` messages (waited for, with
    every one expected before; an ``optional`` one, such as a message a random holdout may
    keep back, is not waited for). It ends once every event it posted is applied."""
    played = Played()
    posted: list[tuple[str, str]] = []
    for n, item in enumerate(script(name)["script"]):
        if "post" in item:
            profile_id = f"{item['post']['profile_id']}-{suffix}"
            event = {"event_id": f"{name}-{n}-{suffix}", **item["post"], "profile_id": profile_id}
            _check(await client.post("/v1/events", json=event), 202)
            posted.append((profile_id, event["event_id"]))
            say(f"event {event['name']} for {item['post']['profile_id']}")
        elif "advance" in item:
            if not virtual:
                played.stopped_at = item["advance"]
                return played
            await _all_applied(client, posted, timeout_s)
            _check(await client.post("/v1/admin/clock", json={"advance": item["advance"]}), 200)
            say(f"clock moved on by {item['advance']}")
        else:
            played.expected += item["expect"]
            await poll(
                arrival(sinks, list(played.expected)),
                f"{len(item['expect'])} message(s) of {name}",
                timeout_s,
            )
    await _all_applied(client, posted, timeout_s)
    return played


async def _all_applied(
    client: httpx.AsyncClient, posted: list[tuple[str, str]], timeout_s: float
) -> None:
    for profile_id, event_id in posted:
        check = functools.partial(applied, client, profile_id, event_id)
        await poll(check, f"event {event_id} to be applied", timeout_s)


async def run(url: str, key: str, names: list[str], timeout_s: float, say: Say) -> int:
    """The whole demo; 0 when every expected message arrived in time."""
    suffix = uuid.uuid4().hex[:6]
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=30.0) as client,
        Sinks(on_message=lambda m: say(f"  received {m.line()}")) as sinks,
    ):
        me = _check(await client.get("/v1/me"), 200)
        if me["role"] != "admin":
            raise DemoError(f"the demo needs an admin key; this one is {me['role']}")
        virtual = me["clock"] == "virtual"
        say(f"sinks: SMTP on 127.0.0.1:{sinks.smtp_port}, SMS and push at {sinks.http_url}")
        await declare_triggers(client)
        wanted = set().union(*(placeholders(journey(n)) for n in names))
        ids = await make_resources(client, wanted, sinks, suffix)
        journeys = {n: await publish(client, n, ids, suffix) for n in names}
        say(f"published {len(journeys)} journeys (run {suffix}): " + ", ".join(journeys))
        stopped = []
        for name in names:
            say(f"--- {name}: {script(name)['story']}")
            played = await play(
                client, name, suffix, sinks, virtual=virtual, say=say, timeout_s=timeout_s
            )
            if played.stopped_at:
                stopped.append(f"{name} (next: wait {played.stopped_at})")
        if stopped:
            say("on the real clock these stop where time has to pass: " + ", ".join(stopped))
            say('start Waypost with `make up ARGS="--clock virtual"` to play them to the end')
        say(f"{len(sinks.messages)} messages received; the journeys are in {url}/console")
        return 0
