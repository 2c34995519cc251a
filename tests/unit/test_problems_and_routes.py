from __future__ import annotations

import pytest

from gateway.routes import owner
from shared.problems import FieldError, ProblemError, json_path
from waypost.supervisor import FIRST_RESTART_S, HEALTHY_AFTER_S, MAX_RESTART_S, next_backoff


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("body", "stages", 1, "steps", 0, "duration"), "stages[1].steps[0].duration"),
        (("body", "name"), "name"),
        (("query", "limit"), "limit"),
        (("body",), "$"),
        (("body", 3, "event_id"), "[3].event_id"),
    ],
)
def test_json_path_of_a_validation_location(loc: tuple[str | int, ...], path: str) -> None:
    assert json_path(loc) == path


def test_problem_body_has_the_rfc9457_shape() -> None:
    err = ProblemError(422, "Validation failed", "2 problems", [FieldError("stages[0]", "bad")])
    assert err.body() == {
        "type": "https://waypost.dev/problems/422",
        "title": "Validation failed",
        "status": 422,
        "detail": "2 problems",
        "errors": [{"path": "stages[0]", "message": "bad"}],
    }


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/v1/journeys", "designer"),
        ("/v1/journeys/j1/publish", "designer"),
        ("/v1/journeys/j1/profiles", "runtime"),
        ("/v1/journeys/j1/analytics", "runtime"),
        ("/v1/journeys/simulate", "runtime"),
        ("/v1/api-keys/k1", "designer"),
        ("/v1/events/batch", "gateway"),
        ("/v1/me", "gateway"),
        ("/v1/profiles/p1/timeline", "runtime"),
        ("/v1/deliveries", "activator"),
        ("/v1/webhooks/sources", "designer"),
        ("/v1/journeysx", None),
        ("/v1/unknown", None),
    ],
)
def test_every_public_path_has_one_owner(path: str, service: str | None) -> None:
    assert owner(path) == service


def test_restart_backoff_grows_only_while_a_child_keeps_dying() -> None:
    first = next_backoff(0.0, lived_s=0.1)
    assert first == FIRST_RESTART_S
    second = next_backoff(first, lived_s=0.1)
    assert second == 2 * FIRST_RESTART_S
    delay = second
    for _ in range(20):
        delay = next_backoff(delay, lived_s=0.1)
    assert delay == MAX_RESTART_S
    assert next_backoff(delay, lived_s=HEALTHY_AFTER_S) == FIRST_RESTART_S
