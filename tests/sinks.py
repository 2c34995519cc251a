"""Real peers for delivery tests: an SMTP server that keeps what it accepts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Request

from waypost.embedded import free_port


@dataclass
class Mailbox:
    """aiosmtpd handler keeping every accepted message; ``rcpt_reply`` refuses recipients."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    rcpt_reply: str | None = None
    peers: list[object] = field(default_factory=list)  # the connection each message came on

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        self.messages.append(parsed)
        self.peers.append(session.peer)
        return "250 Message accepted for delivery"


def run_mailbox(**smtp_options: Any) -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port, **smtp_options)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class HttpSink:
    """A provider endpoint that keeps every JSON body posted to ``/send``."""

    received: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/send")
        async def send(request: Request) -> dict[str, bool]:
            self.received.append(await request.json())
            return {"ok": True}

        return app
