"""Compiled criteria: every operator, paths, odd types, combinators, and explanations."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from shared.criteria import All, AnyOf, Criteria, Match, Not
from shared.matcher import EventView, Matcher, compile_criteria, describe

CRITERIA: TypeAdapter[Match | All | AnyOf | Not] = TypeAdapter(Criteria)
PROPERTIES = settings(max_examples=200, deadline=None, database=None)


def matcher(raw: Any) -> Matcher:
    return compile_criteria(CRITERIA.validate_python(raw))


def on_property(op: str, value: Any = None, *, path: str = "p", given: bool = True) -> Matcher:
    condition: dict[str, Any] = {"property": path, "op": op}
    if given:
        condition["value"] = value
    return matcher({"event": "e", "where": [condition]})


def on_attribute(op: str, value: Any = None, *, given: bool = True) -> Matcher:
    condition: dict[str, Any] = {"attribute": "a", "op": op}
    if given:
        condition["value"] = value
    return matcher({"profile": [condition]})


def event(**properties: Any) -> EventView:
    return EventView("e", properties)


MISSING: dict[str, Any] = {}


# --- operators ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("eq", "JP", "JP", True),
        ("eq", "JP", "jp", False),
        ("eq", 1, 1.0, True),
        ("eq", 1.0, 1, True),
        ("eq", 1, True, False),
        ("eq", True, 1, False),
        ("eq", False, 0, False),
        ("eq", 0, False, False),
        ("eq", True, True, True),
        ("eq", "1", 1, False),
        ("eq", None, None, True),
        ("eq", None, 0, False),
        ("eq", None, "", False),
        ("eq", 0, None, False),
        ("eq", 1, [1], False),
        ("neq", "JP", "US", True),
        ("neq", "JP", "JP", False),
        ("neq", 1, 1.0, False),
        ("neq", 1, True, True),
        ("neq", None, None, False),
        ("neq", None, 0, True),
        ("gt", 50, 60, True),
        ("gt", 50, 50, False),
        ("gt", 50, 50.5, True),
        ("gte", 50, 50, True),
        ("gte", 50, 49.99, False),
        ("lt", 50, 49, True),
        ("lt", 50, 50, False),
        ("lte", 50, 50.0, True),
        ("lte", 50, 51, False),
        ("gt", 0, True, False),
        ("lt", 2, False, False),
        ("gt", 50, "60", False),
        ("gt", "50", 60, False),
        ("gt", 50, None, False),
        ("gt", 50, [60], False),
        ("gt", 50, {"x": 60}, False),
        ("gt", "b", "c", True),
        ("gt", "b", "a", False),
        ("lte", "b", "b", True),
        ("lt", "b", "B", True),  # code-point order: upper case sorts first
        ("gt", "b", "B", False),
        ("in", ["JP", "US"], "US", True),
        ("in", ["JP", "US"], "FR", False),
        ("in", [1, 2], 2.0, True),
        ("in", [1, 2], True, False),
        ("in", [True], 1, False),
        ("in", [True], True, True),
        ("in", [0], False, False),
        ("in", [None], None, True),
        ("in", ["a"], ["a"], False),
        ("in", ["a"], {"a": 1}, False),
        ("not_in", ["JP", "US"], "FR", True),
        ("not_in", ["JP", "US"], "JP", False),
        ("not_in", [1], True, True),
        ("not_in", [1], 1.0, False),
        ("contains", "sale", "summer sale", True),
        ("contains", "Sale", "summer sale", False),
        ("contains", "sale", "sal", False),
        ("contains", "a", ["a", "b"], True),
        ("contains", "a", ["ab"], False),
        ("contains", 1, [1.0, 2], True),
        ("contains", 1, [True], False),
        ("contains", 3, "123", False),
        ("contains", "1", 123, False),
        ("contains", "a", {"a": 1}, False),
        ("contains", "a", None, False),
    ],
)
def test_operator(op: str, value: Any, actual: Any, expected: bool) -> None:
    assert on_property(op, value).matches(event(p=actual), MISSING) is expected
    assert on_attribute(op, value).matches(None, {"a": actual}) is expected


@pytest.mark.parametrize(
    ("op", "actual", "expected"),
    [
        ("exists", 0, True),
        ("exists", "", True),
        ("exists", False, True),
        ("exists", [], True),
        ("exists", None, False),
        ("not_exists", 0, False),
        ("not_exists", None, True),
    ],
)
def test_presence(op: str, actual: Any, expected: bool) -> None:
    assert on_property(op, given=False).matches(event(p=actual), MISSING) is expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", 1, False),
        ("eq", None, False),
        ("neq", 1, True),
        ("neq", None, True),
        ("gt", 1, False),
        ("gte", "a", False),
        ("lt", 1, False),
        ("lte", 1, False),
        ("in", [1, None], False),
        ("not_in", [1, None], True),
        ("contains", "a", False),
    ],
)
def test_a_missing_value_matches_only_the_negative_operators(
    op: str, value: Any, expected: bool
) -> None:
    assert on_property(op, value).matches(event(), MISSING) is expected
    assert on_attribute(op, value).matches(None, MISSING) is expected


def test_presence_of_a_missing_value() -> None:
    assert on_property("exists", given=False).matches(event(), MISSING) is False
    assert on_property("not_exists", given=False).matches(event(), MISSING) is True


# --- timestamps --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("gt", "2024-05-01T10:00:00Z", "2024-05-01T10:00:01Z", True),
        ("gt", "2024-05-01T10:00:00Z", "2024-05-01T09:59:59Z", False),
        # Same instant written with another offset: as strings "18:00" > "09:00" would hold.
        ("gt", "2024-05-01T09:00:00Z", "2024-05-01T18:00:00+09:00", False),
        ("gte", "2024-05-01T09:00:00Z", "2024-05-01T18:00:00+09:00", True),
        ("lte", "2024-05-01T09:00:00Z", "2024-05-01T18:00:00+09:00", True),
        ("lt", "2024-05-01T10:00:00+02:00", "2024-05-01T09:00:00Z", False),
        ("gt", "2024-05-01T10:00:00+02:00", "2024-05-01T09:00:00Z", True),
        ("gt", "2024-05-01T10:00:00Z", "2024-05-01T10:00:00.5z", True),
        ("gt", "2024-05-01T10:00:00Z", "2024-05-01 10:00:01+00:00", True),
        ("lt", "2024-05-01T10:00:00.000001Z", "2024-05-01T10:00:00Z", True),
        # An actual value that is no RFC 3339 date-time is a type mismatch.
        ("lt", "2024-05-01T10:00:00Z", "yesterday", False),
        ("gt", "2024-05-01T10:00:00Z", "2024-05-01T11:00:00", False),
        ("gt", "2024-05-01T10:00:00Z", "2024-02-30T10:00:00Z", False),
        ("gt", "2024-05-01T10:00:00Z", 1714557600, False),
        # Without a time and offset the strings compare as strings.
        ("gt", "2024-05-01", "2024-05-02", True),
        ("gt", "2024-05-01", "2024-05-01T00:00:00Z", True),
        ("lt", "2024-05-01", "2024-04-30", True),
    ],
)
def test_timestamps_compare_as_instants(op: str, value: str, actual: Any, expected: bool) -> None:
    assert on_property(op, value).matches(event(p=actual), MISSING) is expected


# --- event names and paths ---------------------------------------------------------------


def test_the_event_name_must_match() -> None:
    m = matcher({"event": "cart_add"})
    assert m.matches(EventView("cart_add", {}), MISSING)
    assert not m.matches(EventView("cart_view", {}), MISSING)
    assert not m.matches(EventView("Cart_Add", {}), MISSING)


def test_criteria_without_event_name_match_any_event() -> None:
    m = matcher({"profile": [{"attribute": "a", "op": "eq", "value": 1}]})
    assert m.matches(EventView("anything", {}), {"a": 1})
    assert not m.matches(EventView("anything", {}), {"a": 2})


NESTED = {
    "cart": {"total": 80, "currency": "JPY", "coupon": None},
    "items": [{"sku": "A1", "tags": ["sale"]}, {"sku": "B2"}],
    "0": "zero",
    "matrix": [[1, 2], [3, 4]],
}


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("cart.total", 80, True),
        ("cart.currency", "JPY", True),
        ("items.0.sku", "A1", True),
        ("items.1.sku", "B2", True),
        ("items.0.tags.0", "sale", True),
        ("matrix.1.0", 3, True),
        ("0", "zero", True),
        ("items.2.sku", "B2", False),
        ("items.sku", "A1", False),
        ("items.-1.sku", "B2", False),
        ("cart.total.amount", 80, False),
        ("cart.coupon.code", "X", False),
        ("cart.currency.0", "J", False),
        ("nothing.here", 1, False),
    ],
)
def test_dotted_paths_reach_into_objects_and_lists(path: str, value: Any, expected: bool) -> None:
    assert on_property("eq", value, path=path).matches(EventView("e", NESTED), MISSING) is expected


@pytest.mark.parametrize("path", ["items.5", "items.x", "cart.total.x", "cart.coupon.x", "a.b.c"])
def test_a_path_that_leads_nowhere_is_missing(path: str) -> None:
    view = EventView("e", NESTED)
    assert on_property("exists", path=path, given=False).matches(view, MISSING) is False
    assert on_property("not_exists", path=path, given=False).matches(view, MISSING) is True
    assert on_property("neq", 1, path=path).matches(view, MISSING) is True


def test_profile_attributes_take_dotted_paths_too() -> None:
    m = matcher({"profile": [{"attribute": "address.country", "op": "eq", "value": "JP"}]})
    assert m.matches(None, {"address": {"country": "JP"}})
    assert not m.matches(None, {"address": "JP"})


# --- combinators -------------------------------------------------------------------------

CART_ADD = {"event": "cart_add"}
JAPAN = {"profile": [{"attribute": "country", "op": "eq", "value": "JP"}]}


@pytest.mark.parametrize(
    ("raw", "name", "country", "expected"),
    [
        ({"all": [CART_ADD, JAPAN]}, "cart_add", "JP", True),
        ({"all": [CART_ADD, JAPAN]}, "cart_add", "US", False),
        ({"all": [CART_ADD, JAPAN]}, "cart_view", "JP", False),
        ({"any": [CART_ADD, JAPAN]}, "cart_view", "JP", True),
        ({"any": [CART_ADD, JAPAN]}, "cart_add", "US", True),
        ({"any": [CART_ADD, JAPAN]}, "cart_view", "US", False),
        ({"not": CART_ADD}, "cart_view", "JP", True),
        ({"not": CART_ADD}, "cart_add", "JP", False),
        ({"all": [CART_ADD, {"not": JAPAN}]}, "cart_add", "US", True),
        ({"all": [CART_ADD, {"not": JAPAN}]}, "cart_add", "JP", False),
        ({"not": {"any": [CART_ADD, JAPAN]}}, "cart_view", "US", True),
    ],
)
def test_combinators(raw: Any, name: str, country: str, expected: bool) -> None:
    assert matcher(raw).matches(EventView(name, {}), {"country": country}) is expected


# --- judging the profile alone -----------------------------------------------------------


def test_without_an_event_only_profile_conditions_are_judged() -> None:
    assert matcher(JAPAN).matches(None, {"country": "JP"})
    assert not matcher(JAPAN).matches(None, {"country": "US"})
    assert not matcher(CART_ADD).matches(None, {"country": "JP"})
    assert not matcher({"all": [CART_ADD, JAPAN]}).matches(None, {"country": "JP"})
    assert matcher({"any": [CART_ADD, JAPAN]}).matches(None, {"country": "JP"})


def test_without_an_event_a_where_condition_cannot_hold() -> None:
    m = matcher({"event": "e", "where": [{"property": "p", "op": "not_exists"}]})
    assert m.matches(event(), MISSING)
    assert not m.matches(None, MISSING)


# --- explanations ------------------------------------------------------------------------


def test_explain_is_empty_on_a_match() -> None:
    m = matcher({"all": [CART_ADD, JAPAN]})
    assert m.explain(EventView("cart_add", {}), {"country": "JP"}) == []


def test_explain_names_the_wrong_event() -> None:
    m = matcher({"event": "cart_add", "where": [{"property": "x", "op": "exists"}]})
    assert m.explain(EventView("cart_view", {}), MISSING) == [
        "event name is 'cart_view', not 'cart_add'"
    ]


def test_explain_names_every_failing_condition() -> None:
    m = matcher(
        {
            "event": "cart_add",
            "where": [
                {"property": "cart.total", "op": "gt", "value": 50},
                {"property": "cart.currency", "op": "eq", "value": "JPY"},
                {"property": "coupon", "op": "exists"},
            ],
            "profile": [{"attribute": "country", "op": "eq", "value": "JP"}],
        }
    )
    view = EventView("cart_add", {"cart": {"total": 20, "currency": "JPY"}})
    assert m.explain(view, {"country": "US"}) == [
        "property cart.total is 20, needs gt 50",
        "property coupon is missing",
        "profile attribute country is 'US', needs eq 'JP'",
    ]


@pytest.mark.parametrize(
    ("op", "value", "actual", "reason"),
    [
        ("gt", 50, None, "property p is null, needs gt 50"),
        ("gt", 50, "60", "property p is '60', needs gt 50"),
        ("eq", True, 1, "property p is 1, needs eq true"),
        ("eq", None, False, "property p is false, needs eq null"),
        ("in", ["JP", "US"], "FR", "property p is 'FR', needs in ['JP', 'US']"),
        ("contains", "a", ["b", 1.5], "property p is ['b', 1.5], needs contains 'a'"),
        ("lt", "2024-01-01", "soon", "property p is 'soon', needs lt '2024-01-01'"),
        ("not_in", [1], 1, "property p is 1, needs not_in [1]"),
        ("neq", "x", "x", "property p is 'x', needs neq 'x'"),
        ("gt", 1, {"a": {"b": 1}}, "property p is {'a': {'b': 1}}, needs gt 1"),
    ],
)  # fmt: skip
def test_explain_shows_the_value_found_and_the_condition(
    op: str, value: Any, actual: Any, reason: str
) -> None:
    assert on_property(op, value).explain(event(p=actual), MISSING) == [reason]


def test_explain_presence() -> None:
    exists = on_property("exists", given=False)
    assert exists.explain(event(p=None), MISSING) == ["property p is null, needs exists"]
    assert exists.explain(event(), MISSING) == ["property p is missing"]
    not_exists = on_property("not_exists", given=False)
    assert not_exists.explain(event(p=3), MISSING) == ["property p is 3, needs not_exists"]


def test_explain_cuts_long_values() -> None:
    [reason] = on_property("eq", "x").explain(event(p="y" * 500), MISSING)
    assert reason.startswith("property p is 'yyy")
    assert reason.endswith(", needs eq 'x'")
    assert len(reason) < 120


def test_explain_without_an_event() -> None:
    assert matcher(CART_ADD).explain(None, MISSING) == ["no event to judge, needs event 'cart_add'"]
    assert matcher(JAPAN).explain(None, {"country": "US"}) == [
        "profile attribute country is 'US', needs eq 'JP'"
    ]


def test_explain_all_gathers_the_reasons_of_each_failing_part() -> None:
    m = matcher({"all": [CART_ADD, JAPAN, {"profile": [{"attribute": "vip", "op": "exists"}]}]})
    assert m.explain(EventView("cart_view", {}), {"country": "JP"}) == [
        "event name is 'cart_view', not 'cart_add'",
        "profile attribute vip is missing",
    ]


def test_explain_any_lists_each_alternative() -> None:
    m = matcher({"any": [CART_ADD, {"all": [JAPAN, {"event": "x"}]}]})
    assert m.explain(EventView("cart_view", {}), {"country": "US"}) == [
        "no alternative under 'any' matched",
        "any[0]: event name is 'cart_view', not 'cart_add'",
        "any[1]: profile attribute country is 'US', needs eq 'JP'",
        "any[1]: event name is 'cart_view', not 'x'",
    ]


def test_explain_not_says_what_matched() -> None:
    m = matcher({"not": {"event": "e", "where": [{"property": "p", "op": "gt", "value": 1}]}})
    assert m.explain(event(p=2), MISSING) == [
        "matches what 'not' excludes: event 'e' and property p gt 1"
    ]


def test_describe_reads_nested_criteria() -> None:
    raw = {"any": [{"all": [CART_ADD, JAPAN]}, {"not": {"event": "x"}}]}
    assert describe(CRITERIA.validate_python(raw)) == (
        "any of (all of (event 'cart_add'; profile attribute country eq 'JP'); not (event 'x'))"
    )


# --- properties --------------------------------------------------------------------------

KEYS = ["a", "b", "0", "1"]
STRINGS = ["", "a", "ab", "JP", "2024-01-01", "2024-01-01T00:00:00Z", "2024-01-01T09:00:00+09:00"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, 1.5, -2.5, 1e300]),
    st.sampled_from(STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=6,
)
documents = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=3)
paths = st.lists(st.sampled_from(KEYS), min_size=1, max_size=3).map(".".join)
orderable = scalars.filter(lambda v: v is not None and not isinstance(v, bool))
names = st.sampled_from(["x", "y"])


@st.composite
def conditions(draw: st.DrawFn, key: str) -> dict[str, Any]:
    op = draw(st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in"] * 2 + [
        "contains", "exists", "not_exists"]))  # fmt: skip
    condition: dict[str, Any] = {key: draw(paths), "op": op}
    if op in ("eq", "neq"):
        condition["value"] = draw(scalars)
    elif op in ("in", "not_in"):
        condition["value"] = draw(st.lists(scalars, min_size=1, max_size=3))
    elif op == "contains":
        condition["value"] = draw(st.sampled_from([*STRINGS, 1, 1.5]))
    elif op not in ("exists", "not_exists"):
        condition["value"] = draw(orderable)
    return condition


@st.composite
def matches(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if draw(st.booleans()):
        raw["event"] = draw(names)
        raw["where"] = draw(st.lists(conditions("property"), max_size=2))
    raw["profile"] = draw(st.lists(conditions("attribute"), min_size=0 if raw else 1, max_size=2))
    return raw


raw_criteria = st.recursive(
    matches(),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"all": parts})
        | st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"any": parts})
        | inner.map(lambda part: {"not": part})
    ),
    max_leaves=5,
)
criteria = raw_criteria.map(CRITERIA.validate_python)
events = st.none() | st.builds(EventView, names | st.just("z"), documents)


@PROPERTIES
@given(criteria, events, documents)
def test_matching_never_raises_and_explain_agrees(
    c: Match | All | AnyOf | Not, view: EventView | None, profile: dict[str, Any]
) -> None:
    m = compile_criteria(c)
    matched = m.matches(view, profile)
    reasons = m.explain(view, profile)
    assert (reasons == []) is matched
    assert all(isinstance(r, str) and r for r in reasons)


@PROPERTIES
@given(criteria, events, documents)
def test_not_inverts(
    c: Match | All | AnyOf | Not, view: EventView | None, profile: dict[str, Any]
) -> None:
    negated = compile_criteria(Not(not_=c))
    assert negated.matches(view, profile) is not compile_criteria(c).matches(view, profile)


@PROPERTIES
@given(criteria, events, documents)
def test_all_or_any_of_one_is_that_one(
    c: Match | All | AnyOf | Not, view: EventView | None, profile: dict[str, Any]
) -> None:
    alone = compile_criteria(c).matches(view, profile)
    assert compile_criteria(All(all=[c])).matches(view, profile) is alone
    assert compile_criteria(AnyOf(any=[c])).matches(view, profile) is alone


@PROPERTIES
@given(json_values, scalars)
def test_neq_is_not_eq_when_the_value_is_present(actual: Any, value: Any) -> None:
    profile = {"a": actual}
    equal = on_attribute("eq", value).matches(None, profile)
    assert on_attribute("neq", value).matches(None, profile) is not equal


@PROPERTIES
@given(st.none() | json_values.map(lambda v: {"a": v}), scalars)
def test_in_a_list_of_one_is_eq(profile: dict[str, Any] | None, value: Any) -> None:
    profile = profile or {}
    equal = on_attribute("eq", value).matches(None, profile)
    assert on_attribute("in", [value]).matches(None, profile) is equal
    assert on_attribute("not_in", [value]).matches(None, profile) is not equal


@PROPERTIES
@given(documents, paths)
def test_exists_and_not_exists_are_opposites(profile: dict[str, Any], path: str) -> None:
    def judge(op: str) -> bool:
        return matcher({"profile": [{"attribute": path, "op": op}]}).matches(None, profile)

    assert judge("exists") is not judge("not_exists")
