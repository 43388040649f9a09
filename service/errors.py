"""The problems a service function raises, free of the web framework (so the worker can run service
functions, such as making a schedule's batch, without importing FastAPI): :class:`Problem` and its
helpers. :mod:`service.problems` turns them into ``application/problem+json`` responses."""

from __future__ import annotations

import http
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "IDEMPOTENCY_TYPE",
    "ILLEGAL_TRANSITION_TYPE",
    "PROBLEM_MEDIA_TYPE",
    "VALIDATION_TYPE",
    "FieldError",
    "Problem",
    "ProblemDetails",
    "field_errors",
    "invalid",
    "not_found",
    "reject_nul",
]

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
    cannot store in text or JSONB. A body without any (almost every one) is cleared by one C-speed JSON
    encoding instead of a Python walk over its hundreds of values."""
    if isinstance(value, dict | list | tuple):
        try:
            if b"\\u0000" not in orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS):
                return
        except TypeError:  # not encodable (e.g. nested too deep): the walk decides
            pass
    _walk_nul(value, field)


def _walk_nul(value: Any, field: str) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise invalid(field or "(body)", "contains a NUL character")
    elif isinstance(value, dict):
        for k, v in value.items():
            path = f"{field}.{k}" if field else str(k)
            _walk_nul(str(k), path)
            _walk_nul(v, path)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _walk_nul(v, f"{field}.{i}")


def not_found(what: str) -> Problem:
    return Problem(404, f"{what} not found")


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


def validation_problem(err: ValidationError, prefix: str) -> Problem:
    """A 422 listing the fields of a pydantic error, each under ``prefix`` (``grid[2].losses``,
    ``template``): for bodies validated inside another body, where FastAPI's own handler does not see them."""
    errors = [
        FieldError(field=f"{prefix}.{e.field}", message=e.message, location="body")
        for e in field_errors(err.errors())
    ]
    return Problem(
        422,
        "; ".join(f"{e.field}: {e.message}" for e in errors),
        title="Request validation failed",
        type=VALIDATION_TYPE,
        errors=errors,
    )


def check_replay(stored_hash: str | None, digest: str) -> None:
    """A repeated ``Idempotency-Key`` replays only the same body (same ``request_hash``); another body with
    it is a 422 naming the header."""
    if stored_hash != digest:
        raise Problem(
            422,
            "this Idempotency-Key was used with a different request body",
            title="Idempotency-Key reused",
            type=IDEMPOTENCY_TYPE,
            errors=[FieldError(field="Idempotency-Key", message="used with another body", location="header")],
        )
