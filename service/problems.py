"""Errors as RFC 9457 problem details (``application/problem+json``), written once for the whole API.

Service functions raise :class:`Problem` (or :func:`invalid` for one bad field); the handlers installed by
:func:`install` turn it, FastAPI's request validation errors, Starlette's HTTP errors (404, 405, 413), the
state machine's :class:`IllegalTransition` and any unexpected exception into a problem document
``{"type", "title", "status", "detail", "instance"}``. Validation problems list every bad field as
``errors: [{"field": "hparams.epochs", "message": ..., "location": "body"}]``; a 500 says nothing about the
cause (the traceback goes to the log only).

:class:`BodySizeLimit` (ASGI middleware) answers 413 to a request body over ``settings.max_request_bytes``:
at once when ``Content-Length`` says so, or as soon as a streamed body passes the limit.
"""

from __future__ import annotations

import http
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.db.states import IllegalTransition

__all__ = [
    "IDEMPOTENCY_TYPE",
    "ILLEGAL_TRANSITION_TYPE",
    "PROBLEM_MEDIA_TYPE",
    "VALIDATION_TYPE",
    "BodySizeLimit",
    "FieldError",
    "Problem",
    "ProblemDetails",
    "field_errors",
    "install",
    "invalid",
    "not_found",
    "problem_response",
    "problem_responses",
    "reject_nul",
]

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
# problem types: URNs (RFC 9457 allows any URI; these name kinds of problems, they are not pages)
VALIDATION_TYPE = "urn:daik:problem:validation-error"
ILLEGAL_TRANSITION_TYPE = "urn:daik:problem:illegal-transition"
IDEMPOTENCY_TYPE = "urn:daik:problem:idempotency-key-reused"

# where FastAPI says a request value was; the field path is named without it
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
# pydantic puts the member of a union that failed into ``loc`` ("str", "tuple[str, ...]", "TeacherSpec"):
# a type, not a field (field names here are snake_case), so it is left out of the field path
_TYPE_TAG = re.compile(
    r"^(str|int|float|bool|bytes|none|list|dict|tuple|set|[a-z_-]+\[.*\]|[A-Z][A-Za-z0-9]*)$"
)


class FieldError(BaseModel):
    """One bad field: a dotted path into the request (``hparams.epochs``) and what is wrong with it."""

    field: str = Field(description="dotted path of the bad field, e.g. `hparams.epochs`")
    message: str
    location: str | None = Field(default=None, description="body, query, path or header")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; extension members (``errors``, ``checks``, ...) may follow."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", description="a URI naming the kind of problem")
    title: str = Field(description="short summary of the kind of problem")
    status: int = Field(description="the HTTP status code")
    detail: str | None = Field(default=None, description="what went wrong in this request")
    instance: str | None = Field(default=None, description="the request path")
    errors: list[FieldError] | None = Field(default=None, description="validation: the bad fields")


class Problem(Exception):
    """An error the client can act on, answered as problem+json with ``status``."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str = "about:blank",
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title or str(status))
        self.status = status
        self.title = title or http.HTTPStatus(status).phrase
        self.detail = detail
        self.type = type
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def invalid(field: str, message: str, *, location: str | None = "body", status: int = 422) -> Problem:
    """A validation problem about one field (``dataset.train``, ``Idempotency-Key``, ``cursor``)."""
    return Problem(
        status,
        f"{field}: {message}",
        title="Request validation failed",
        type=VALIDATION_TYPE,
        errors=[FieldError(field=field, message=message, location=location)],
    )


def reject_nul(value: Any, field: str = "") -> None:
    """A 422 naming the first string (or key) inside ``value`` with a NUL character, which PostgreSQL
    cannot store in text or JSONB."""
    if isinstance(value, str):
        if "\x00" in value:
            raise invalid(field or "(body)", "contains a NUL character")
    elif isinstance(value, dict):
        for k, v in value.items():
            path = f"{field}.{k}" if field else str(k)
            reject_nul(str(k), path)
            reject_nul(v, path)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            reject_nul(v, f"{field}.{i}")


def not_found(what: str) -> Problem:
    return Problem(404, f"{what} not found")


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail if problem.detail is not None else problem.title,
    }
    if instance is not None:
        body["instance"] = instance
    if problem.errors is not None:
        body["errors"] = [e.model_dump(exclude_none=True) for e in problem.errors]
    body.update(problem.extra)
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _names_field(part: int | str, where: str | None) -> bool:
    """Whether a ``loc`` part belongs in the field path: not a union member's type tag, and not the index
    of a repeated query parameter (``status``, not ``status.0``)."""
    if isinstance(part, int):
        return where in (None, "body")
    return not _TYPE_TAG.match(part)


def field_errors(errors: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """Pydantic / FastAPI errors as one entry per field (a union's members' messages joined by "or")."""
    merged: dict[tuple[str, str | None], list[str]] = {}
    for e in errors:
        loc = list(e.get("loc", ()))
        where = str(loc[0]) if len(loc) > 1 and loc[0] in _LOCATIONS else None
        path = [str(p) for p in (loc[1:] if where else loc) if _names_field(p, where)]
        message = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
        messages = merged.setdefault((".".join(path) or "(body)", where), [])
        if message not in messages:
            messages.append(message)
    return [FieldError(field=f, message=" or ".join(m), location=w) for (f, w), m in merged.items()]


def _validation_problem(errors: Sequence[Mapping[str, Any]]) -> Problem:
    fields = field_errors(errors)
    detail = "; ".join(f"{f.field}: {f.message}" for f in fields)
    return Problem(422, detail, title="Request validation failed", type=VALIDATION_TYPE, errors=fields)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc, request.url.path)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(_validation_problem(exc.errors()), request.url.path)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # Starlette names only the first route of the path; list them all
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(Problem(exc.status_code, detail, headers=headers), request.url.path)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _on_illegal_transition(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IllegalTransition)
    problem = Problem(
        409,
        str(exc),
        title="Illegal state transition",
        type=ILLEGAL_TRANSITION_TYPE,
        extra={"current_status": exc.current.value, "requested_status": exc.target.value},
    )
    return problem_response(problem, request.url.path)


async def _on_data_error(request: Request, exc: Exception) -> JSONResponse:
    # a value the database cannot store (a number out of its column's range, ...): the client's input
    log.warning("database rejected a value: %s %s (%s)", request.method, request.url.path, type(exc).__name__)
    problem = Problem(
        422,
        "a value is out of the range the service can store",
        title="Request validation failed",
        type=VALIDATION_TYPE,
    )
    return problem_response(problem, request.url.path)


async def _on_database_down(request: Request, exc: Exception) -> JSONResponse:
    # the database cannot be reached (restarting, failing over): a temporary state, not a bug; the pool
    # pre-pings, so the first request after it is back gets a fresh connection
    log.warning("database unavailable: %s %s (%s)", request.method, request.url.path, type(exc).__name__)
    response = problem_response(
        Problem(503, "the database is unavailable; retry shortly", title="Service Unavailable"),
        request.url.path,
    )
    response.headers["Retry-After"] = "5"
    return response


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # the cause goes to the log, never to the client
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        Problem(500, "an unexpected error occurred; it has been logged"), request.url.path
    )


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(IllegalTransition, _on_illegal_transition)
    app.add_exception_handler(DataError, _on_data_error)
    app.add_exception_handler(OperationalError, _on_database_down)
    app.add_exception_handler(InterfaceError, _on_database_down)
    app.add_exception_handler(Exception, _on_unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem statuses a route can answer (a route's ``responses=``); the app's
    OpenAPI document lists them as ``application/problem+json`` only (``service.main``)."""
    return {s: {"model": ProblemDetails, "description": http.HTTPStatus(s).phrase} for s in statuses}


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes the limit: an HTTPException, so FastAPI's body
    parsing re-raises it (it turns other errors into 400) and the problem handler answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes} bytes")


class BodySizeLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets a 413 problem."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(scope, receive, send, _BodyTooLarge(self.max_bytes))
                return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge as exc:  # read outside a route (FastAPI's handlers catch it inside one)
            if started:
                raise
            await self._reject(scope, receive, send, exc)

    @staticmethod
    async def _reject(scope: Scope, receive: Receive, send: Send, exc: _BodyTooLarge) -> None:
        problem = Problem(413, str(exc.detail))
        await problem_response(problem, scope.get("path"))(scope, receive, send)
