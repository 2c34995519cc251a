"""How an attempt's outcome changes a delivery row (written by ``store.save``)."""

from __future__ import annotations

from datetime import datetime

from services.activator.models import Delivery
from services.activator.repository import FAILED, HELD, SENT


def record_sent(row: Delivery, now: datetime) -> None:
    row.status = SENT
    row.attempts += 1
    row.sent_at = now
    row.next_attempt_at = None
    row.updated_at = now


def record_retry(row: Delivery, error: str, at: datetime, now: datetime) -> None:
    row.attempts += 1
    row.last_error = error
    row.next_attempt_at = at
    row.updated_at = now


def record_held(row: Delivery, error: str, at: datetime, now: datetime) -> None:
    """A failed attempt whose retry falls in quiet hours: held until ``at``."""
    record_retry(row, error, at, now)
    row.status = HELD


def record_failed(row: Delivery, error: str, now: datetime, *, attempted: bool) -> None:
    row.status = FAILED
    row.attempts += 1 if attempted else 0
    row.last_error = error
    row.reason = error
    row.next_attempt_at = None
    row.updated_at = now
