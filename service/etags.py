"""ETags and ``If-Match`` for the resources that clients update (batches, schedules; SERVICE.md).

An ETag here names a row's *version*, a counter bumped by every change a client makes (a batch's verbs, a
schedule's PATCH), not a hash of the JSON: a batch's job counts move all the time, and a client that read
the batch a minute ago must still be able to pause it."""

from __future__ import annotations

import uuid

from service.errors import Problem

__all__ = ["check_if_match", "etag"]


def etag(row_id: uuid.UUID, version: int) -> str:
    return f'"{row_id.hex}.{version}"'


def check_if_match(if_match: str | None, current: str, *, required: bool) -> None:
    """428 when ``If-Match`` is missing but ``required``; 412 when it names neither ``current`` nor ``*``
    (a list of tags is allowed; weak tags never match, RFC 9110 strong comparison)."""
    if if_match is None:
        if required:
            raise Problem(428, "send If-Match with the ETag of your last read (GET), to update it safely")
        return
    tags = [t.strip() for t in if_match.split(",")]
    if "*" in tags or current in tags:
        return
    raise Problem(
        412,
        f"If-Match {if_match} does not match the current ETag {current}: read it again, then retry",
        headers={"ETag": current},
    )
