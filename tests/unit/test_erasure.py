"""The gateway's side of an erasure and of tracking, without servers: what a malformed
erasure message is, and the event ids that make repeated opens and clicks one event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from nats.aio.msg import Msg

from gateway.erasure import parse
from gateway.tracking import _event_id
from shared.bus import Poison
from shared.erasure import ProfileErased, profile_key
from shared.tracking import Mark

ERASED = ProfileErased(
    workspace_id="ws", profile_id="ada", erased_at=datetime(2026, 12, 4, tzinfo=UTC)
)


def _msg(subject: str, data: bytes) -> Msg:
    return Msg(_client=None, subject=subject, data=data)


def test_an_erasure_is_read_from_its_workspace_subject_only() -> None:
    assert parse(_msg(ERASED.subject, ERASED.model_dump_json().encode())) == ERASED
    with pytest.raises(Poison, match="not that of"):
        parse(_msg("activations.erase.other", ERASED.model_dump_json().encode()))
    for junk in (b"", b"{", b"[]", b'{"workspace_id": "ws"}', "é".encode("latin-1")):
        with pytest.raises(Poison, match="not a profile erasure"):
            parse(_msg(ERASED.subject, junk))


def test_an_erasure_keeps_a_digest_not_the_id() -> None:
    key = profile_key("ada@example.com")
    assert len(key) == 32
    assert b"ada" not in key
    assert key == profile_key("ada@example.com") != profile_key("bob@example.com")


def test_one_open_per_message_and_one_click_per_link() -> None:
    a = Mark("ws", "ada", "j1", "e1", "act_1", issued_at=1)
    b = Mark("ws", "ada", "j1", "e1", "act_2", issued_at=1)
    assert _event_id(a, "email_opened") == _event_id(a, "email_opened") == "act_1:email_opened"
    assert _event_id(a, "email_opened") != _event_id(b, "email_opened")
    one, other = "https://shop.example/a", "https://shop.example/b"
    assert _event_id(a, "email_clicked", one) == _event_id(a, "email_clicked", one)
    assert _event_id(a, "email_clicked", one) != _event_id(a, "email_clicked", other)
    long = Mark("ws", "ada", "j1", "e1", "act_" + "x" * 300, issued_at=1)
    assert len(_event_id(long, "email_clicked", one)) <= 200
    assert _event_id(long, "email_clicked", one) == _event_id(long, "email_clicked", one)
