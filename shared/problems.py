"""RFC 9457 problem details: typed errors that carry their status, and one handler set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.logging import get_logger
from shared.outages import is_outage

PROBLEM_JSON = "application/problem+json"
log = get_logger(__name__)


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str


@dataclass
class ProblemError(Exception):
    status: int
    title: str
    detail: str = ""
    errors: Sequence[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return problem_body(self.status, self.title, self.detail, self.errors)


def problem_body(
    status: int, title: str, detail: str = "", errors: Sequence[FieldError] = ()
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"https://waypost.dev/problems/{status}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [{"path": e.path, "message": e.message} for e in errors]
    return body


def problem_response(
    status: int,
    title: str,
    detail: str = "",
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, title, detail, errors),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


# Names of union members that pydantic puts into a location; they are no JSON keys.
UNION_TAGS: set[str] = set()


def json_path(loc: Sequence[str | int]) -> str:
    """``("body", "stages", 1, "steps", 0, "duration")`` -> ``stages[1].steps[0].duration``."""
    parts = [p for p in loc if not (isinstance(p, str) and (p in UNION_TAGS or "[" in p))]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "$"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = pydantic_errors(exc)
        return problem_response(
            422, "Validation failed", f"{len(errors)} problem(s) in the request", errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        if is_outage(exc):  # e.g. the database restarting: try again, nothing is wrong
            log.warning("http.dependency_unavailable", error=f"{type(exc).__name__}: {exc}")
            return problem_response(
                503, "Service unavailable", "a dependency could not be reached; try again",
                headers={"Retry-After": "1"},
            )  # fmt: skip
        log.exception("http.unhandled_error", error=str(exc))
        return problem_response(500, "Internal error", "the error was logged")


def not_found(what: str) -> ProblemError:
    return ProblemError(404, "Not found", f"{what} does not exist")


def conflict(detail: str) -> ProblemError:
    return ProblemError(409, "Conflict", detail)


def forbidden(detail: str) -> ProblemError:
    return ProblemError(403, "Forbidden", detail)


def invalid(errors: Sequence[FieldError], detail: str = "") -> ProblemError:
    return ProblemError(
        422, "Validation failed", detail or f"{len(errors)} problem(s) in the request", errors
    )


def pydantic_errors(exc: Any, prefix: str = "") -> list[FieldError]:
    """A pydantic ValidationError's problems as field errors, paths under ``prefix``."""
    return [
        FieldError(
            json_path((prefix, *e["loc"]) if prefix else e["loc"]),
            e["msg"].removeprefix("Value error, "),
        )
        for e in exc.errors()
    ]
