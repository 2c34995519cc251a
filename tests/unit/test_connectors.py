"""Connector configs: what each type accepts, where a problem is reported, secrets kept in."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook

from shared.connectors import (
    CHANNEL_OF,
    SECRET_FIELDS,
    ConnectorType,
    HttpConfig,
    SmtpConfig,
    WebhookConfig,
    config_errors,
    parse_config,
    redact,
    signing_key,
    to_stored,
)

SMTP = {"host": "smtp.example.com", "port": 587, "from": "Shop <shop@example.com>"}
HTTP = {"url": "https://sms.example.com/send"}
WEBHOOK = {
    "url": "https://hooks.example.com/in",
    "secret": "whsec_" + base64.b64encode(b"k" * 24).decode(),
}
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def paths(kind: ConnectorType, raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        parse_config(kind, raw)
    return {e.path: e.message for e in config_errors(info.value)}


def test_each_type_has_its_channel() -> None:
    assert CHANNEL_OF == {
        ConnectorType.SMTP: "email",
        ConnectorType.SMS_HTTP: "sms",
        ConnectorType.PUSH_HTTP: "push",
        ConnectorType.WEBHOOK: "webhook",
    }
    assert set(SECRET_FIELDS) == set(ConnectorType)


def test_smtp_config_valid() -> None:
    config = parse_config(
        "smtp",
        {**SMTP, "username": "u", "password": "pa55word", "starttls": True, "rate_limit_per_s": 5},
    )
    assert isinstance(config, SmtpConfig)
    assert config.from_ == "Shop <shop@example.com>"
    assert config.starttls
    assert not config.use_tls
    assert config.timeout_s == 10
    assert config.rate_limit_per_s == 5
    assert "pa55word" not in repr(config)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"port": 0}, "config.port"),
        ({"port": 70000}, "config.port"),
        ({"port": "submission"}, "config.port"),
        ({"from": "not-an-address"}, "config.from"),
        ({"host": ""}, "config.host"),
        ({"strattls": True}, "config.strattls"),
        ({"starttls": True, "use_tls": True}, "config.use_tls"),
        ({"timeout_s": 0}, "config.timeout_s"),
        ({"rate_limit_per_s": 0}, "config.rate_limit_per_s"),
    ],
)
def test_smtp_config_invalid(change: dict[str, Any], path: str) -> None:
    assert path in paths(ConnectorType.SMTP, {**SMTP, **change})


def test_smtp_config_reports_every_missing_field() -> None:
    assert set(paths(ConnectorType.SMTP, {})) == {"config.host", "config.port", "config.from"}


@pytest.mark.parametrize("kind", [ConnectorType.SMS_HTTP, ConnectorType.PUSH_HTTP])
def test_http_config_valid_and_invalid(kind: ConnectorType) -> None:
    config = parse_config(kind, {**HTTP, "token": "t0k", "rate_limit_per_s": None})
    assert isinstance(config, HttpConfig)
    assert config.url == HTTP["url"]
    assert config.rate_limit_per_s is None
    assert "config.url" in paths(kind, {"url": "ftp://files.example.com"})
    assert "config.url" in paths(kind, {"url": "https://"})
    assert "config.url" in paths(kind, {})
    assert "config.password" in paths(kind, {**HTTP, "password": "x"})


def test_webhook_config_valid() -> None:
    config = parse_config("webhook", WEBHOOK)
    assert isinstance(config, WebhookConfig)
    assert config.signing_secret() == WEBHOOK["secret"]


def test_webhook_accepts_a_plain_secret_as_its_bytes() -> None:
    config = parse_config("webhook", {**WEBHOOK, "secret": "correct horse battery"})
    assert isinstance(config, WebhookConfig)
    assert signing_key("correct horse battery") == b"correct horse battery"
    # The library decodes the whsec_ form back to the same key bytes.
    signed = Webhook(config.signing_secret()).sign("m1", EPOCH, "{}")
    assert signed == Webhook(b"correct horse battery").sign("m1", EPOCH, "{}")


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"url": "https://hooks.example.com"}, "config.secret"),
        ({**WEBHOOK, "secret": ""}, "config.secret"),
        ({**WEBHOOK, "secret": "whsec_"}, "config.secret"),
        ({**WEBHOOK, "secret": "whsec_not base64!"}, "config.secret"),
        ({**WEBHOOK, "url": "hooks.example.com"}, "config.url"),
    ],
)
def test_webhook_config_invalid(raw: dict[str, Any], path: str) -> None:
    assert path in paths(ConnectorType.WEBHOOK, raw)


def test_unknown_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="carrier_pigeon"):
        parse_config("carrier_pigeon", {})


def test_stored_form_keeps_secrets_and_api_spelling() -> None:
    stored = to_stored(parse_config("smtp", {**SMTP, "username": "u", "password": "s3cret"}))
    assert stored["password"] == "s3cret"
    assert stored["from"] == SMTP["from"]
    assert parse_config("smtp", stored) == parse_config(
        "smtp", {**SMTP, "username": "u", "password": "s3cret"}
    )


@pytest.mark.parametrize(
    ("kind", "raw", "secret"),
    [
        (ConnectorType.SMTP, {**SMTP, "username": "u", "password": "s3cret"}, "password"),
        (ConnectorType.SMS_HTTP, {**HTTP, "token": "t0k"}, "token"),
        (ConnectorType.PUSH_HTTP, {**HTTP, "token": "t0k"}, "token"),
        (ConnectorType.WEBHOOK, WEBHOOK, "secret"),
    ],
)
def test_redact_removes_secrets(kind: ConnectorType, raw: dict[str, Any], secret: str) -> None:
    stored = to_stored(parse_config(kind, raw))
    shown = redact(kind, stored)
    assert secret not in shown
    assert shown[f"{secret}_set"] is True
    assert str(raw[secret]) not in str(shown)
    del stored[secret], shown[f"{secret}_set"]
    assert shown == stored


def test_redact_says_when_a_secret_is_not_set() -> None:
    shown = redact("smtp", to_stored(parse_config("smtp", SMTP)))
    assert shown["password_set"] is False
    assert "password" not in shown
