from __future__ import annotations

import pytest

from gateway.guards import _has_nul

PLAIN = {"raw_path": b"/v1/folders", "query_string": b"", "headers": []}


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (rb'{"a": "x"}', False),
        (rb'{"a": "\u0000"}', True),
        (rb'{"a": "\\u0000"}', False),  # an escaped backslash, then the text u0000
        (rb'{"a": "\\\u0000"}', True),
        (b'{"a": "\x00"}', True),
    ],
)
def test_nul_in_a_json_body(body: bytes, refused: bool) -> None:
    assert _has_nul(PLAIN, body) is refused


def test_nul_in_path_or_query() -> None:
    assert _has_nul({"raw_path": b"/v1/journeys/a%00", "query_string": b"", "headers": []}, b"")
    assert _has_nul(
        {"raw_path": b"/v1/journeys", "query_string": b"cursor=%00", "headers": []}, b""
    )


async def test_after_the_body_the_clients_own_messages_come_through() -> None:
    import asyncio

    from gateway.guards import InputGuardMiddleware

    client_gone = asyncio.Event()
    seen: list[str] = []

    async def client() -> dict[str, object]:
        if not seen:
            seen.append("body")
            return {"type": "http.request", "body": b'{"a": 1}', "more_body": False}
        await client_gone.wait()  # a real client stays until it goes
        return {"type": "http.disconnect"}

    async def app(scope: object, receive: object, send: object) -> None:
        first = await receive()  # type: ignore[operator]
        assert first["body"] == b'{"a": 1}'
        second = asyncio.ensure_future(receive())  # type: ignore[operator]
        await asyncio.sleep(0)
        assert not second.done()  # no invented disconnect while the client is there
        client_gone.set()
        assert (await second)["type"] == "http.disconnect"
        seen.append("done")

    async def send(message: object) -> None:
        pass

    scope = {"type": "http", "headers": [], "raw_path": b"/v1/x", "query_string": b""}
    await InputGuardMiddleware(app, max_bytes=1024)(scope, client, send)
    assert seen == ["body", "done"]
