"""The providers the activator delivers to, inside the bench process: an HTTP endpoint and
an SMTP server, each on its own thread so the load generator cannot delay an arrival's
timestamp, each keeping (arrival time, what arrived) for the figures."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from waypost.embedded import free_port

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


class HttpSink:
    """Answers every request with 200 and keeps (time.time() on arrival, body)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: list[tuple[float, bytes]] = []
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/send"

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[writer] = task
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while request_line := await reader.readline():
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                if request_line.startswith(b"POST"):
                    self.arrivals.append((time.time(), body))
                writer.write(OK)
        writer.close()
        self._connections.pop(writer, None)

    async def _run(self, started: threading.Event, stop: asyncio.Event) -> None:
        server = await asyncio.start_server(self._serve_connection, "127.0.0.1", self.port)
        started.set()
        async with server:
            await stop.wait()
            open_now = dict(self._connections)
            for writer in open_now:
                writer.close()  # the reader sees the end of its stream and returns
            await asyncio.gather(*open_now.values(), return_exceptions=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[HttpSink]:
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        started = threading.Event()
        thread = threading.Thread(
            target=loop.run_until_complete, args=(self._run(started, stop),), daemon=True
        )
        thread.start()
        if not started.wait(10):
            raise RuntimeError("the HTTP sink did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()


class Mailbox:
    """aiosmtpd handler that accepts every message and keeps (arrival time, raw bytes)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: list[tuple[float, bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content or b""
        self.arrivals.append((time.time(), bytes(content)))
        return "250 Message accepted for delivery"

    @contextlib.contextmanager
    def running(self) -> Iterator[Mailbox]:
        controller = Controller(self, hostname="127.0.0.1", port=self.port)
        controller.start()
        try:
            yield self
        finally:
            controller.stop()
