"""Keyset pagination of ``GET /jobs`` and ``GET /batches``: newest first on ``(created_at, id)``, so a page is
stable under inserts (no duplicates or gaps), with an opaque cursor naming the last row of a page."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from typing import TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from service.db.models import Batch, Job
from service.errors import invalid

__all__ = ["decode_cursor", "encode_cursor", "keyset_page"]

#: the paged rows: each has ``created_at`` and ``id`` columns
Row = TypeVar("Row", Job, Batch)


def encode_cursor(row: Job | Batch) -> str:
    """An opaque cursor: the (created_at, id) of the last row of a page, base64url JSON."""
    raw = json.dumps([row.created_at.isoformat(), row.id.hex], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """The (created_at, id) of a cursor, or a 422 naming the ``cursor`` query parameter."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        at = dt.datetime.fromisoformat(created)
        if at.tzinfo is None:
            raise ValueError("naive time")
        return at, uuid.UUID(hex=row_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise invalid("cursor", "not a cursor returned by this API", location="query") from None


def keyset_page(
    session: Session, model: type[Row], query: Select[Row], *, limit: int, cursor: str | None
) -> tuple[list[Row], str | None]:
    """A page of ``query``'s rows after ``cursor``, newest first, and the cursor of the next page (None on
    the last)."""
    if cursor is not None:
        at, last_id = decode_cursor(cursor)
        query = query.where(or_(model.created_at < at, and_(model.created_at == at, model.id < last_id)))
    ordered = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    rows = list(session.scalars(ordered))
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None
