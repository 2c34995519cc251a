"""Real deliveries: a local SMTP server, a local HTTP provider, and the connector test endpoint."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiohttp
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook, WebhookVerificationError

from services.activator.app import create_app
from services.activator.senders import (
    OutgoingMessage,
    PermanentDeliveryError,
    SmtpConnections,
    TransientDeliveryError,
    send,
)
from services.activator.settings import ActivatorSettings
from shared import http as shared_http
from shared.connectors import ConnectorType, parse_config
from tests.conftest import Servers
from tests.helpers import eventually, serving
from tests.sinks import Mailbox, run_mailbox
from tests.stack import SERVICE_TOKEN, service_headers
from waypost.embedded import free_port

# The peers here are on loopback: no destination guard (as with allow_private_connectors).
LOCAL = None
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"a very secret signing key").decode()


# --- a local SMTP server ----------------------------------------------------------------


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    yield from run_mailbox()


def check_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"shop", b"pa55")
    # handled=False: the server, not this callback, answers 535 to a failed attempt.
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth_mailbox() -> Iterator[Mailbox]:
    # Plain AUTH without TLS is only acceptable here because the server is on loopback.
    yield from run_mailbox(authenticator=check_login, auth_required=True, auth_require_tls=False)


def smtp_config(port: int, **extra: Any) -> Any:
    return parse_config(
        ConnectorType.SMTP,
        {"host": "127.0.0.1", "port": port, "from": "Shop <shop@example.com>", **extra},
    )


# --- a local HTTP provider --------------------------------------------------------------


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Sink:
    """Records requests; answers with ``replies`` in order, then 202."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    replies: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    verified: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def sink_app(sink: Sink) -> FastAPI:
    app = FastAPI()

    @app.post("/sms")
    async def provider(request: Request) -> Response:
        sink.requests.append(Recorded("/sms", dict(request.headers), await request.body()))
        status, headers = sink.replies.pop(0) if sink.replies else (202, {})
        return Response(b'{"detail":"as configured"}', status, headers, "application/json")

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        body = await request.body()
        sink.requests.append(Recorded("/hook", dict(request.headers), body))
        try:
            sink.verified.append(Webhook(WEBHOOK_SECRET).verify(body, dict(request.headers)))
        except WebhookVerificationError as exc:
            return Response(str(exc), 401)
        return Response(status_code=204)

    @app.post("/slow")
    async def slow() -> Response:
        await sink.release.wait()
        return Response(status_code=202)

    return app


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    state = Sink()
    async with serving(sink_app(state)) as url:
        state.url = url
        try:
            yield state
        finally:
            state.release.set()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with shared_http.session() as client:
        yield client


def outgoing(**changes: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "activation_id": "act-7f3a",
        "to": "ada@example.org",
        "subject": "Your cart misses you",
        "body": "Hi Ada, 2 items wait for you.",
        "html": None,
        "metadata": {"journey_id": "j-1", "step_id": "s-2"},
    }
    return OutgoingMessage(**{**values, **changes})


# --- SMTP -------------------------------------------------------------------------------


async def test_email_is_multipart_text_and_html_with_a_stable_message_id(
    mailbox: Mailbox, http: aiohttp.ClientSession
) -> None:
    message = outgoing(html="<p>Hi <b>Ada</b>, 2 items wait for you.</p>")
    config = smtp_config(mailbox.port)
    first = await send(ConnectorType.SMTP, config, message, http, LOCAL)
    await send(ConnectorType.SMTP, config, message, http, LOCAL)

    await eventually(lambda: _ready(len(mailbox.messages) == 2), "two emails")
    email = mailbox.messages[0]
    assert email["Subject"] == "Your cart misses you"
    assert email["From"] == "Shop <shop@example.com>"
    assert email["To"] == "ada@example.org"
    assert email["Message-ID"] == "<act-7f3a@example.com>" == first.message_id
    assert mailbox.messages[1]["Message-ID"] == email["Message-ID"]
    assert email.get_content_type() == "multipart/alternative"
    text = email.get_body(("plain",))
    html = email.get_body(("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert text.get_content().strip() == "Hi Ada, 2 items wait for you."
    assert html.get_content().strip() == "<p>Hi <b>Ada</b>, 2 items wait for you.</p>"
    assert mailbox.envelopes[0] == ("shop@example.com", ["ada@example.org"])


async def test_emails_of_one_connector_share_one_kept_session(
    mailbox: Mailbox, http: aiohttp.ClientSession
) -> None:
    sessions = SmtpConnections()
    config = smtp_config(mailbox.port)
    try:
        for n in range(5):
            message = outgoing(activation_id=f"act-{n}")
            await send(ConnectorType.SMTP, config, message, http, LOCAL, sessions)
        await eventually(lambda: _ready(len(mailbox.messages) == 5), "five emails")
        assert len(set(mailbox.peers)) == 1  # one connection, one login, five messages
        assert [m["Message-ID"] for m in mailbox.messages] == [
            f"<act-{n}@example.com>" for n in range(5)
        ]
    finally:
        await sessions.close()


async def test_a_kept_session_the_server_closed_is_replaced_without_losing_the_message(
    http: aiohttp.ClientSession,
) -> None:
    sessions = SmtpConnections()
    box = Mailbox(port=free_port())
    config = smtp_config(box.port)
    server = Controller(box, hostname="127.0.0.1", port=box.port)
    server.start()
    try:
        await send(ConnectorType.SMTP, config, outgoing(activation_id="a1"), http, LOCAL, sessions)
        server.stop()  # the server goes away, and the session kept open with it
        server = Controller(box, hostname="127.0.0.1", port=box.port)
        server.start()
        await send(ConnectorType.SMTP, config, outgoing(activation_id="a2"), http, LOCAL, sessions)
        await eventually(lambda: _ready(len(box.messages) == 2), "both emails")
        assert len(set(box.peers)) == 2
    finally:
        server.stop()
        await sessions.close()


async def test_non_ascii_subject_and_bodies_arrive_intact(
    mailbox: Mailbox, http: aiohttp.ClientSession
) -> None:
    message = outgoing(subject="Grüße, Zoë ✓", body="Hallo Jürgen — 2 Artikel",
                       html="<p>Hallo <b>Jürgen</b> — ✓</p>")  # fmt: skip
    await send(ConnectorType.SMTP, smtp_config(mailbox.port), message, http, LOCAL)
    await eventually(lambda: _ready(mailbox.messages), "the email")
    email = mailbox.messages[0]
    assert email["Subject"] == "Grüße, Zoë ✓"
    text, html = email.get_body(("plain",)), email.get_body(("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert text.get_content().strip() == "Hallo Jürgen — 2 Artikel"
    assert html.get_content().strip() == "<p>Hallo <b>Jürgen</b> — ✓</p>"


async def test_a_line_break_in_the_subject_is_refused_before_sending(
    mailbox: Mailbox, http: aiohttp.ClientSession
) -> None:
    message = outgoing(subject="Hi\r\nBcc: all@example.org")
    with pytest.raises(PermanentDeliveryError, match="line break"):
        await send(ConnectorType.SMTP, smtp_config(mailbox.port), message, http, LOCAL)
    assert mailbox.messages == []


async def test_email_without_html_is_plain_text(
    mailbox: Mailbox, http: aiohttp.ClientSession
) -> None:
    await send(ConnectorType.SMTP, smtp_config(mailbox.port), outgoing(subject=None), http, LOCAL)
    await eventually(lambda: _ready(mailbox.messages), "an email")
    assert mailbox.messages[0].get_content_type() == "text/plain"
    assert mailbox.messages[0]["Subject"] == ""


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_authenticates_with_the_configured_credentials(
    auth_mailbox: Mailbox, http: aiohttp.ClientSession
) -> None:
    config = smtp_config(auth_mailbox.port, username="shop", password="pa55")
    await send(ConnectorType.SMTP, config, outgoing(), http, LOCAL)
    await eventually(lambda: _ready(auth_mailbox.messages), "an authenticated email")

    wrong = smtp_config(auth_mailbox.port, username="shop", password="guess")
    with pytest.raises(PermanentDeliveryError, match="SMTP 535"):
        await send(ConnectorType.SMTP, wrong, outgoing(), http, LOCAL)
    anonymous = smtp_config(auth_mailbox.port)
    with pytest.raises(PermanentDeliveryError, match="SMTP 530"):
        await send(ConnectorType.SMTP, anonymous, outgoing(), http, LOCAL)
    assert len(auth_mailbox.messages) == 1


async def test_smtp_replies_are_classified_by_their_code(
    mailbox: Mailbox, http: aiohttp.ClientSession
) -> None:
    config = smtp_config(mailbox.port)
    mailbox.rcpt_reply = "550 5.1.1 No such user here"
    with pytest.raises(PermanentDeliveryError, match="550") as refused:
        await send(ConnectorType.SMTP, config, outgoing(), http, LOCAL)
    assert "No such user" in refused.value.reason
    mailbox.rcpt_reply = "451 4.7.1 Greylisted, try again later"
    with pytest.raises(TransientDeliveryError, match="451"):
        await send(ConnectorType.SMTP, config, outgoing(), http, LOCAL)
    assert mailbox.messages == []


async def test_smtp_server_down_is_transient(http: aiohttp.ClientSession) -> None:
    with pytest.raises(TransientDeliveryError, match="unreachable"):
        await send(ConnectorType.SMTP, smtp_config(free_port()), outgoing(), http, LOCAL)


@pytest.mark.parametrize("to", ["not-an-address", "ada@example.org\nBcc: all@example.org"])
async def test_a_bad_recipient_is_permanent(
    mailbox: Mailbox, http: aiohttp.ClientSession, to: str
) -> None:
    with pytest.raises(PermanentDeliveryError):
        await send(ConnectorType.SMTP, smtp_config(mailbox.port), outgoing(to=to), http, LOCAL)
    assert mailbox.messages == []


# --- sms_http / push_http -----------------------------------------------------------------


async def test_sms_posts_json_with_idempotency_key_and_bearer_token(
    sink: Sink, http: aiohttp.ClientSession
) -> None:
    config = parse_config(ConnectorType.SMS_HTTP, {"url": f"{sink.url}/sms", "token": "t0k"})
    result = await send(ConnectorType.SMS_HTTP, config, outgoing(to="+41790000000"), http, LOCAL)

    assert result.detail == "HTTP 202"
    request = sink.requests[0]
    assert request.headers["idempotency-key"] == "act-7f3a"
    assert request.headers["authorization"] == "Bearer t0k"
    assert request.headers["content-type"] == "application/json"
    assert httpx.Response(200, content=request.body).json() == {
        "to": "+41790000000",
        "body": "Hi Ada, 2 items wait for you.",
        "activation_id": "act-7f3a",
        "subject": "Your cart misses you",
        "journey_id": "j-1",
        "step_id": "s-2",
    }


async def test_push_without_a_token_sends_no_authorization(
    sink: Sink, http: aiohttp.ClientSession
) -> None:
    config = parse_config(ConnectorType.PUSH_HTTP, {"url": f"{sink.url}/sms"})
    await send(ConnectorType.PUSH_HTTP, config, outgoing(to="device-token-1"), http, LOCAL)
    assert "authorization" not in sink.requests[0].headers
    assert sink.requests[0].headers["idempotency-key"] == "act-7f3a"


async def test_provider_answers_are_classified(sink: Sink, http: aiohttp.ClientSession) -> None:
    config = parse_config(ConnectorType.SMS_HTTP, {"url": f"{sink.url}/sms"})
    sink.replies += [(503, {}), (429, {"Retry-After": "7"}), (400, {})]

    with pytest.raises(TransientDeliveryError, match="HTTP 503") as unavailable:
        await send(ConnectorType.SMS_HTTP, config, outgoing(), http, LOCAL)
    assert unavailable.value.retry_after_s is None
    with pytest.raises(TransientDeliveryError, match="HTTP 429") as limited:
        await send(ConnectorType.SMS_HTTP, config, outgoing(), http, LOCAL)
    assert limited.value.retry_after_s == 7
    with pytest.raises(PermanentDeliveryError, match=r"HTTP 400.*as configured"):
        await send(ConnectorType.SMS_HTTP, config, outgoing(), http, LOCAL)
    assert len(sink.requests) == 3  # one request per send: no retries inside


async def test_connection_refused_is_transient(http: aiohttp.ClientSession) -> None:
    config = parse_config(ConnectorType.SMS_HTTP, {"url": f"http://127.0.0.1:{free_port()}/sms"})
    with pytest.raises(TransientDeliveryError, match="unreachable"):
        await send(ConnectorType.SMS_HTTP, config, outgoing(), http, LOCAL)


async def test_a_slow_provider_times_out_as_transient(
    sink: Sink, http: aiohttp.ClientSession
) -> None:
    config = parse_config(ConnectorType.SMS_HTTP, {"url": f"{sink.url}/slow", "timeout_s": 0.2})
    with pytest.raises(TransientDeliveryError, match="timed out"):
        await send(ConnectorType.SMS_HTTP, config, outgoing(), http, LOCAL)


# --- webhooks ---------------------------------------------------------------------------


async def test_webhook_is_signed_per_standard_webhooks(
    sink: Sink, http: aiohttp.ClientSession
) -> None:
    config = parse_config(
        ConnectorType.WEBHOOK, {"url": f"{sink.url}/hook", "secret": WEBHOOK_SECRET}
    )
    await send(ConnectorType.WEBHOOK, config, outgoing(), http, LOCAL)

    assert sink.verified == [
        {
            "to": "ada@example.org",
            "body": "Hi Ada, 2 items wait for you.",
            "activation_id": "act-7f3a",
            "subject": "Your cart misses you",
            "journey_id": "j-1",
            "step_id": "s-2",
        }
    ]
    assert sink.requests[0].headers["webhook-id"] == "act-7f3a"


async def test_webhook_signed_with_another_secret_is_refused(
    sink: Sink, http: aiohttp.ClientSession
) -> None:
    config = parse_config(
        ConnectorType.WEBHOOK, {"url": f"{sink.url}/hook", "secret": "some other secret"}
    )
    with pytest.raises(PermanentDeliveryError, match="HTTP 401"):
        await send(ConnectorType.WEBHOOK, config, outgoing(), http, LOCAL)
    assert sink.verified == []


# --- the connector test endpoint ----------------------------------------------------------


@pytest.fixture
async def activator(servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    settings = ActivatorSettings(
        database_url=servers.database_url,
        nats_url=servers.nats_url,
        allow_private_connectors=True,
        service_token=SERVICE_TOKEN,
    )
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers=service_headers()) as client,
    ):
        yield client


async def test_connector_test_sends_an_email(
    activator: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    answer = await activator.post(
        "/internal/connectors/test",
        json={
            "type": "smtp",
            "config": {"host": "127.0.0.1", "port": mailbox.port, "from": "ops@example.com"},
            "to": "admin@example.org",
            "subject": "Does it work?",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ok": True}
    await eventually(lambda: _ready(mailbox.messages), "the test email")
    assert mailbox.messages[0]["Subject"] == "Does it work?"
    assert mailbox.messages[0]["To"] == "admin@example.org"


async def test_connector_test_posts_to_an_http_provider(
    activator: httpx.AsyncClient, sink: Sink
) -> None:
    answer = await activator.post(
        "/internal/connectors/test",
        json={"type": "sms_http", "config": {"url": f"{sink.url}/sms"}, "to": "+4100", "body": "x"},
    )
    assert answer.status_code == 200, answer.text
    await eventually(lambda: _ready(sink.requests), "the test SMS")
    assert httpx.Response(200, content=sink.requests[0].body).json()["body"] == "x"


async def test_connector_test_reports_config_problems_by_path(
    activator: httpx.AsyncClient,
) -> None:
    answer = await activator.post(
        "/internal/connectors/test",
        json={
            "type": "smtp",
            "config": {"host": "127.0.0.1", "port": 0, "from": "ops@example.com"},
            "to": "admin@example.org",
        },
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["path"] for e in answer.json()["errors"]] == ["config.port"]


async def test_connector_test_rejects_an_unknown_type(activator: httpx.AsyncClient) -> None:
    answer = await activator.post(
        "/internal/connectors/test", json={"type": "fax", "config": {}, "to": "x"}
    )
    assert answer.status_code == 422
    assert [e["path"] for e in answer.json()["errors"]] == ["type"]


async def test_connector_test_names_the_failure_when_smtp_is_down(
    activator: httpx.AsyncClient,
) -> None:
    answer = await activator.post(
        "/internal/connectors/test",
        json={
            "type": "smtp",
            "config": {"host": "127.0.0.1", "port": free_port(), "from": "ops@example.com"},
            "to": "admin@example.org",
        },
    )
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["title"] == "Connector test failed"
    assert problem["detail"].startswith("temporary failure: SMTP server 127.0.0.1:")


async def test_connector_test_names_a_permanent_failure(
    activator: httpx.AsyncClient, sink: Sink
) -> None:
    sink.replies.append((401, {}))
    answer = await activator.post(
        "/internal/connectors/test",
        json={"type": "push_http", "config": {"url": f"{sink.url}/sms"}, "to": "device-1"},
    )
    assert answer.status_code == 502
    assert answer.json()["detail"].startswith("permanent failure: HTTP 401")


async def _ready(condition: object) -> bool:
    return bool(condition)
