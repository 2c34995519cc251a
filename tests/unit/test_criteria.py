"""Criteria models: what the designer accepts, what it rejects, and where it says so."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.criteria import (
    All,
    AnyOf,
    AttributeCondition,
    Criteria,
    Match,
    Not,
    Op,
    PropertyCondition,
    depth,
    dump,
    event_names,
)
from shared.problems import json_path

CRITERIA: TypeAdapter[Match | All | AnyOf | Not] = TypeAdapter(Criteria)


def validate(raw: Any) -> Match | All | AnyOf | Not:
    return CRITERIA.validate_python(raw)


def errors(raw: Any) -> list[tuple[str, str]]:
    """(JSON path, message) of every problem with ``raw``; fails if it is valid."""
    with pytest.raises(ValidationError) as caught:
        validate(raw)
    return [(json_path(e["loc"]), e["msg"]) for e in caught.value.errors()]


def where(condition: dict[str, Any]) -> dict[str, Any]:
    return {"event": "e", "where": [{"property": "p", **condition}]}


VALID_CONDITIONS: list[dict[str, Any]] = [
    {"op": "eq", "value": "JP"},
    {"op": "eq", "value": 1},
    {"op": "eq", "value": 1.5},
    {"op": "eq", "value": True},
    {"op": "eq", "value": None},
    {"op": "neq", "value": "JP"},
    {"op": "neq", "value": None},
    {"op": "gt", "value": 50},
    {"op": "gte", "value": 0.5},
    {"op": "lt", "value": "2024-05-01T10:00:00Z"},
    {"op": "lte", "value": "b"},
    {"op": "in", "value": ["JP", 1, 2.5, True, None]},
    {"op": "not_in", "value": ["JP"]},
    {"op": "contains", "value": "sale"},
    {"op": "contains", "value": 3},
    {"op": "exists"},
    {"op": "exists", "value": None},
    {"op": "not_exists"},
]


@pytest.mark.parametrize("condition", VALID_CONDITIONS, ids=lambda c: f"{c['op']}-{c.get('value')}")
def test_every_operator_accepts_a_fitting_value(condition: dict[str, Any]) -> None:
    match = validate(where(condition))
    assert isinstance(match, Match)
    assert match.where[0].op == Op(condition["op"])
    assert match.where[0].value == condition.get("value")


def test_the_valid_cases_cover_every_operator() -> None:
    assert {Op(c["op"]) for c in VALID_CONDITIONS} == set(Op)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"op": "gt", "value": [1]}, "'gt' compares with one value, not a list"),
        ({"op": "gte", "value": True}, "'gte' needs a number or a string"),
        ({"op": "lt", "value": None}, "'lt' needs a number or a string"),
        ({"op": "lte"}, "'lte' needs a value"),
        ({"op": "in", "value": "JP"}, "'in' needs a non-empty list of values"),
        ({"op": "in", "value": []}, "'in' needs a non-empty list of values"),
        ({"op": "not_in", "value": 3}, "'not_in' needs a non-empty list of values"),
        ({"op": "exists", "value": 3}, "'exists' takes no value"),
        ({"op": "not_exists", "value": "x"}, "'not_exists' takes no value"),
        ({"op": "eq"}, "'eq' needs a value"),
        ({"op": "neq", "value": ["a"]}, "'neq' compares with one value, not a list"),
        ({"op": "contains", "value": True}, "'contains' needs a string or a number"),
        ({"op": "contains", "value": None}, "'contains' needs a string or a number"),
        ({"op": "contains"}, "'contains' needs a value"),
    ],
)
def test_an_operator_rejects_a_value_it_cannot_compare_with(
    condition: dict[str, Any], message: str
) -> None:
    [(path, msg)] = errors(where(condition))
    assert path == "where[0]"
    assert message in msg


@pytest.mark.parametrize("value", [{"a": 1}, [[1]], [{"a": 1}]])
def test_a_value_that_is_no_json_scalar_is_one_error_at_value(value: Any) -> None:
    op = "in" if isinstance(value, list) else "eq"
    assert errors(where({"op": op, "value": value})) == [
        (
            "where[0].value",
            "Value error, value must be a string, a number, a boolean, null or a list of those",
        )
    ]


def test_an_unknown_operator_is_rejected_at_op() -> None:
    [(path, msg)] = errors(where({"op": "matches", "value": "x"}))
    assert path == "where[0].op"
    assert "'eq'" in msg


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"event": "e", "when": "now"}, "when"),
        ({"event": "e", "where": [{"property": "p", "op": "exists", "ignore_case": True}]},
         "where[0].ignore_case"),
        ({"event": "e", "profile": [{"property": "p", "op": "exists"}]}, "profile[0].property"),
        ({"all": [{"event": "e"}], "extra": 1}, "extra"),
        ({"not": {"event": "e"}, "event": "f"}, "event"),
    ],
)  # fmt: skip
def test_unknown_keys_are_rejected_where_they_stand(raw: dict[str, Any], path: str) -> None:
    assert path in [p for p, _ in errors(raw)]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "criteria need an event, 'where' or 'profile' conditions"),
        ({"where": [], "profile": []}, "criteria need an event, 'where' or 'profile' conditions"),
        (
            {"where": [{"property": "p", "op": "exists"}]},
            "'where' conditions need an 'event' name",
        ),
    ],
)
def test_empty_criteria_and_where_without_event_are_rejected(
    raw: dict[str, Any], message: str
) -> None:
    [(path, msg)] = errors(raw)
    assert path == "$"
    assert message in msg


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"all": []}, "all"),
        ({"any": []}, "any"),
        ({"event": ""}, "event"),
        ({"event": "e", "where": [{"property": "a..b", "op": "exists"}]}, "where[0].property"),
        ({"event": "e", "where": [{"property": "a b", "op": "exists"}]}, "where[0].property"),
        ({"event": "e", "where": [{"property": ".a", "op": "exists"}]}, "where[0].property"),
        ("cart_add", "$"),
        ([{"event": "e"}], "$"),
    ],
)
def test_malformed_criteria_are_rejected(raw: Any, path: str) -> None:
    assert [p for p, _ in errors(raw)] == [path]


def test_a_profile_only_match_needs_no_event() -> None:
    match = validate({"profile": [{"attribute": "country", "op": "eq", "value": "JP"}]})
    assert match == Match(profile=[AttributeCondition(attribute="country", op=Op.EQ, value="JP")])


def test_combinators_nest() -> None:
    raw = {
        "all": [
            {"event": "cart_add"},
            {"any": [{"not": {"event": "x"}}, {"profile": [{"attribute": "a", "op": "exists"}]}]},
        ]
    }
    criteria = validate(raw)
    assert isinstance(criteria, All)
    inner = criteria.all[1]
    assert isinstance(inner, AnyOf)
    negated = inner.any[0]
    assert isinstance(negated, Not)
    assert negated.not_ == Match(event="x")
    assert depth(criteria) == 4


def test_validated_models_pass_validation_again() -> None:
    match = Match(event="e", where=[PropertyCondition(property="p", op=Op.GT, value=1)])
    assert validate(Not(not_=match)) == Not(not_=match)
    assert validate(match) == match


EXISTS_WITH_A_VALUE = {"property": "p", "op": "exists", "value": 3}


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (
            {"all": [{"event": "x"}, {"not": {"event": "y", "where": [EXISTS_WITH_A_VALUE]}}]},
            "all[1].not.where[0]",
        ),
        (
            {"any": [{"event": "e", "where": [{"property": "p", "op": "near", "value": 1}]}]},
            "any[0].where[0].op",
        ),
        ({"not": {"all": [{}]}}, "not.all[0]"),
        ({"any": [{"event": "e"}, {"all": []}]}, "any[1].all"),
        (
            {"all": [{"event": "e", "profile": [{"attribute": "a", "op": "in", "value": 1}]}]},
            "all[0].profile[0]",
        ),
    ],
)
def test_an_error_names_the_json_path_of_the_offending_field(raw: Any, path: str) -> None:
    assert [p for p, _ in errors(raw)] == [path]


def test_every_problem_is_reported_at_once() -> None:
    raw = {
        "all": [
            {"event": "e", "where": [{"property": "p", "op": "gt", "value": [1]}]},
            {"event": "e", "profile": [{"attribute": "a", "op": "eq"}]},
        ]
    }
    assert [p for p, _ in errors(raw)] == ["all[0].where[0]", "all[1].profile[0]"]


ROUND_TRIPS = [
    {"event": "cart_add"},
    {
        "event": "cart_add",
        "where": [{"property": "cart.total", "op": "gt", "value": 50}],
        "profile": [{"attribute": "country", "op": "eq", "value": "JP"}],
    },
    {"event": "e", "where": [{"property": "coupon", "op": "eq", "value": None}]},
    {"event": "e", "where": [{"property": "coupon", "op": "neq", "value": None}]},
    {"profile": [{"attribute": "email", "op": "exists"}]},
    {"profile": [{"attribute": "tags", "op": "in", "value": ["a", None, True, 1.5]}]},
    {"all": [{"event": "a"}, {"any": [{"event": "b"}, {"not": {"event": "c"}}]}]},
    {"not": {"not": {"event": "e", "where": [{"property": "p", "op": "not_exists"}]}}},
]


@pytest.mark.parametrize("raw", ROUND_TRIPS)
def test_dump_gives_back_what_the_client_wrote(raw: dict[str, Any]) -> None:
    criteria = validate(raw)
    assert dump(criteria) == raw
    assert validate(dump(criteria)) == criteria


def test_dump_leaves_out_defaults_and_a_null_presence_value() -> None:
    raw = {"event": "e", "where": [{"property": "p", "op": "exists", "value": None}], "profile": []}
    assert dump(validate(raw)) == {"event": "e", "where": [{"property": "p", "op": "exists"}]}


def test_dump_writes_not_under_its_json_name() -> None:
    assert dump(Not(not_=Match(event="e"))) == {"not": {"event": "e"}}


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"event": "a"}, {"a"}),
        ({"profile": [{"attribute": "x", "op": "exists"}]}, set()),
        ({"any": [{"event": "a"}, {"event": "b"}]}, {"a", "b"}),
        ({"all": [{"event": "a"}, {"profile": [{"attribute": "x", "op": "exists"}]}]}, set()),
        ({"not": {"event": "a"}}, set()),
    ],
)
def test_event_names_are_the_events_that_can_match(raw: Any, names: set[str]) -> None:
    assert event_names(validate(raw)) == names


def test_models_are_frozen() -> None:
    match = Match(event="e")
    with pytest.raises(ValidationError):
        match.event = "f"  # type: ignore[misc]
