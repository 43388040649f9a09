"""``GET /jobs/events``: one Server-Sent Events stream of every job's status and progress changes, for a list
of jobs kept live (the dashboard's jobs page) without one stream per job.

It reads the same ``job_event`` rows as ``/jobs/{id}/events`` (their ids are global and increasing, so one
``Last-Event-ID`` resumes the whole feed) and forwards two kinds: ``status`` (``{"job_id", "status",
"attempt", "error"}``) and ``progress`` (``{"job_id", "progress", "epoch"}``, from the trainer's progress
and epoch events). Without a ``Last-Event-ID`` it starts at the newest event: only changes from now on.
Unlike a job's stream it does not end at a terminal status: it ends after :data:`FEED_MAX_SECONDS` (an
EventSource reconnects by itself with ``Last-Event-ID`` and misses nothing; a generic client, or a proxy,
never holds a response open for ever).

A router of its own, included before the jobs router: ``/jobs/{job_id}`` would otherwise take ``events``
for a job id.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.auth.dependencies import require
from service.db.models import JobEvent
from service.dependencies import SessionmakerDep
from service.jobs.router import SSE_KEEPALIVE_SECONDS, SSE_POLL_SECONDS, _sanitize
from service.problems import problem_responses

__all__ = ["feed_events", "feed_item", "latest_event_id", "router"]

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=problem_responses(401, 403))

FEED_TYPES = ("status", "progress", "epoch")
FEED_BATCH = 500
FEED_MAX_SECONDS = 300.0  # one response's lifetime (app.state.feed_max_seconds)


def latest_event_id(session: Session) -> int:
    """The newest event's id (0 when there is none): where a feed starting now begins."""
    return int(session.scalar(select(func.max(JobEvent.id))) or 0)


def feed_events(
    session: Session, after: int, limit: int = FEED_BATCH
) -> list[tuple[int, uuid.UUID, str, Any]]:
    """``(id, job_id, type, data)`` of the status / progress / epoch events after ``after``, in order."""
    rows = session.execute(
        select(JobEvent.id, JobEvent.job_id, JobEvent.type, JobEvent.data)
        .where(JobEvent.id > after, JobEvent.type.in_(FEED_TYPES))
        .order_by(JobEvent.id)
        .limit(limit)
    ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def feed_item(job_id: uuid.UUID, type_: str, data: Any) -> tuple[str, dict[str, Any]]:
    """The feed's event type and data for one stored event (epoch events become ``progress``)."""
    data = data if isinstance(data, dict) else {}
    if type_ == "status":
        return "status", {
            "job_id": str(job_id),
            "status": data.get("status"),
            "attempt": data.get("attempt"),
            "error": data.get("error"),
        }
    return "progress", {"job_id": str(job_id), "progress": data.get("progress"), "epoch": data.get("epoch")}


def _poll(
    factory: sessionmaker[Session], after: int | None
) -> tuple[int, list[tuple[int, uuid.UUID, str, Any]]]:
    with factory() as session:
        if after is None:
            return latest_event_id(session), []
        return after, feed_events(session, after)


async def _feed_stream(
    request: Request, factory: sessionmaker[Session], after: int | None
) -> AsyncIterator[str]:
    poll = float(getattr(request.app.state, "sse_poll_seconds", SSE_POLL_SECONDS))
    keepalive = float(getattr(request.app.state, "sse_keepalive_seconds", SSE_KEEPALIVE_SECONDS))
    lifetime = float(getattr(request.app.state, "feed_max_seconds", FEED_MAX_SECONDS))
    yield "retry: 3000\n\n"
    last_sent = started = time.monotonic()
    cursor = after
    while True:
        cursor, events = await anyio.to_thread.run_sync(_poll, factory, cursor)
        for event_id, job_id, type_, data in events:
            cursor = event_id
            kind, payload = feed_item(job_id, type_, data)
            text = json.dumps(_sanitize(payload), separators=(",", ":"))
            yield f"id: {event_id}\nevent: {kind}\ndata: {text}\n\n"
        if len(events) == FEED_BATCH:
            continue
        now = time.monotonic()
        if events:
            last_sent = now
        elif now - last_sent >= keepalive:
            yield ": keep-alive\n\n"
            last_sent = now
        if await request.is_disconnected() or now - started >= lifetime:
            return
        await anyio.sleep(poll)


@router.get(
    "/events",
    dependencies=[Depends(require("jobs:read"))],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events of all jobs: `event` = status or progress, `data` = JSON with "
            "`job_id`; `id` resumes with Last-Event-ID; ends after 5 minutes (reconnect to go on)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problem_responses(422),
    },
)
def jobs_feed(
    request: Request,
    factory: SessionmakerDep,
    last_event_id_header: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=2**62)] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="start after this event id (default: from now on)")
    ] = None,
) -> StreamingResponse:
    start = last_event_id_header if last_event_id_header is not None else after
    return StreamingResponse(
        _feed_stream(request, factory, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
