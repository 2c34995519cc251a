"""Criteria: what an event and a profile must look like for a rule to match.

The designer validates criteria with these models at design time; the runtime compiles
them once into matchers and evaluates them for every event. Bad criteria (unknown
operator, wrong value type) are a validation error here, never a runtime crash.

Grammar (docs/journeys.md, Criteria):
    {"event": "cart_add",
     "where":   [{"property": "cart.total", "op": "gt", "value": 50}],
     "profile": [{"attribute": "country", "op": "eq", "value": "JP"}]}
    {"all": [c, ...]}   {"any": [c, ...]}   {"not": c}
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from shared.problems import UNION_TAGS

JsonScalar = str | int | float | bool | None


class Op(StrEnum):
    EQ = "eq"
    NEQ = "neq"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"


ORDERING_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})
LIST_OPS = frozenset({Op.IN, Op.NOT_IN})
PRESENCE_OPS = frozenset({Op.EXISTS, Op.NOT_EXISTS})

Path = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^.\s]+(\.[^.\s]+)*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Condition(_Strict):
    op: Op
    value: JsonScalar | list[JsonScalar] = None

    @field_validator("value", mode="wrap")
    @classmethod
    def _json_value(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # One error at ``value`` rather than one per member of the union (``value.str``, ...).
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(
                "value must be a string, a number, a boolean, null or a list of those"
            ) from None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> _Condition:
        check_value(self.op, self.value, "value" in self.model_fields_set)
        return self


def check_value(op: Op, value: object, given: bool) -> None:
    """Raise ValueError when ``value`` cannot be compared with ``op``."""
    if op in PRESENCE_OPS:
        if given and value is not None:
            raise ValueError(f"'{op}' takes no value")
        return
    if not given:
        raise ValueError(f"'{op}' needs a value")
    if op in LIST_OPS:
        if not isinstance(value, list) or not value:
            raise ValueError(f"'{op}' needs a non-empty list of values")
        return
    if isinstance(value, list):
        raise ValueError(f"'{op}' compares with one value, not a list")
    if op in ORDERING_OPS and (
        value is None or isinstance(value, bool) or not isinstance(value, int | float | str)
    ):
        raise ValueError(f"'{op}' needs a number or a string (a time) to compare with")
    if op is Op.CONTAINS and (value is None or isinstance(value, bool)):
        raise ValueError("'contains' needs a string or a number")


class PropertyCondition(_Condition):
    """A condition on the event's properties; ``property`` is a dotted path."""

    property: Path


class AttributeCondition(_Condition):
    """A condition on the profile's attributes; ``attribute`` is a dotted path."""

    attribute: Path


class Match(_Strict):
    """An event name, conditions on its properties, conditions on the profile."""

    event: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    where: Annotated[list[PropertyCondition], Field(max_length=50)] = []
    profile: Annotated[list[AttributeCondition], Field(max_length=50)] = []

    @model_validator(mode="after")
    def _not_empty(self) -> Match:
        if self.event is None and not self.where and not self.profile:
            raise ValueError("criteria need an event, 'where' or 'profile' conditions")
        if self.event is None and self.where:
            raise ValueError("'where' conditions need an 'event' name")
        return self


class All(_Strict):
    all: Annotated[list[Criteria], Field(min_length=1, max_length=50)]


class AnyOf(_Strict):
    any: Annotated[list[Criteria], Field(min_length=1, max_length=50)]


class Not(_Strict):
    not_: Criteria = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _kind(raw: Any) -> str:
    """Which form a criteria object is, from its keys, so errors name one form only."""
    if isinstance(raw, dict):
        for key, tag in (("all", "All"), ("any", "AnyOf"), ("not", "Not")):
            if key in raw:
                return tag
        return "Match"
    tags: dict[type[BaseModel], str] = {All: "All", AnyOf: "AnyOf", Not: "Not"}
    return tags.get(type(raw), "Match")


# The tags appear in validation locations; shared.problems.json_path leaves them out.
CRITERIA_TAGS = frozenset({"Match", "All", "AnyOf", "Not"})

Criteria = Annotated[
    Annotated[Match, Tag("Match")]
    | Annotated[All, Tag("All")]
    | Annotated[AnyOf, Tag("AnyOf")]
    | Annotated[Not, Tag("Not")],
    Discriminator(_kind),
]

All.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()

MAX_DEPTH = 8


def depth(criteria: Match | All | AnyOf | Not) -> int:
    if isinstance(criteria, All):
        return 1 + max(depth(c) for c in criteria.all)
    if isinstance(criteria, AnyOf):
        return 1 + max(depth(c) for c in criteria.any)
    if isinstance(criteria, Not):
        return 1 + depth(criteria.not_)
    return 1


def event_names(criteria: Match | All | AnyOf | Not) -> set[str]:
    """Event names the criteria can match; empty when any event (or none) can."""
    if isinstance(criteria, Match):
        return {criteria.event} if criteria.event else set()
    if isinstance(criteria, Not):
        return set()
    parts = criteria.all if isinstance(criteria, All) else criteria.any
    names: set[str] = set()
    for part in parts:
        sub = event_names(part)
        if not sub:
            return set()
        names |= sub
    return names


def dump(criteria: Match | All | AnyOf | Not) -> dict[str, Any]:
    """The JSON form, as a client wrote it (``not`` under its own name, defaults left out)."""
    if isinstance(criteria, All):
        return {"all": [dump(c) for c in criteria.all]}
    if isinstance(criteria, AnyOf):
        return {"any": [dump(c) for c in criteria.any]}
    if isinstance(criteria, Not):
        return {"not": dump(criteria.not_)}
    out = criteria.model_dump(mode="json", exclude_defaults=True, exclude={"where", "profile"})
    if criteria.where:
        out["where"] = [_dump_condition(c) for c in criteria.where]
    if criteria.profile:
        out["profile"] = [_dump_condition(c) for c in criteria.profile]
    return out


def _dump_condition(condition: PropertyCondition | AttributeCondition) -> dict[str, Any]:
    # ``eq null`` equals the default value, yet leaving it out would make the dump invalid.
    leave_out = {"value"} if condition.op in PRESENCE_OPS else set()
    return condition.model_dump(mode="json", exclude=leave_out)


Kind = Literal["event", "profile"]

UNION_TAGS.update(CRITERIA_TAGS)
