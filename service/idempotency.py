"""``Idempotency-Key``: the one create-once path of ``POST /jobs`` and ``POST /batches``.

A request with a key that an earlier request used replays the row that request made (same body, compared by
:func:`request_hash`; another body is a 422 naming the header). Two requests with one key racing: the
unique ``idempotency_key`` column lets one insert win; the other rolls back and replays it, or answers 409
while the winner has not committed yet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import Batch, Job
from service.errors import Problem, check_replay

__all__ = ["create_once", "find_by_key", "request_hash"]

#: the rows created once per key: each has ``idempotency_key`` (unique) and ``request_hash`` columns
Row = TypeVar("Row", Job, Batch)


def request_hash(body: BaseModel) -> str:
    """SHA-256 of the canonical JSON of the validated body (defaults filled in, keys sorted): two bodies
    that mean the same request hash the same."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def find_by_key(session: Session, model: type[Row], key: str) -> Row | None:
    """The ``model`` row made with the ``Idempotency-Key`` ``key``, if any."""
    return session.scalars(select(model).where(model.idempotency_key == key)).one_or_none()


def _replay(row: Row, digest: str) -> tuple[Row, bool]:
    check_replay(row.request_hash, digest)
    return row, False


def create_once(
    session: Session,
    model: type[Row],
    *,
    body: BaseModel,
    idempotency_key: str | None,
    create: Callable[[], Row],
) -> tuple[Row, bool]:
    """``(row, created)``: the row made earlier with ``idempotency_key`` (replayed), or the one ``create()``
    adds to the session, committed here. The caller sends what needs sending only when ``created``."""
    digest = request_hash(body)
    if idempotency_key is not None:
        existing = find_by_key(session, model, idempotency_key)
        if existing is not None:
            return _replay(existing, digest)
    try:
        row = create()  # flushes: a duplicate key fails here or at the commit
        session.commit()
    except IntegrityError:
        session.rollback()
        if idempotency_key is None:
            raise
        # a concurrent request with the same key won the insert
        existing = find_by_key(session, model, idempotency_key)
        if existing is None:
            raise Problem(409, "a request with this Idempotency-Key is in progress; retry it") from None
        return _replay(existing, digest)
    return row, True
