"""The JSON Schema subset an event trigger declares its properties in, and what it is for.

Pure, no I/O. The designer parses a trigger's declaration (every problem with its JSON
path), resolves the property paths journey criteria name and checks the values they compare
with; the runtime checks the properties of each received event against it.

The subset: a schema is ``{"type": T}`` with T one of string, number, integer, boolean,
object, array, plus ``description`` / ``title``, ``enum`` (values of that type), ``format:
"date-time"`` (strings: RFC 3339 with an offset), ``properties`` and ``required`` (objects),
``items`` (arrays). A trigger's declaration is the top-level object: ``properties`` (name ->
schema) and ``required`` (names). Properties a schema does not declare are allowed in events,
as in JSON Schema; criteria may not name them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.criteria import LIST_OPS, ORDERING_OPS, PRESENCE_OPS, Op
from shared.problems import FieldError

TYPES = ("string", "number", "integer", "boolean", "object", "array")
FORMATS = ("date-time",)
KEYWORDS = frozenset(
    {"type", "description", "title", "enum", "format", "properties", "required", "items"}
)
MAX_DEPTH = 8
MAX_PROPERTIES = 200
MAX_ENUM = 100
MAX_TEXT = 1000
# Criteria paths are dotted and split on dots and whitespace: names must fit into one segment.
_NAME = re.compile(r"^[^.\s]{1,200}$")
_DIGITS = re.compile(r"^\d+$")


# The times an event may carry, after conversion to UTC: from the Unix epoch to the end of
# year 9999. An offset can move a time Python parses into year 0 or 10000, which no
# datetime (nor asyncpg) can hold; and nothing a customer does happened before 1970.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
TIME_RANGE = "1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"


def time_problem(value: datetime) -> str | None:
    """Why an aware ``value`` is outside the times events may carry, if it is."""
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        return f"is out of range: times go from {TIME_RANGE}"
    if not EARLIEST <= utc <= LATEST:
        return f"is out of range: times go from {TIME_RANGE}"
    return None


@dataclass(frozen=True)
class Schema:
    """One parsed schema of the subset."""

    type: str
    enum: tuple[Any, ...] | None = None
    format: str | None = None
    properties: Mapping[str, Schema] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    items: Schema | None = None


def declaration(properties: Mapping[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    """A trigger's ``properties`` and ``required`` as one object schema (its JSON form)."""
    return {"type": "object", "properties": dict(properties), "required": list(required)}


# -- parsing a declaration ----------------------------------------------------------------


def parse(raw: object, path: str = "$") -> tuple[Schema | None, list[FieldError]]:
    """The schema ``raw`` declares and every problem in it (paths below ``path``)."""
    errors = list(_problems(raw, path, 1))
    if errors or not isinstance(raw, dict):
        return None, errors
    return _build(raw), []


def _problems(raw: object, path: str, depth: int) -> Iterator[FieldError]:
    if not isinstance(raw, dict):
        yield FieldError(path, "a schema is an object with a 'type'")
        return
    if depth > MAX_DEPTH:
        yield FieldError(path, f"schemas nest at most {MAX_DEPTH} levels deep")
        return
    for key in sorted(set(raw) - KEYWORDS):
        yield FieldError(_key(path, key), f"unknown keyword '{key}' (supported: {_list(KEYWORDS)})")
    kind = raw.get("type")
    if kind not in TYPES:
        yield FieldError(_key(path, "type"), f"required: one of {', '.join(TYPES)}")
        return
    for text in ("description", "title"):
        if text in raw and not (isinstance(raw[text], str) and len(raw[text]) <= MAX_TEXT):
            yield FieldError(_key(path, text), f"a string of at most {MAX_TEXT} characters")
    yield from _enum_problems(raw, path, kind)
    yield from _format_problems(raw, path, kind)
    yield from _object_problems(raw, path, kind, depth)
    yield from _array_problems(raw, path, kind, depth)


def _enum_problems(raw: dict[str, Any], path: str, kind: str) -> Iterator[FieldError]:
    if "enum" not in raw:
        return
    values, where = raw["enum"], _key(path, "enum")
    if kind in ("object", "array"):
        yield FieldError(where, f"an {kind} has no enum")
    elif not isinstance(values, list) or not 1 <= len(values) <= MAX_ENUM:
        yield FieldError(where, f"a list of 1 to {MAX_ENUM} values")
    else:
        for i, value in enumerate(values):
            if not fits(kind, value):
                yield FieldError(f"{where}[{i}]", f"{_shown(value)} is not of type {kind}")


def _format_problems(raw: dict[str, Any], path: str, kind: str) -> Iterator[FieldError]:
    if "format" not in raw:
        return
    where = _key(path, "format")
    if kind != "string":
        yield FieldError(where, "only strings have a format")
    elif raw["format"] not in FORMATS:
        yield FieldError(where, f"supported formats: {', '.join(FORMATS)}")
    elif "enum" in raw:
        yield FieldError(where, "a string has either an enum or a format")


def _object_problems(raw: dict[str, Any], path: str, kind: str, depth: int) -> Iterator[FieldError]:
    if kind != "object":
        for key in ("properties", "required"):
            if key in raw:
                yield FieldError(_key(path, key), "only objects have properties")
        return
    properties = raw.get("properties", {})
    if not isinstance(properties, dict) or len(properties) > MAX_PROPERTIES:
        yield FieldError(_key(path, "properties"), f"a map of at most {MAX_PROPERTIES} names")
        properties = {}
    for name, schema in properties.items():
        where = _key(_key(path, "properties"), name)
        if not _NAME.match(name):
            yield FieldError(where, "a property name is 1 to 200 characters without dots or spaces")
        else:
            yield from _problems(schema, where, depth + 1)
    yield from _required_problems(raw.get("required", []), _key(path, "required"), properties)


def _required_problems(
    required: object, path: str, properties: Mapping[str, Any]
) -> Iterator[FieldError]:
    if not isinstance(required, list):
        yield FieldError(path, "a list of property names")
        return
    seen: set[str] = set()
    for i, name in enumerate(required):
        if not isinstance(name, str) or name not in properties:
            yield FieldError(f"{path}[{i}]", f"{_shown(name)} is not a declared property")
        elif name in seen:
            yield FieldError(f"{path}[{i}]", f"'{name}' is listed twice")
        else:
            seen.add(name)


def _array_problems(raw: dict[str, Any], path: str, kind: str, depth: int) -> Iterator[FieldError]:
    if "items" not in raw:
        return
    if kind != "array":
        yield FieldError(_key(path, "items"), "only arrays have items")
    else:
        yield from _problems(raw["items"], _key(path, "items"), depth + 1)


def _build(raw: dict[str, Any]) -> Schema:
    enum = raw.get("enum")
    return Schema(
        type=raw["type"],
        enum=tuple(enum) if isinstance(enum, list) else None,
        format=raw.get("format"),
        properties={k: _build(v) for k, v in raw.get("properties", {}).items()},
        required=tuple(raw.get("required", [])),
        items=_build(raw["items"]) if "items" in raw else None,
    )


# -- values --------------------------------------------------------------------------------


def fits(kind: str, value: object) -> bool:
    """Whether a JSON ``value`` is of the schema type ``kind`` (a boolean is no number)."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "number":
        return isinstance(value, int | float)
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "object":
        return isinstance(value, dict)
    return kind == "array" and isinstance(value, list)


def _equal(a: object, b: object) -> bool:
    """JSON equality: 1 equals 1.0, a boolean never equals a number."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def violations(schema: Schema, value: object, path: str, limit: int) -> list[str]:
    """Up to ``limit`` places where ``value`` breaks ``schema``: ``"path: why"`` each."""
    found: list[str] = []
    _check(schema, value, path, found, limit)
    return found


def _check(schema: Schema, value: object, path: str, found: list[str], limit: int) -> None:
    if len(found) >= limit:
        return
    if not fits(schema.type, value):
        found.append(f"{path}: expected {schema.type}, found {_kind_of(value)}")
    elif schema.enum is not None and not any(_equal(value, v) for v in schema.enum):
        # Not the value: violations are kept as samples, and a value can be personal data.
        found.append(f"{path}: not one of the enum values")
    elif schema.format == "date-time" and not _is_date_time(value):
        found.append(f"{path}: not an RFC 3339 date-time with an offset")
    elif isinstance(value, dict):
        for name in schema.required:
            if name not in value:
                found.append(f"{path}.{name}: required")
        for name, sub in schema.properties.items():
            if name in value:
                _check(sub, value[name], f"{path}.{name}", found, limit)
    elif isinstance(value, list) and schema.items is not None:
        for i, item in enumerate(value):
            _check(schema.items, item, f"{path}[{i}]", found, limit)
    del found[limit:]


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str) or len(value) < 20 or value[10] not in "Tt ":
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return False
    return parsed.tzinfo is not None and time_problem(parsed) is None


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    for kind in ("boolean", "integer", "number", "string", "object", "array"):
        if fits(kind, value):
            return kind
    return type(value).__name__


# -- criteria against a declaration --------------------------------------------------------


def resolve(schema: Schema, dotted: str) -> Schema | None:
    """The schema of the property at a criteria path (``cart.total``, ``items.0.sku``);
    ``None`` when the declaration does not have it."""
    node: Schema | None = schema
    for segment in dotted.split("."):
        if node is None:
            return None
        if node.type == "object":
            node = node.properties.get(segment)
        elif node.type == "array" and _DIGITS.match(segment):
            node = node.items
        else:
            return None
    return node


def comparison_problem(schema: Schema, op: Op, value: object) -> str | None:
    """Why comparing a property of ``schema`` with ``value`` under ``op`` cannot be meant;
    ``None`` when it can. ``null`` compares with anything (it means "absent")."""
    if op in PRESENCE_OPS:
        return None
    values = value if op in LIST_OPS and isinstance(value, list) else [value]
    target = _compared_type(schema, op)
    if target is None:
        return f"a property of type {schema.type} cannot be compared with '{op}'"
    for v in values:
        if v is None or target == "any":
            continue
        if not fits("number" if target == "integer" else target, v):
            return f"compares a property of type {_declared(schema)} with {_shown(v)}"
        known = schema.enum if op in (Op.EQ, Op.IN) and target == schema.type else None
        if known is not None and not any(_equal(v, e) for e in known):
            return f"{_shown(v)} is not one of the property's enum values"
    return None


def _compared_type(schema: Schema, op: Op) -> str | None:
    """The type the compared values must have; ``None`` when ``op`` does not apply."""
    if schema.type == "array":
        if op is not Op.CONTAINS:
            return None
        return schema.items.type if schema.items is not None else "any"
    if schema.type == "object":
        return None
    if op is Op.CONTAINS:
        return "string" if schema.type == "string" else None
    if op in ORDERING_OPS and schema.type == "boolean":
        return None
    return schema.type


def _declared(schema: Schema) -> str:
    return f"{schema.type} ({schema.format})" if schema.format else schema.type


def _shown(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 60 else text[:57] + "..."


def _key(path: str, name: str) -> str:
    if path == "$":
        return name
    return f"{path}.{name}"


def _list(names: frozenset[str]) -> str:
    return ", ".join(sorted(names))
