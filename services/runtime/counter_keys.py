"""Keys of the exact analytics counters (``runtime.counters``), written by the processor and
read by :mod:`services.runtime.analytics`. A key holding names is JSON, because step ids,
stage names and path names may hold any character."""

from __future__ import annotations

import json


def path_key(step_id: str, path: str) -> str:
    """Profiles that took ``path`` (yes / no, a case, a split's path) at a branch or split."""
    return "path:" + json.dumps([step_id, path])


def parse_path_key(key: str) -> tuple[str, str] | None:
    if not key.startswith("path:"):
        return None
    step_id, path = json.loads(key[len("path:") :])
    return str(step_id), str(path)


def stage_left_key(stage: str, outcome: str) -> str:
    """Profiles that left the journey from ``stage`` with ``outcome``."""
    return "stage_left:" + json.dumps([stage, outcome])


MIGRATED_IN = "migrated:in"  # on the version a migrate publish moved profiles onto
MIGRATED_OUT = "migrated:out"  # on the version it moved them from

# Engagement is counted from the feedback events, which name the journey and step of their
# message but not its version: its counters are kept under this version, read for any.
ENGAGEMENT_VERSION = 0
ENGAGEMENT_EVENTS = {"message_sent": "sent", "email_opened": "opened", "email_clicked": "clicked"}


def engage_key(step_id: str, what: str, channel: str | None) -> str:
    """``what``: sent, opened, clicked, or goal (left with the goal after a message of the
    step in the same entry)."""
    return "engage:" + json.dumps([step_id, what, channel])


def parse_engage_key(key: str) -> tuple[str, str, str | None] | None:
    if not key.startswith("engage:"):
        return None
    step_id, what, channel = json.loads(key[len("engage:") :])
    return str(step_id), str(what), None if channel is None else str(channel)
