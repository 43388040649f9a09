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

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.auth.dependencies import require
from service.db.models import JobEvent
from service.dependencies import SessionmakerDep
from service.problems import problem_responses
from service.sse import Polled, event_stream, sse_200, sse_response

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


def _feed_poll(factory: sessionmaker[Session], after: int | None) -> Callable[[], Polled]:
    """The source of the feed: the status / progress events after ``after`` (the first poll without one
    only notes where the feed starts: the newest event); never finished (the stream's lifetime ends it)."""
    cursor = after

    def poll() -> Polled:
        nonlocal cursor
        with factory() as session:  # a short session per poll: no connection is held between polls
            if cursor is None:
                cursor = latest_event_id(session)
                return Polled()
            rows = feed_events(session, cursor)
        if rows:
            cursor = rows[-1][0]
        return Polled(
            [(event_id, *feed_item(job_id, type_, data)) for event_id, job_id, type_, data in rows],
            more=len(rows) == FEED_BATCH,
        )

    return poll


@router.get(
    "/events",
    dependencies=[Depends(require("jobs:read"))],
    response_class=StreamingResponse,
    responses={
        200: sse_200(
            "Server-Sent Events of all jobs: `event` = status or progress, `data` = JSON with "
            "`job_id`; `id` resumes with Last-Event-ID; ends after 5 minutes (reconnect to go on)"
        ),
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
    lifetime = float(getattr(request.app.state, "feed_max_seconds", FEED_MAX_SECONDS))
    return sse_response(event_stream(request, _feed_poll(factory, start), lifetime=lifetime))
