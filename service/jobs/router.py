"""``/jobs``: submit, list, read, metrics, cancel, and the live event stream (Server-Sent Events)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from service.auth.dependencies import require
from service.auth.service import require_owner
from service.db.models import TERMINAL_STATES, ApiToken, JobStatus
from service.dependencies import IdempotencyKeyHeader, SessionDep, SessionmakerDep, SettingsDep, ValidJob
from service.jobs import lifecycle, queries
from service.jobs.cache import ReadCache, job_version
from service.jobs.schemas import AttemptList, AttemptOut, JobCreate, JobList, JobOut, MetricsOut, RetryIn
from service.jobs.submit import submit_job
from service.problems import problem_responses
from service.sse import Polled, event_stream, sse_200, sse_response
from service.workers.service import waiting_reason

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=problem_responses(401, 403))

SSE_BATCH = 500  # events read per poll of a job's stream
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)

JobsRead = Depends(require("jobs:read"))
JobsWrite = Depends(require("jobs:write"))
NO_NUL = r"^[^\x00]*$"  # PostgreSQL cannot compare text with NUL characters


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobOut,
    responses={
        201: {"description": "created, or replayed for a repeated Idempotency-Key (`Idempotent-Replayed`)"},
        **problem_responses(400, 409, 413, 422),
    },
)
def create_job(
    body: JobCreate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[ApiToken, Depends(require("jobs:write"))],
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobOut:
    job, created = submit_job(session, settings, body, idempotency_key=idempotency_key, token=token)
    response.headers["Location"] = f"/jobs/{job.id}"
    if created:
        return queries.job_out(job, {})  # a new job has no metrics yet
    response.headers["Idempotent-Replayed"] = "true"
    return queries.job_out(job, queries.latest_metrics(session, [job.id])[job.id])


@router.get("", response_model=JobList, dependencies=[JobsRead], responses=problem_responses(422))
def list_jobs(
    session: SessionDep,
    status: Annotated[list[JobStatus] | None, Query(description="repeat for several")] = None,
    kind: Annotated[Literal["train", "distill"] | None, Query()] = None,
    name: Annotated[str | None, Query(max_length=200, pattern=NO_NUL, description="exact name")] = None,
    name_prefix: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="names starting with this")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=500, description="`next_cursor` of the previous page")
    ] = None,
) -> JobList:
    """Jobs, newest first, a page at a time (keyset pagination: no duplicates or gaps under inserts)."""
    jobs, next_cursor = queries.list_jobs(
        session,
        statuses=[s.value for s in status or ()],
        kind=kind,
        name=name,
        name_prefix=name_prefix,
        limit=limit,
        cursor=cursor,
    )
    latest = queries.latest_metrics(session, [j.id for j in jobs])
    return JobList(items=[queries.job_out(j, latest[j.id]) for j in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, dependencies=[JobsRead], responses=problem_responses(404))
def get_job(request: Request, job: ValidJob, session: SessionDep, settings: SettingsDep) -> JobOut:
    waiting = waiting_reason(session, settings, job)
    latest = _cache(request).get_or_compute(
        (job_version(job), "latest"), lambda: queries.latest_metrics(session, [job.id])[job.id]
    )
    return queries.job_out(job, dict(latest), waiting=waiting)


@router.get(
    "/{job_id}/metrics",
    response_model=MetricsOut,
    dependencies=[JobsRead],
    responses=problem_responses(404, 422),
)
def get_metrics(
    request: Request,
    job: ValidJob,
    session: SessionDep,
    keys: Annotated[
        str | None, Query(max_length=2000, pattern=NO_NUL, description="comma-separated keys; default all")
    ] = None,
    from_step: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    max_points: Annotated[
        int | None, Query(ge=2, le=100_000, description="per series: first, last and evenly spaced points")
    ] = None,
) -> Any:
    key_list = [k.strip() for k in keys.split(",") if k.strip()] if keys else None

    def read() -> bytes:
        data = queries.get_metrics(session, job.id, keys=key_list, from_step=from_step, max_points=max_points)
        # already in MetricsOut's shape with finite floats: serialised directly with orjson (validating
        # thousands of points again, or the standard json module, would cost more than the query);
        # response_model keeps the OpenAPI schema
        return orjson.dumps(data)

    key = (job_version(job), "metrics", tuple(key_list) if key_list else None, from_step, max_points)
    return Response(_cache(request).get_or_compute(key, read), media_type="application/json")


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=problem_responses(404, 409, 422),
)
def cancel_job(
    token: Annotated[ApiToken, JobsWrite],
    job: ValidJob,
    session: SessionDep,
    force: Annotated[bool, Query(description="stop the trainer at once, without the grace period")] = False,
) -> JobOut:
    """Queued: cancelled at once. Running: ``cancelling`` until the worker has stopped the trainer.
    Already cancelled or cancelling: 202, nothing changes. Finished: 409. Only the token that submitted
    the job, or one with ``admin``, may cancel it (403)."""
    require_owner(token, owner_id=job.created_by, what=f"job {job.id}")
    job = lifecycle.cancel_job(session, job, force=force)
    return queries.job_out(job, queries.latest_metrics(session, [job.id])[job.id])


@router.post(
    "/{job_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=problem_responses(400, 404, 409, 422),  # 400: a body that is not JSON at all
)
def retry_job(
    token: Annotated[ApiToken, JobsWrite],
    job: ValidJob,
    session: SessionDep,
    settings: SettingsDep,
    body: RetryIn | None = None,
) -> JobOut:
    """A failed or cancelled job is queued again with a fresh restart budget: from its last checkpoint
    (default) or from scratch (``{"start": "scratch"}``). Already queued: 202, nothing changes. Running,
    cancelling or succeeded: 409. Only the token that submitted the job, or one with ``admin``, may retry
    it (403)."""
    require_owner(token, owner_id=job.created_by, what=f"job {job.id}")
    start = body.start if body is not None else "checkpoint"
    job = lifecycle.retry_job(session, settings, job, start=start)
    return queries.job_out(job, queries.latest_metrics(session, [job.id])[job.id])


@router.get(
    "/{job_id}/attempts",
    response_model=AttemptList,
    dependencies=[JobsRead],
    responses=problem_responses(404),
)
def list_attempts(job: ValidJob, session: SessionDep) -> AttemptList:
    """Every attempt of the job, oldest first: worker, exit, why it ended, the checkpoint it resumed from
    and the end of its log."""
    return AttemptList(
        items=[
            AttemptOut.model_validate(a, from_attributes=True) for a in queries.list_attempts(session, job.id)
        ]
    )


def _cache(request: Request) -> ReadCache:
    cache: ReadCache = request.app.state.read_cache
    return cache


def _job_poll(factory: sessionmaker[Session], job_id: uuid.UUID, after: int) -> Callable[[], Polled]:
    """The source of a job's stream: its events after ``after``; finished after a terminal status event, or
    when the job is finished (its terminal event was sent before ``after``) or deleted."""

    def poll() -> Polled:
        nonlocal after
        with factory() as session:  # a short session per poll: no connection is held between polls
            job_status, rows = queries.fetch_events(session, job_id, after_id=after, limit=SSE_BATCH)
            events = [(e.id, e.type, e.data) for e in rows]
        for n, (event_id, event_type, data) in enumerate(events):
            after = event_id
            if event_type == "status" and isinstance(data, dict) and data.get("status") in _TERMINAL:
                return Polled(events[: n + 1], finished=True)
        more = len(events) == SSE_BATCH
        return Polled(
            events, more=more, finished=not more and (job_status is None or job_status in _TERMINAL)
        )

    return poll


@router.get(
    "/{job_id}/events",
    dependencies=[JobsRead],
    response_class=StreamingResponse,
    responses={
        200: sse_200(
            "Server-Sent Events: `id` = event id, `event` = type (status, progress, epoch, "
            "eval, checkpoint), `data` = JSON; ends after a terminal status event"
        ),
        **problem_responses(404, 422),
    },
)
def job_events(
    request: Request,
    job: ValidJob,
    session: SessionDep,
    factory: SessionmakerDep,
    last_event_id_header: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=2**62)] = None,
    last_event_id: Annotated[
        int | None, Query(ge=0, le=2**62, description="resume after this event id")
    ] = None,
) -> StreamingResponse:
    """The job's events from the one after ``Last-Event-ID`` (header, or the query parameter for clients
    that cannot set headers) on; a ``: keep-alive`` comment every 15 s of silence."""
    after = last_event_id_header if last_event_id_header is not None else (last_event_id or 0)
    job_id = job.id
    session.close()  # the stream polls with its own short sessions; hold no connection for its lifetime
    return sse_response(event_stream(request, _job_poll(factory, job_id, after)))
