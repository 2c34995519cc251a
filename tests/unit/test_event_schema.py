"""The JSON Schema subset of event triggers: declarations, event properties, criteria."""

from __future__ import annotations

from typing import Any

import pytest

from shared.criteria import Op
from shared.event_schema import (
    Schema,
    comparison_problem,
    declaration,
    parse,
    resolve,
    violations,
)

CART = declaration(
    {
        "cart": {
            "type": "object",
            "properties": {
                "total": {"type": "number"},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "sku": {"type": "string"}, "qty": {"type": "integer"}}, "required": ["sku"]}},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["total"],
        },
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "at": {"type": "string", "format": "date-time"},
        "gift": {"type": "boolean", "description": "wrapped as a present"},
        "anything": {"type": "array"},
    },
    ["cart"],
)  # fmt: skip


def schema() -> Schema:
    parsed, errors = parse(CART)
    assert errors == []
    assert parsed is not None
    return parsed


def test_a_valid_declaration_parses_into_its_tree() -> None:
    parsed = schema()
    assert parsed.required == ("cart",)
    assert parsed.properties["cart"].properties["items"].items is not None
    assert parsed.properties["currency"].enum == ("EUR", "USD")


@pytest.mark.parametrize(
    ("properties", "required", "path", "message"),
    [
        ({"a": {"type": "date"}}, [], "properties.a.type", "one of string, number"),
        ({"a": {}}, [], "properties.a.type", "required"),
        ({"a": "string"}, [], "properties.a", "an object with a 'type'"),
        ({"a": {"type": "string", "pattern": "x"}}, [], "properties.a.pattern", "unknown keyword"),
        ({"a": {"type": "number", "enum": [1, "two"]}}, [], "properties.a.enum[1]", "not of type"),
        ({"a": {"type": "integer", "enum": [True]}}, [], "properties.a.enum[0]", "not of type"),
        ({"a": {"type": "string", "enum": []}}, [], "properties.a.enum", "1 to 100"),
        ({"a": {"type": "object", "enum": [{}]}}, [], "properties.a.enum", "no enum"),
        ({"a": {"type": "number", "format": "date-time"}}, [], "properties.a.format", "strings"),
        ({"a": {"type": "string", "format": "email"}}, [], "properties.a.format", "date-time"),
        ({"a": {"type": "string", "properties": {}}}, [], "properties.a.properties", "objects"),
        ({"a": {"type": "object", "required": ["b"]}}, [], "properties.a.required[0]", "declared"),
        ({"a": {"type": "string", "items": {"type": "int"}}}, [], "properties.a.items", "arrays"),
        ({"a": {"type": "array", "items": {"type": "x"}}}, [], "properties.a.items.type", "one of"),
        ({"a.b": {"type": "string"}}, [], "properties.a.b", "without dots"),
        ({"a": {"type": "string"}}, ["a", "a"], "required[1]", "listed twice"),
        ({"a": {"type": "string"}}, ["b"], "required[0]", "not a declared property"),
        ({"a": {"type": "string", "description": 5}}, [], "properties.a.description", "string"),
    ],
)  # fmt: skip
def test_every_problem_of_a_declaration_has_its_path(
    properties: dict[str, Any], required: list[str], path: str, message: str
) -> None:
    parsed, errors = parse(declaration(properties, required))
    assert parsed is None
    assert [e.path for e in errors] == [path], errors
    assert message in errors[0].message


def test_all_problems_come_at_once_and_nesting_is_bounded() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(10):
        deep = {"type": "object", "properties": {"x": deep}}
    _, errors = parse(declaration({"a": {"type": "nope"}, "b": {"type": "string", "enum": [1]},
                                   "deep": deep}))  # fmt: skip
    paths = [e.path for e in errors]
    assert "properties.a.type" in paths
    assert "properties.b.enum[0]" in paths
    assert any(p.startswith("properties.deep") and "x" in p for p in paths)
    assert any("nest at most" in e.message for e in errors)


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"cart": {"total": 10}}, []),
        ({"cart": {"total": 10.5, "items": [{"sku": "a", "qty": 2.0}]}, "extra": [1]}, []),
        ({}, ["properties.cart: required"]),
        ({"cart": {"total": "10"}}, ["properties.cart.total: expected number, found string"]),
        ({"cart": {"total": True}}, ["properties.cart.total: expected number, found boolean"]),
        ({"cart": {"total": None}}, ["properties.cart.total: expected number, found null"]),
        ({"cart": {"total": 1, "items": [{"qty": 1.5}]}},
         ["properties.cart.items[0].sku: required",
          "properties.cart.items[0].qty: expected integer, found number"]),
        ({"cart": {"total": 1}, "currency": "GBP"},
         ["properties.currency: not one of the enum values"]),
        ({"cart": {"total": 1}, "at": "2026-03-08"},
         ["properties.at: not an RFC 3339 date-time with an offset"]),
        ({"cart": {"total": 1}, "at": "2026-03-08T10:00:00"},
         ["properties.at: not an RFC 3339 date-time with an offset"]),
        ({"cart": {"total": 1}, "at": "2026-03-08T10:00:00Z", "gift": False}, []),
        ({"cart": {"total": 1}, "at": "2026-03-08t10:00:00+01:00"}, []),
        ({"cart": []}, ["properties.cart: expected object, found array"]),
    ],
)  # fmt: skip
def test_event_properties_are_checked_against_the_declaration(
    properties: dict[str, Any], expected: list[str]
) -> None:
    assert violations(schema(), properties, "properties", limit=10) == expected


def test_violations_stop_at_the_limit() -> None:
    many = {"cart": {"total": 1, "items": [{"qty": "x"} for _ in range(50)]}}
    assert len(violations(schema(), many, "properties", limit=3)) == 3


@pytest.mark.parametrize(
    ("path", "kind"),
    [("cart", "object"), ("cart.total", "number"), ("cart.items.0.sku", "string"),
     ("cart.tags.3", "string"), ("currency", "string"), ("anything.0", None),
     ("cart.totl", None), ("cart.items.sku", None), ("currency.length", None)],
)  # fmt: skip
def test_criteria_paths_resolve_in_the_declaration(path: str, kind: str | None) -> None:
    found = resolve(schema(), path)
    assert (found.type if found else None) == kind


@pytest.mark.parametrize(
    ("path", "op", "value", "problem"),
    [
        ("cart.total", Op.GT, 50, None),
        ("cart.total", Op.GT, "50", "type number"),
        ("cart.total", Op.EQ, True, "type number"),
        ("cart.total", Op.IN, [1, 2.5], None),
        ("cart.total", Op.IN, [1, "x"], "'x'"),
        ("cart.total", Op.EQ, None, None),
        ("cart.items.0.qty", Op.LTE, 2.5, None),
        ("currency", Op.EQ, "EUR", None),
        ("currency", Op.EQ, "GBP", "enum"),
        ("currency", Op.CONTAINS, "U", None),
        ("at", Op.GTE, "2026-01-01T00:00:00Z", None),
        ("at", Op.GTE, 5, "date-time"),
        ("gift", Op.EQ, True, None),
        ("gift", Op.GT, True, "cannot be compared"),
        ("gift", Op.EQ, "yes", "type boolean"),
        ("cart", Op.EXISTS, None, None),
        ("cart", Op.EQ, "x", "cannot be compared"),
        ("cart.tags", Op.CONTAINS, "vip", None),
        ("cart.tags", Op.CONTAINS, 3, "type array"),
        ("cart.tags", Op.EQ, "vip", "cannot be compared"),
        ("anything", Op.CONTAINS, 3, None),
        ("cart.total", Op.CONTAINS, 3, "cannot be compared"),
    ],
)  # fmt: skip
def test_a_criterion_compares_a_property_with_a_value_of_its_type(
    path: str, op: Op, value: Any, problem: str | None
) -> None:
    found = resolve(schema(), path)
    assert found is not None
    answer = comparison_problem(found, op, value)
    if problem is None:
        assert answer is None
    else:
        assert answer is not None
        assert problem in answer, answer
