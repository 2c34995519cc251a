"""The workspace's delivery rules as pure functions: consent, recipient, frequency caps,
quiet hours and retry backoff. No I/O, no clock reads, no randomness they were not given."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

from services.activator.models import SkipReason
from services.activator.schemas import ActivationRequested, QuietHours, WorkspaceRules
from shared.localtime import next_time_of_day, parse_hhmm, zone

# Longer than any sane phone number, push token or address; anything longer is not one.
MAX_RECIPIENT_CHARS = 1000


def recipient(to: Any) -> str | None:
    """The address to deliver to, or None. Numbers count: a phone may be stored as one."""
    if isinstance(to, bool):
        return None
    if isinstance(to, int | float):
        to = str(to)
    if not isinstance(to, str) or not to.strip() or len(to) > MAX_RECIPIENT_CHARS:
        return None
    return to.strip()


def recipient_for(request: ActivationRequested) -> str | None:
    """Where the message goes. A webhook's destination is its connector's URL, so one
    without a recipient attribute is addressed to the profile it is about."""
    found = recipient(request.to)
    if found is None and request.channel == "webhook":
        return request.profile_id
    return found


def consented(consent: Mapping[str, Any], channel: str, rules: WorkspaceRules) -> bool:
    """A channel missing from the consent map is allowed unless the workspace is opt-in."""
    given = consent.get(channel)
    if given is None:
        return rules.consent_mode == "opt_out"
    return given is True


def refusal(request: ActivationRequested, rules: WorkspaceRules) -> SkipReason | None:
    """Why the request is skipped before any count is taken, if it is."""
    if not consented(request.consent, request.channel, rules):
        return SkipReason.NO_CONSENT
    if recipient_for(request) is None:
        return SkipReason.NO_RECIPIENT
    return None


# --- frequency caps ---------------------------------------------------------------------


@dataclass(frozen=True)
class CapKey:
    """One profile's budget on one channel over one period."""

    profile_id: str
    channel: str
    per: timedelta


def over_caps(
    requests: Sequence[ActivationRequested],
    rules: WorkspaceRules,
    used: Mapping[CapKey, int],
) -> set[str]:
    """The activation ids that would exceed a cap, taking ``requests`` in order: each one
    admitted uses up a place in every cap of its channel for the ones after it."""
    spent = dict(used)
    capped: set[str] = set()
    for r in requests:
        keys = [
            (CapKey(r.profile_id, r.channel, cap.per), cap.max) for cap in rules.caps_for(r.channel)
        ]
        if any(spent.get(key, 0) >= limit for key, limit in keys):
            capped.add(r.activation_id)
            continue
        for key, _limit in keys:
            spent[key] = spent.get(key, 0) + 1
    return capped


def cap_keys(requests: Iterable[ActivationRequested], rules: WorkspaceRules) -> set[CapKey]:
    return {
        CapKey(r.profile_id, r.channel, cap.per)
        for r in requests
        for cap in rules.caps_for(r.channel)
    }


# --- quiet hours ------------------------------------------------------------------------


def profile_zone(context: Mapping[str, Any], rules: WorkspaceRules) -> tzinfo:
    """The profile's ``timezone`` attribute, else the workspace default, else UTC."""
    profile = context.get("profile")
    name = profile.get("timezone") if isinstance(profile, Mapping) else None
    return zone(name if isinstance(name, str) else None, rules.default_timezone)


def in_quiet_hours(local: time, start: time, end: time) -> bool:
    """Whether a wall-clock time falls in ``[start, end)``; the window may span midnight,
    and an empty one (``start == end``) holds nothing."""
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def window_opening(now: datetime, quiet: QuietHours | None, tz: tzinfo) -> datetime | None:
    """When quiet hours end, if ``now`` is inside them in ``tz``; else None."""
    if quiet is None:
        return None
    start, end = parse_hhmm(quiet.start), parse_hhmm(quiet.end)
    local = now.astimezone(tz).time().replace(tzinfo=None)
    if not in_quiet_hours(local, start, end):
        return None
    return next_time_of_day(now, end, tz)


def spread_offset(activation_id: str, spread_s: float) -> timedelta:
    """A fixed place in ``[0, spread_s)`` for this activation: messages held overnight go
    out spread over the spread after the window opens, the same way on every replica."""
    digest = hashlib.sha256(activation_id.encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(seconds=spread_s * fraction)


def release_at(
    now: datetime, quiet: QuietHours | None, tz: tzinfo, activation_id: str, spread_s: float
) -> datetime:
    """``now``, or when quiet hours let this message go out."""
    opening = window_opening(now, quiet, tz)
    if opening is None:
        return now
    return opening + spread_offset(activation_id, spread_s)


def held_until(
    request: ActivationRequested, rules: WorkspaceRules, now: datetime, spread_s: float
) -> datetime | None:
    """When an admitted request may go out, if quiet hours in the profile's zone hold it
    at ``now``; None when it goes out now."""
    tz = profile_zone(request.context, rules)
    due = release_at(now, rules.quiet_hours, tz, request.activation_id, spread_s)
    return due if due > now else None


# --- retries ----------------------------------------------------------------------------


def backoff(
    attempts: int,
    base_s: float,
    max_s: float,
    jitter: float,
    retry_after_s: float | None = None,
) -> timedelta:
    """Wait before the next attempt after ``attempts`` failed ones: exponential, capped,
    with "equal jitter" (``jitter`` in [0, 1) picks a point in the upper half) so a wave
    of failures does not come back as one wave. A provider's Retry-After is a floor."""
    ceiling = min(max_s, base_s * 2 ** max(0, attempts - 1))
    delay = ceiling / 2 + ceiling / 2 * jitter
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return timedelta(seconds=delay)
