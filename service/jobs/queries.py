"""Jobs, read: one job, a page of jobs, the latest value of each metric, the metric series, the attempts
and the event rows a job's stream sends. Nothing here writes."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from service.db.models import TERMINAL_STATES, Attempt, EvalResult, Job, JobEvent, JobStatus, Metric
from service.jobs.schemas import JobOut
from service.pagination import keyset_page

__all__ = [
    "downsample",
    "fetch_events",
    "get_job",
    "get_metrics",
    "is_terminal_event",
    "job_out",
    "latest_metrics",
    "list_attempts",
    "list_jobs",
]

T = TypeVar("T")
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)


def get_job(session: Session, job_id: uuid.UUID) -> Job | None:
    return session.get(Job, job_id)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def latest_metrics(
    session: Session, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, float | None]]:
    """The value at the highest step of each metric key, per job. PostgreSQL: one ``DISTINCT ON (job_id,
    key) ... ORDER BY job_id, key, step DESC`` over the primary key (job_id, key, step); elsewhere
    (SQLite) the portable join on ``max(step)`` per key."""
    out: dict[uuid.UUID, dict[str, float | None]] = {j: {} for j in job_ids}
    if not job_ids:
        return out
    conn = session.connection()  # Core rows: no ORM loading for plain columns
    if conn.dialect.name == "postgresql":
        q = (
            select(Metric.job_id, Metric.key, Metric.value)
            .where(Metric.job_id.in_(job_ids))
            .ext(distinct_on(Metric.job_id, Metric.key))
            .order_by(Metric.job_id, Metric.key, Metric.step.desc())
        )
    else:
        last = (
            select(Metric.job_id, Metric.key, func.max(Metric.step).label("step"))
            .where(Metric.job_id.in_(job_ids))
            .group_by(Metric.job_id, Metric.key)
            .subquery()
        )
        q = select(Metric.job_id, Metric.key, Metric.value).join(
            last, and_(Metric.job_id == last.c.job_id, Metric.key == last.c.key, Metric.step == last.c.step)
        )
    for job_id, key, value in conn.execute(q):
        out[job_id][key] = _finite(value)
    return out


def job_out(job: Job, latest: dict[str, float | None], *, waiting: str | None = None) -> JobOut:
    return JobOut(
        waiting=waiting,
        id=job.id,
        name=job.name,
        kind=job.kind,  # type: ignore[arg-type]  # the CHECK constraint keeps it train | distill
        status=JobStatus(job.status),
        attempt=job.attempt,
        restarts=job.restarts,
        max_restarts=job.max_restarts,
        cancel_requested=job.cancel_requested,
        progress=job.progress,
        epoch=job.epoch,
        total_epochs=job.total_epochs,
        step=job.step,
        latest_metrics=latest,
        final_map50=_finite(job.final_map50),
        final_map50_95=_finite(job.final_map50_95),
        error=job.error,
        failure_kind=job.failure_kind,
        resources=job.resources,
        spec=job.spec,
        owner_token_id=job.created_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        deadline_at=job.deadline_at,
    )


def list_jobs(
    session: Session,
    *,
    statuses: Iterable[str] = (),
    kind: str | None = None,
    name: str | None = None,
    name_prefix: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Job], str | None]:
    """A page of jobs, newest first (keyset on ``(created_at, id)``, stable under inserts), and the cursor
    of the next page (None on the last)."""
    q = select(Job)
    statuses = list(statuses)
    if statuses:
        q = q.where(Job.status.in_(statuses))
    if kind is not None:
        q = q.where(Job.kind == kind)
    if name is not None:
        q = q.where(Job.name == name)
    if name_prefix is not None:
        escaped = name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(Job.name.like(escaped + "%", escape="\\"))
    return keyset_page(session, Job, q, limit=limit, cursor=cursor)


def downsample(points: Sequence[T], max_points: int | None) -> Sequence[T]:
    """At most ``max_points`` points: the first, the last and evenly spaced ones between (by index)."""
    n = len(points)
    if max_points is None or n <= max_points:
        return points
    if max_points == 1:
        return [points[-1]]
    # (n - 1) / (max_points - 1) > 1, so the rounded indices are distinct
    return [points[round(i * (n - 1) / (max_points - 1))] for i in range(max_points)]


def get_metrics(
    session: Session,
    job_id: uuid.UUID,
    *,
    keys: Sequence[str] | None = None,
    from_step: int | None = None,
    max_points: int | None = None,
) -> dict[str, Any]:
    """The contract's metrics JSON: ``{"job_id", "series": {key: [{"step", "epoch", "value"}]},
    "per_class_ap"}``; one range scan of the metric primary key (job_id, key, step)."""
    q = select(Metric.key, Metric.step, Metric.epoch, Metric.value).where(Metric.job_id == job_id)
    if keys:
        q = q.where(Metric.key.in_(keys))
    if from_step is not None:
        q = q.where(Metric.step >= from_step)
    conn = session.connection()  # Core rows (tuples): ORM loading would cost more than the query
    series: dict[str, list[dict[str, Any]]] = {}
    points: list[dict[str, Any]] = []
    current = None
    isfinite = math.isfinite
    for key, step, epoch, value in conn.execute(q.order_by(Metric.key, Metric.step)).all():
        if key != current:
            current, points = key, []
            series[key] = points
        points.append(
            {"step": step, "epoch": epoch, "value": value if value is None or isfinite(value) else None}
        )
    if max_points is not None:
        series = {k: list(downsample(v, max_points)) for k, v in series.items()}

    ev = conn.execute(
        select(EvalResult.epoch, EvalResult.map50, EvalResult.map50_95, EvalResult.per_class)
        .where(EvalResult.job_id == job_id)
        .order_by(EvalResult.epoch.desc())
        .limit(1)
    ).one_or_none()
    per_class = None
    if ev is not None:
        ev_epoch, map50, map50_95, classes = ev
        per_class = {
            "epoch": ev_epoch,
            "map50": _finite(map50),
            "map50_95": _finite(map50_95),
            "ap50": {k: _finite(v) for k, v in (classes or {}).get("ap50", {}).items()},
            "ap50_95": {k: _finite(v) for k, v in (classes or {}).get("ap50_95", {}).items()},
        }
    return {"job_id": str(job_id), "series": series, "per_class_ap": per_class}


def list_attempts(session: Session, job_id: uuid.UUID) -> Sequence[Attempt]:
    return session.scalars(select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.number)).all()


def is_terminal_event(event: JobEvent) -> bool:
    return event.type == "status" and event.data.get("status") in _TERMINAL


def fetch_events(
    session: Session, job_id: uuid.UUID, *, after_id: int, limit: int = 500
) -> tuple[str | None, list[JobEvent]]:
    """The job's status (read first, so a terminal status implies its events are visible below) and its
    events after ``after_id``, in order."""
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    events = session.scalars(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
        .order_by(JobEvent.id)
        .limit(limit)
    ).all()
    return status, list(events)
