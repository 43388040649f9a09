"""Submitting a job: check and resolve the body, commit the queued row with its first event, then send.

The database is the truth (SERVICE.md): :func:`submit_job` commits the row (status ``queued``) and its
first ``status`` event, *then* sends the Celery message; a failed send leaves the job queued for the
re-dispatcher. A batch's materialisation makes its jobs with :func:`build_job` and sends them with
:func:`dispatch` as well.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import ApiToken, Job, JobEvent, JobStatus
from service.errors import invalid, reject_nul
from service.idempotency import create_once, request_hash
from service.jobs.schemas import JobCreate
from service.jobs.spec import resolve_spec
from service.queue import send_train
from service.settings import Settings, redact_url
from service.workers.service import check_capacity

__all__ = ["MAX_EPOCHS", "add_event", "add_queued_event", "build_job", "check_body", "dispatch", "submit_job"]

log = logging.getLogger(__name__)

MAX_EPOCHS = 100_000  # job.total_epochs is a 32-bit column; no real schedule comes near this


def add_event(session: Session, job: Job, type: str, *, data: dict[str, Any]) -> JobEvent:
    event = JobEvent(job_id=job.id, type=type, data=data, attempt=job.attempt)
    session.add(event)
    return event


def check_body(body: JobCreate) -> None:
    """What pydantic cannot say about a job body: no NUL character anywhere, and a 32-bit epoch count."""
    reject_nul(body.model_dump(mode="json"))
    if body.hparams.epochs > MAX_EPOCHS:
        raise invalid("hparams.epochs", f"must be at most {MAX_EPOCHS}")


def build_job(
    session: Session,
    settings: Settings,
    body: JobCreate,
    *,
    idempotency_key: str | None = None,
    token: ApiToken | None = None,
) -> Job:
    """A new queued job row for ``body``, validated and resolved (:func:`resolve_spec`, the capacity check),
    not yet added to the session: :func:`submit_job` and a batch's materialisation both make their jobs
    here, then commit, then :func:`dispatch` them."""
    check_body(body)
    job_id = uuid.uuid4()
    spec = resolve_spec(session, settings, body, job_id=job_id)
    check_capacity(session, settings, body.resources.gpus)
    return Job(
        id=job_id,
        name=body.name,
        kind=body.kind,
        status=JobStatus.queued.value,
        spec=spec,
        resources=body.resources.model_dump(exclude_none=True),
        max_restarts=body.max_restarts,
        restarts=0,
        attempt=0,
        total_epochs=body.hparams.epochs,
        output_dir=spec["output"],
        idempotency_key=idempotency_key,
        request_hash=request_hash(body),
        created_by=token.id if token is not None else None,
    )


def add_queued_event(session: Session, job: Job) -> None:
    """The first ``status`` event of a new job (flushed: the event refers to the job row)."""
    session.flush()
    add_event(session, job, "status", data={"status": JobStatus.queued.value, "attempt": 0, "error": None})


def submit_job(
    session: Session,
    settings: Settings,
    body: JobCreate,
    *,
    idempotency_key: str | None = None,
    token: ApiToken | None = None,
) -> tuple[Job, bool]:
    """Create the job (or replay the one made with the same ``Idempotency-Key``): returns ``(job,
    created)``. Commits the row and its ``status`` event, then sends the train task and records
    ``dispatched_at``; a failed send is logged and left to the re-dispatcher."""
    check_body(body)

    def create() -> Job:
        job = build_job(session, settings, body, idempotency_key=idempotency_key, token=token)
        session.add(job)
        add_queued_event(session, job)  # the job row is flushed first; a duplicate key fails here
        return job

    job, created = create_once(session, Job, body=body, idempotency_key=idempotency_key, create=create)
    if created:
        dispatch(session, settings, job)
    return job, created


def dispatch(session: Session, settings: Settings, job: Job) -> None:
    """Send the committed queued ``job``'s train task and record ``dispatched_at``; a failed send is logged
    and left to the re-dispatcher (the job stays queued)."""
    try:
        send_train(settings, job.id, int((job.resources or {}).get("gpus", 0) or 0))
    except Exception as err:  # the broker is down: the job stays queued, the re-dispatcher re-sends it
        log.warning(
            "job %s is queued but its message was not sent (%s: %s); the re-dispatcher will send it",
            job.id,
            type(err).__name__,
            redact_url(str(err)),
        )
    else:
        job.dispatched_at = utcnow()
        if session.get_bind().dialect.name == "postgresql":
            # losing this write in a crash costs only a duplicate send (the claim makes it a no-op): no need
            # to wait for the WAL flush
            session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        session.commit()
