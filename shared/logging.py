"""Structured JSON logs that carry the request id and trace id of the work in hand."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Mapping

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars

REQUEST_ID_HEADER = "X-Request-ID"
TRACE_ID_HEADER = "X-Trace-ID"


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route stdlib and structlog records through one JSON (or console) renderer."""
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                _add_service(service),
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_service(service: str) -> structlog.typing.Processor:
    def processor(
        _logger: object, _name: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        event.setdefault("service", service)
        return event

    return processor


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def new_id() -> str:
    return uuid.uuid4().hex


def bind_correlation(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Bind request/trace ids from incoming headers (HTTP or NATS), minting missing ones."""
    headers = headers or {}
    lowered = {k.lower(): v for k, v in headers.items()}
    request_id = lowered.get(REQUEST_ID_HEADER.lower()) or new_id()
    trace_id = lowered.get(TRACE_ID_HEADER.lower()) or request_id
    clear_contextvars()
    bind_contextvars(request_id=request_id, trace_id=trace_id)
    return {"request_id": request_id, "trace_id": trace_id}


def correlation_headers() -> dict[str, str]:
    """Headers that carry the current request/trace ids to the next hop."""
    ctx = get_contextvars()
    out: dict[str, str] = {}
    if "request_id" in ctx:
        out[REQUEST_ID_HEADER] = str(ctx["request_id"])
    if "trace_id" in ctx:
        out[TRACE_ID_HEADER] = str(ctx["trace_id"])
    return out
