"""A TCP proxy in front of PostgreSQL that counts the round trips its clients make.

A round trip of the PostgreSQL protocol ends with a client message the server must answer
before the client goes on: ``Sync`` (the extended protocol: prepare, bind and execute) or
``Query`` (the simple protocol: BEGIN, COMMIT, multi-statement text). Counting those two
message types counts round trips whatever the driver does above the wire (statement
caches, pings, resets), which is what a change to pooling or batching must be judged by.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

# Requests sent before the startup message, without a type byte.
_PRE_STARTUP = {80877103, 80877104}  # SSLRequest, GSSENCRequest
_ROUND_TRIP_ENDS = {ord("S"), ord("Q")}


@dataclass
class CountingProxy:
    port: int = 0
    round_trips: int = 0
    statements: list[bytes] = field(default_factory=list)
    upstream_ports: set[int] = field(default_factory=set)
    open_connections: int = 0

    def url(self, database_url: str) -> str:
        """``database_url`` pointed at the proxy."""
        parsed = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return parsed.render_as_string(hide_password=False)

    def reset(self) -> None:
        self.round_trips = 0
        self.statements.clear()


async def _untyped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Forward one message without a type byte; whether it was the startup message."""
    head = await reader.readexactly(8)
    length, code = struct.unpack("!ii", head)
    writer.write(head + await reader.readexactly(length - 8))
    return code not in _PRE_STARTUP


async def _client_to_server(
    proxy: CountingProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while not await _untyped(reader, writer):
        pass
    while True:
        head = await reader.readexactly(5)
        kind, length = head[0], struct.unpack("!i", head[1:])[0]
        body = await reader.readexactly(length - 4)
        if kind in _ROUND_TRIP_ENDS:
            proxy.round_trips += 1
        if kind == ord("Q"):
            proxy.statements.append(body.rstrip(b"\0"))
        writer.write(head + body)


async def _server_to_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


@asynccontextmanager
async def counting_proxy(database_url: str) -> AsyncIterator[CountingProxy]:
    """A proxy to the server of ``database_url``, on a free loopback port."""
    target = make_url(database_url)
    proxy = CountingProxy()
    tasks: set[asyncio.Task[None]] = set()

    async def serve(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection(target.host, target.port or 5432)
        port = s_writer.get_extra_info("sockname")[1]
        proxy.upstream_ports.add(port)
        proxy.open_connections += 1
        pumps = [
            asyncio.create_task(_client_to_server(proxy, c_reader, s_writer)),
            asyncio.create_task(_server_to_client(s_reader, c_writer)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (s_writer, c_writer):
                w.close()
            proxy.open_connections -= 1
            proxy.upstream_ports.discard(port)

    def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(serve(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(track, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await server.wait_closed()
