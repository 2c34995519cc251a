"""Connector types and their configurations, shared by the designer (stores) and activator (sends).

Configs are strict (unknown keys are errors) so a typo such as ``strattls`` is reported
rather than silently ignored. Secrets are ``SecretStr`` so they never show in a repr, a log
line or an answer; ``to_stored`` reveals them only for the database.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from shared.addresses import AddressPolicy, Refused, Unresolvable
from shared.problems import FieldError, json_path

WEBHOOK_SECRET_PREFIX = "whsec_"
# Sends at once through a connector unless its config says otherwise.
DEFAULT_CONCURRENCY = 16
# Destinations whose check a guard remembers at most.
GUARD_ENTRIES = 10_000


class ConnectorType(StrEnum):
    SMTP = "smtp"
    SMS_HTTP = "sms_http"
    PUSH_HTTP = "push_http"
    WEBHOOK = "webhook"


CHANNEL_OF: dict[ConnectorType, str] = {
    ConnectorType.SMTP: "email",
    ConnectorType.SMS_HTTP: "sms",
    ConnectorType.PUSH_HTTP: "push",
    ConnectorType.WEBHOOK: "webhook",
}

SECRET_FIELDS: dict[ConnectorType, frozenset[str]] = {
    ConnectorType.SMTP: frozenset({"password"}),
    ConnectorType.SMS_HTTP: frozenset({"token"}),
    ConnectorType.PUSH_HTTP: frozenset({"token"}),
    ConnectorType.WEBHOOK: frozenset({"secret"}),
}


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 (reading it checks it)
    except ValueError:
        raise ValueError("has an invalid port") from None
    return value


def _email_address(value: str) -> str:
    # Loose on purpose: display names ("Shop <shop@example.com>") and internal domains are
    # fine; the SMTP server is the authority on what it accepts.
    if "@" not in value or "\n" in value or "\r" in value:
        raise ValueError("must be an email address")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
EmailAddress = Annotated[str, AfterValidator(_email_address)]
Timeout = Annotated[float, Field(default=10.0, gt=0, le=120)]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    rate_limit_per_s: float | None = Field(
        default=None, gt=0, description="Most messages per second through this connector."
    )
    max_concurrency: int = Field(
        default=DEFAULT_CONCURRENCY,
        ge=1,
        le=1000,
        description="Most sends at once through this connector (per activator process).",
    )


class SmtpConfig(_Config):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    use_tls: bool = Field(default=False, description="Implicit TLS from the first byte.")
    from_: EmailAddress = Field(alias="from")
    timeout_s: Timeout = 10.0

    @field_validator("use_tls")
    @classmethod
    def _one_tls_mode(cls, use_tls: bool, info: ValidationInfo) -> bool:
        # Declared after starttls, so its value is known here and the error gets a path.
        if use_tls and info.data.get("starttls"):
            raise ValueError("starttls and use_tls exclude each other")
        return use_tls


class HttpConfig(_Config):
    """sms_http and push_http: a provider endpoint taking JSON."""

    url: HttpUrl
    token: SecretStr | None = Field(default=None, description="Sent as a Bearer token.")
    timeout_s: Timeout = 10.0


class WebhookConfig(_Config):
    url: HttpUrl
    secret: SecretStr = Field(description='"whsec_<base64>", or any string used as-is.')
    timeout_s: Timeout = 10.0

    @field_validator("secret")
    @classmethod
    def _usable_secret(cls, secret: SecretStr) -> SecretStr:
        signing_key(secret.get_secret_value())
        return secret

    def signing_secret(self) -> str:
        """The secret in the ``whsec_<base64>`` form the Standard Webhooks library takes."""
        key = signing_key(self.secret.get_secret_value())
        return WEBHOOK_SECRET_PREFIX + base64.b64encode(key).decode()


ConnectorConfig = SmtpConfig | HttpConfig | WebhookConfig

_MODELS: dict[ConnectorType, type[ConnectorConfig]] = {
    ConnectorType.SMTP: SmtpConfig,
    ConnectorType.SMS_HTTP: HttpConfig,
    ConnectorType.PUSH_HTTP: HttpConfig,
    ConnectorType.WEBHOOK: WebhookConfig,
}


@dataclass(frozen=True)
class Destination:
    """Where a connector connects: the config field that says so, host and port."""

    field: str
    host: str
    port: int


def destination(config: ConnectorConfig) -> Destination:
    if isinstance(config, SmtpConfig):
        return Destination("host", config.host, config.port)
    parts = urlsplit(config.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Destination("url", parts.hostname or "", port)


async def destination_refusal(
    config: ConnectorConfig, policy: AddressPolicy | None = None
) -> str | None:
    """Why the connector's destination is refused under ``policy`` (public addresses only
    when None), or None. A name that does not resolve now is not refused here; a send to
    it fails on its own."""
    where = destination(config)
    try:
        await (policy or AddressPolicy()).vetted(where.host, where.port)
    except Unresolvable:
        return None
    except Refused as exc:
        return exc.reason
    return None


class DestinationGuard:
    """:func:`destination_refusal` with each answer remembered for ``cache_s`` (monotonic
    time), so a wave of messages through one connector costs one name lookup. It answers
    early and plainly; the connection itself is vetted again on the addresses it uses
    (``AddressPolicy.vetted``), so a remembered answer never lets a rebound name through."""

    def __init__(
        self,
        cache_s: float = 5.0,
        now: Callable[[], float] = time.monotonic,
        policy: AddressPolicy | None = None,
    ) -> None:
        self._cache_s = cache_s
        self._now = now
        self.policy = policy or AddressPolicy()
        self._answers: dict[tuple[str, int], tuple[float, str | None]] = {}

    async def refusal(self, config: ConnectorConfig) -> str | None:
        where = destination(config)
        key = (where.host, where.port)
        now = self._now()
        hit = self._answers.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        answer = await destination_refusal(config, self.policy)
        if len(self._answers) >= GUARD_ENTRIES:
            self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
        self._answers[key] = (now + self._cache_s, answer)
        return answer


def signing_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret.

    ``whsec_`` secrets carry base64 key bytes (as Standard Webhooks providers issue them);
    any other string is its own UTF-8 bytes, so an operator may pick a plain passphrase.
    """
    if secret.startswith(WEBHOOK_SECRET_PREFIX):
        encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            raise ValueError("a whsec_ secret must be followed by base64") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("must not be empty")
    return key


def parse_config(kind: ConnectorType | str, raw: Mapping[str, Any]) -> ConnectorConfig:
    """Validates ``raw`` for ``kind``; raises ``ValidationError`` (see ``config_errors``)."""
    return _MODELS[ConnectorType(kind)].model_validate(dict(raw))


def config_errors(exc: ValidationError, prefix: str = "config") -> list[FieldError]:
    """Each problem of a failed ``parse_config`` with its path, e.g. ``config.port``."""
    return [
        FieldError(json_path((prefix, *err["loc"])), _message(err["msg"])) for err in exc.errors()
    ]


def _message(msg: str) -> str:
    # Messages from our own validators come prefixed with the exception type.
    return msg.removeprefix("Value error, ")


def to_stored(config: ConnectorConfig) -> dict[str, Any]:
    """The JSON to store, secrets revealed and keys as the API spells them (``from``)."""
    data = config.model_dump(mode="json", by_alias=True)
    for name, value in config:
        if isinstance(value, SecretStr):
            data[name] = value.get_secret_value()
    return data


def redact(kind: ConnectorType | str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` fit for an answer: each secret replaced by ``<name>_set: bool``."""
    secrets = SECRET_FIELDS[ConnectorType(kind)]
    out = {k: v for k, v in config.items() if k not in secrets}
    for name in sorted(secrets):
        out[f"{name}_set"] = bool(config.get(name))
    return out
