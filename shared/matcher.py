"""Criteria compiled once into closures, then evaluated for every event and profile.

Pure: no I/O and no clock; the same event and profile always give the same answer.

Semantics, per condition (the ``value`` being what the condition compares with):

- ``event``: the event's name equals it. Without an event (``event=None``, judging a
  profile alone, e.g. at a split) criteria naming an event or its properties do not match;
  criteria with only ``profile`` conditions are judged on the profile.
- Paths are dotted (``cart.total``); a segment of digits indexes a list (``items.0.sku``).
  A path that leads nowhere is *missing*; it never raises.
- ``eq`` / ``neq``: JSON equality: ``1`` equals ``1.0``, a boolean never equals a number.
  ``neq`` holds for a missing value (it is not equal).
- ``gt`` / ``gte`` / ``lt`` / ``lte``: numbers with numbers, strings with strings. When the
  value is an RFC 3339 date-time with an offset (``2024-05-01T10:00:00Z``) the actual value
  must be one too and they compare as instants. Dates without a time compare as strings.
  Any other pairing of types is simply false.
- ``in`` / ``not_in``: membership under the same equality; ``not_in`` holds when missing.
- ``contains``: a string holds a substring (case-sensitive), or a list holds an element
  (same equality); anything else is false.
- ``exists``: present and not null; ``not_exists`` is its negation (missing or null).
- Every operator but ``neq``, ``not_in`` and ``not_exists`` is false on a missing value.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import islice
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from shared.criteria import (
    PRESENCE_OPS,
    All,
    AnyOf,
    AttributeCondition,
    Criteria,
    JsonScalar,
    Match,
    Not,
    Op,
    PropertyCondition,
)


@dataclass(frozen=True, slots=True)
class EventView:
    """What criteria read of an event: its name and its (nested) properties."""

    name: str
    properties: Mapping[str, Any]


Profile = Mapping[str, Any]
_Accept = Callable[[Any], bool]
_Test = Callable[[EventView | None, Profile], bool]
_Why = Callable[[EventView | None, Profile], list[str]]
_Step = tuple[str, int | None]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()
_NO_PROPERTIES: Final[Mapping[str, Any]] = MappingProxyType({})


class _Node(NamedTuple):
    """A compiled criteria object; ``why`` is only asked when ``test`` is false."""

    test: _Test
    why: _Why


class Matcher:
    """Criteria ready to evaluate; build one with :func:`compile_criteria`."""

    __slots__ = ("_node", "criteria")

    def __init__(self, criteria: Criteria, node: _Node) -> None:
        self.criteria = criteria
        self._node = node

    def matches(self, event: EventView | None, profile: Profile) -> bool:
        """Whether the event and the profile match; ``event=None`` judges the profile alone."""
        return self._node.test(event, profile)

    def explain(self, event: EventView | None, profile: Profile) -> list[str]:
        """Why the event and the profile do not match; empty exactly when they do."""
        if self._node.test(event, profile):
            return []
        return self._node.why(event, profile) or [f"not matched: {describe(self.criteria)}"]

    def __repr__(self) -> str:
        return f"Matcher({describe(self.criteria)})"


def compile_criteria(criteria: Criteria) -> Matcher:
    """Compile validated criteria once; the matcher is cheap to call for every event."""
    return Matcher(criteria, _compile(criteria))


def describe(criteria: Criteria) -> str:
    """A one-line human reading of criteria, e.g. ``event 'cart_add' and property x gt 5``."""
    if isinstance(criteria, All):
        return "all of (" + "; ".join(describe(c) for c in criteria.all) + ")"
    if isinstance(criteria, AnyOf):
        return "any of (" + "; ".join(describe(c) for c in criteria.any) + ")"
    if isinstance(criteria, Not):
        return f"not ({describe(criteria.not_)})"
    parts = [f"event {criteria.event!r}"] if criteria.event is not None else []
    parts += [f"property {c.property} {_wanted(c.op, c.value)}" for c in criteria.where]
    parts += [f"profile attribute {c.attribute} {_wanted(c.op, c.value)}" for c in criteria.profile]
    return " and ".join(parts)


# --- combinators -------------------------------------------------------------------------


def _compile(criteria: Criteria) -> _Node:
    if isinstance(criteria, All):
        return _compile_all([_compile(c) for c in criteria.all])
    if isinstance(criteria, AnyOf):
        return _compile_any([_compile(c) for c in criteria.any])
    if isinstance(criteria, Not):
        return _compile_not(_compile(criteria.not_), describe(criteria.not_))
    return _compile_match(criteria)


def _compile_all(parts: Sequence[_Node]) -> _Node:
    tests = tuple(part.test for part in parts)

    def test(event: EventView | None, profile: Profile) -> bool:
        for t in tests:  # noqa: SIM110 (see _all_hold)
            if not t(event, profile):
                return False
        return True

    def why(event: EventView | None, profile: Profile) -> list[str]:
        return [
            reason
            for part in parts
            if not part.test(event, profile)
            for reason in part.why(event, profile)
        ]

    return _Node(test, why)


def _compile_any(parts: Sequence[_Node]) -> _Node:
    tests = tuple(part.test for part in parts)

    def test(event: EventView | None, profile: Profile) -> bool:
        return any(t(event, profile) for t in tests)

    def why(event: EventView | None, profile: Profile) -> list[str]:
        reasons = ["no alternative under 'any' matched"]
        for i, part in enumerate(parts):
            reasons += [f"any[{i}]: {reason}" for reason in part.why(event, profile)]
        return reasons

    return _Node(test, why)


def _compile_not(inner: _Node, inner_text: str) -> _Node:
    inner_test = inner.test

    def test(event: EventView | None, profile: Profile) -> bool:
        return not inner_test(event, profile)

    def why(event: EventView | None, profile: Profile) -> list[str]:
        return [f"matches what 'not' excludes: {inner_text}"]

    return _Node(test, why)


# --- a single match ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Check:
    """One compiled condition: where to look, and what the value found must satisfy."""

    subject: str
    steps: tuple[_Step, ...]
    accept: _Accept
    wanted: str

    def holds(self, root: Mapping[str, Any]) -> bool:
        return self.accept(_lookup(root, self.steps))

    def reason(self, root: Mapping[str, Any]) -> str | None:
        actual = _lookup(root, self.steps)
        if self.accept(actual):
            return None
        if actual is _MISSING:
            return f"{self.subject} is missing"
        return f"{self.subject} is {_show(actual)}, needs {self.wanted}"


def _compile_match(match: Match) -> _Node:
    name = match.event
    # Conditions on properties cannot hold without an event, even if no name was given.
    needs_event = name is not None or bool(match.where)
    where = tuple(_compile_check(c, f"property {c.property}") for c in match.where)
    profile_checks = tuple(
        _compile_check(c, f"profile attribute {c.attribute}") for c in match.profile
    )

    def test(event: EventView | None, profile: Profile) -> bool:
        if needs_event and (event is None or (name is not None and event.name != name)):
            return False
        properties = event.properties if event is not None else _NO_PROPERTIES
        return _all_hold(where, properties) and _all_hold(profile_checks, profile)

    def why(event: EventView | None, profile: Profile) -> list[str]:
        if needs_event and event is None:
            return [f"no event to judge, needs {_event_wanted(name)}"]
        if event is not None and name is not None and event.name != name:
            return [f"event name is {event.name!r}, not {name!r}"]
        properties = event.properties if event is not None else _NO_PROPERTIES
        return _reasons(where, properties) + _reasons(profile_checks, profile)

    return _Node(test, why)


def _event_wanted(name: str | None) -> str:
    return f"event {name!r}" if name is not None else "an event"


def _all_hold(checks: tuple[_Check, ...], root: Mapping[str, Any]) -> bool:
    # A plain loop: this runs for every event, and a generator costs more than the check.
    for check in checks:  # noqa: SIM110
        if not check.accept(_lookup(root, check.steps)):
            return False
    return True


def _reasons(checks: tuple[_Check, ...], root: Mapping[str, Any]) -> list[str]:
    return [reason for check in checks if (reason := check.reason(root)) is not None]


def _compile_check(condition: PropertyCondition | AttributeCondition, subject: str) -> _Check:
    path = condition.property if isinstance(condition, PropertyCondition) else condition.attribute
    return _Check(
        subject=subject,
        steps=_split_path(path),
        accept=_acceptor(condition.op, condition.value),
        wanted=_wanted(condition.op, condition.value),
    )


def _wanted(op: Op, value: JsonScalar | list[JsonScalar]) -> str:
    return str(op) if op in PRESENCE_OPS else f"{op} {_show(value)}"


# --- paths -------------------------------------------------------------------------------


def _split_path(path: str) -> tuple[_Step, ...]:
    # Each segment keeps its key for mappings and, if it is all digits, an index for lists.
    return tuple(
        (part, int(part) if part.isascii() and part.isdigit() else None) for part in path.split(".")
    )


def _lookup(root: Any, steps: tuple[_Step, ...]) -> Any:
    node = root
    for key, index in steps:
        # The exact-type check first: it is several times cheaper than the ABC check.
        if type(node) is dict or isinstance(node, Mapping):
            node = node.get(key, _MISSING)
        elif index is not None and isinstance(node, list | tuple):
            node = node[index] if index < len(node) else _MISSING
        else:
            return _MISSING
    return node


# --- operators ---------------------------------------------------------------------------

_ORDER: Final[Mapping[Op, Callable[[Any, Any], bool]]] = {
    Op.GT: operator.gt,
    Op.GTE: operator.ge,
    Op.LT: operator.lt,
    Op.LTE: operator.le,
}


def _acceptor(op: Op, value: JsonScalar | list[JsonScalar]) -> _Accept:
    """The test a found value (or ``_MISSING``) must pass; ``value`` was validated for ``op``."""
    if op is Op.EXISTS:
        return _present
    if op is Op.NOT_EXISTS:
        return _negated(_present)
    if isinstance(value, list):
        member = _member_of(value)
        return member if op is Op.IN else _negated(member)
    if op is Op.EQ:
        return _equal_to(value)
    if op is Op.NEQ:
        return _negated(_equal_to(value))
    if op is Op.CONTAINS:
        return _containing(value)
    return _ordered(_ORDER[op], value)


def _present(actual: Any) -> bool:
    return actual is not _MISSING and actual is not None


def _negated(accept: _Accept) -> _Accept:
    return lambda actual: not accept(actual)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal_to(expected: JsonScalar) -> _Accept:
    # Python says True == 1; JSON does not, so each kind only equals its own kind.
    if expected is None:
        return lambda actual: actual is None
    if isinstance(expected, bool):
        return lambda actual: isinstance(actual, bool) and actual == expected
    if isinstance(expected, str):
        return lambda actual: isinstance(actual, str) and actual == expected
    return lambda actual: _is_number(actual) and actual == expected


def _member_of(values: list[JsonScalar]) -> _Accept:
    # True and 1 hash alike, so booleans get a set of their own to keep them apart.
    flags = frozenset(v for v in values if isinstance(v, bool))
    others = frozenset(v for v in values if not isinstance(v, bool))

    def accept(actual: Any) -> bool:
        if isinstance(actual, bool):
            return actual in flags
        if actual is None or isinstance(actual, str | int | float):
            return actual in others
        return False

    return accept


def _containing(expected: JsonScalar) -> _Accept:
    element = _equal_to(expected)
    substring = expected if isinstance(expected, str) else None

    def accept(actual: Any) -> bool:
        if isinstance(actual, str):
            return substring is not None and substring in actual
        if isinstance(actual, list | tuple):
            return any(element(item) for item in actual)
        return False

    return accept


def _ordered(compare: Callable[[Any, Any], bool], expected: JsonScalar) -> _Accept:
    if _is_number(expected):
        return lambda actual: _is_number(actual) and compare(actual, expected)
    if not isinstance(expected, str):
        return lambda actual: False
    moment = _instant(expected)
    if moment is None:
        return lambda actual: isinstance(actual, str) and compare(actual, expected)

    def accept(actual: Any) -> bool:
        found = _instant(actual) if isinstance(actual, str) else None
        return found is not None and compare(found, moment)

    return accept


_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


# The same timestamps (a profile's signup time, say) are compared again and again.
@lru_cache(maxsize=4096)
def _instant(text: str) -> datetime | None:
    """The instant of an RFC 3339 date-time with offset, else None."""
    if _RFC3339.fullmatch(text) is None:
        return None
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # well-formed but impossible, e.g. February 30 or a leap second
        return None


# --- showing values ----------------------------------------------------------------------

_SHOW_LIMIT: Final = 80


def _show(value: Any) -> str:
    """A short, JSON-flavoured rendering: strings quoted, null/true/false, long values cut."""
    kind = type(value)
    # Exact-type fast path: the most common values, rendered for every unmatched event.
    text = repr(value) if kind is str or kind is int or kind is float else _render(value, 0)
    return text if len(text) <= _SHOW_LIMIT else text[: _SHOW_LIMIT - 1] + "…"


def _render(value: Any, depth: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return repr(value)
    # Deep or wide values are cut early: the text is shortened to a line anyway.
    if depth >= 3:
        return "…"
    if isinstance(value, Mapping):
        items = [f"{k!r}: {_render(v, depth + 1)}" for k, v in islice(value.items(), 10)]
        return "{" + ", ".join(items) + ("" if len(value) <= 10 else ", …") + "}"
    if isinstance(value, list | tuple):
        shown = [_render(v, depth + 1) for v in value[:10]]
        return "[" + ", ".join(shown) + ("" if len(value) <= 10 else ", …") + "]"
    return repr(value)
