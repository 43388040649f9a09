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
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.db.states import IllegalTransition
from service.errors import (
    IDEMPOTENCY_TYPE,
    ILLEGAL_TRANSITION_TYPE,
    PROBLEM_MEDIA_TYPE,
    VALIDATION_TYPE,
    FieldError,
    Problem,
    ProblemDetails,
    field_errors,
    invalid,
    not_found,
    reject_nul,
)

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
