"""The examples of ``examples/`` hold together: every journey has its script, every
placeholder something the demo can create, every event a declared trigger; and the demo's
matching of arrivals against expectations counts each message once."""

from __future__ import annotations

from typing import Any

import pytest

from shared.journey import JourneyBody
from waypost import demo
from waypost.demo import Message

NAMES = demo.example_names()


def test_the_examples_are_in_the_repository() -> None:
    assert NAMES == [
        "welcome", "abandoned-cart", "multichannel-cart", "three-stage", "first-order",
    ]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_each_journey_has_a_script_and_what_it_names(name: str) -> None:
    body = demo.journey(name)
    wanted = demo.placeholders(body)
    templates = demo.templates()
    for kind, what in wanted:
        if kind == "template":
            assert what in templates, f"{name} names template {what}"
        else:
            assert what in {"smtp", "sms", "push"}, f"{name} names connector {what}"
    concrete = demo.substitute(body, {key: f"{key[0]}-{key[1]}" for key in wanted})
    JourneyBody.model_validate(concrete)
    story = demo.script(name)
    assert story["story"]
    kinds = [next(iter(item)) for item in story["script"]]
    assert set(kinds) <= {"post", "advance", "expect"}
    assert "expect" in kinds


def _events(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["event"]} if isinstance(node.get("event"), str) else set()
        return found.union(*(_events(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_events(v) for v in node))
    return set()


BUILT_IN = {"message_sent", "message_failed", "email_opened", "email_clicked", "profile_updated"}


@pytest.mark.parametrize("name", NAMES)
def test_every_event_of_an_example_is_declared(name: str) -> None:
    declared = {t["name"] for t in demo.event_triggers()}
    assert _events(demo.journey(name)) - BUILT_IN <= declared
    posted = {i["post"]["name"] for i in demo.script(name)["script"] if "post" in i}
    assert posted <= declared


def test_templates_are_one_per_channel_name() -> None:
    for name, spec in demo.templates().items():
        assert spec["channel"] in {"email", "sms", "push"}, name
        assert ("subject" in spec) == (spec["channel"] == "email"), name


def mail(to: str, subject: str = "Hi") -> Message:
    return Message("email", to, subject, "")


def test_each_arrival_meets_one_expectation() -> None:
    want: list[dict[str, Any]] = [{"channel": "email", "to": "a@x"}] * 2
    assert not demo.all_arrived([mail("a@x")], want)
    assert demo.all_arrived([mail("a@x"), mail("a@x")], want)
    assert demo.unmatched([mail("a@x"), mail("b@x")], want[:1]) == ([], [mail("b@x")])


def test_optional_messages_are_not_waited_for_but_are_allowed() -> None:
    want = [{"channel": "email", "to": "a@x"}, {"channel": "sms", "to": "+1", "optional": "10%"}]
    assert demo.all_arrived([mail("a@x")], want)
    sms = Message("sms", "+1", None, "text")
    assert demo.unmatched([sms, mail("a@x")], want) == ([], [])
    assert demo.unmatched([mail("b@x")], want) == ([want[0]], [mail("b@x")])
    assert demo.unmatched([mail("a@x", "Other")], [{"to": "a@x", "subject": "Hi"}])[0]


def test_demo_names_an_unknown_example_and_stops() -> None:
    from typer.testing import CliRunner

    from waypost.cli import app

    result = CliRunner().invoke(app, ["demo", "--key", "wp_x", "--journey", "nope"])
    assert result.exit_code == 2
    assert "no example named nope" in result.output
