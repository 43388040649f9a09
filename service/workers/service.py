"""Workers as the API sees them: the live ones (heartbeat within ``worker_stale_seconds``, not stopped),
whether a job of ``gpus`` GPUs can be taken by any of them, and why a queued job waits.

A submission asking for a GPU count that no live worker takes is refused (422 on ``resources.gpus``) when
workers are known at all; with no live worker (the service starting, every worker down) the job is
accepted and waits, with that reason shown on the job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import Job, JobStatus, Worker
from service.errors import invalid
from service.settings import Settings

__all__ = ["check_capacity", "live_workers", "waiting_reason"]


def live_workers(session: Session, settings: Settings) -> Sequence[Worker]:
    since = utcnow() - dt.timedelta(seconds=settings.worker_stale_seconds)
    return session.scalars(
        select(Worker).where(Worker.stopped_at.is_(None), Worker.heartbeat_at >= since).order_by(Worker.name)
    ).all()


def _sizes(workers: Sequence[Worker]) -> str:
    sizes = sorted({w.gpus for w in workers})
    return ", ".join(str(g) for g in sizes)


def check_capacity(session: Session, settings: Settings, gpus: int) -> None:
    """422 on ``resources.gpus`` when live workers exist and none takes jobs of ``gpus`` GPUs."""
    workers = live_workers(session, settings)
    if workers and not any(w.gpus == gpus for w in workers):
        raise invalid(
            "resources.gpus",
            f"no worker takes jobs of {gpus} GPU{'s' if gpus != 1 else ''}: the live workers take jobs of "
            f"{_sizes(workers)} GPUs (start one with `daik worker --gpus {gpus}`)",
        )


def waiting_reason(session: Session, settings: Settings, job: Job) -> str | None:
    """Why a queued job has not started (None for a job that is not queued)."""
    if job.status != JobStatus.queued.value:
        return None
    gpus = int((job.resources or {}).get("gpus", 0) or 0)
    workers = live_workers(session, settings)
    fitting = [w for w in workers if w.gpus == gpus]
    if not workers:
        return "no live worker: the job starts when a worker comes up"
    if not fitting:
        return f"no live worker takes jobs of {gpus} GPUs (live workers: {_sizes(workers)} GPUs)"
    slots = sum(w.concurrency for w in fitting)
    busy = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.status.in_([JobStatus.running.value, JobStatus.cancelling.value]))
        .where(Job.resources["gpus"].as_integer() == gpus)
    )
    queued_before = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.status == JobStatus.queued.value, Job.created_at < job.created_at)
        .where(Job.resources["gpus"].as_integer() == gpus)
    )
    n = len(fitting)
    return (
        f"waiting for a worker of {gpus} GPUs: {n} live worker{'s' if n != 1 else ''} with {slots} "
        f"slot{'s' if slots != 1 else ''}, {busy} running, {queued_before} queued ahead"
    )
