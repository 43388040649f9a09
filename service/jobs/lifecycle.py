"""Jobs, the user's state changes: cancel (cooperative, or forced) and retry (from the last checkpoint or
from scratch). Each locks the job row first, so a worker's claim waits for the decision; the worker's own
moves (claim, finish, lost attempts) live in the worker."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import Checkpoint, EvalResult, Job, JobStatus, Metric, MetricArchive
from service.db.states import IllegalTransition, check_transition
from service.jobs.submit import add_event, dispatch
from service.settings import Settings

__all__ = ["cancel_job", "retry_job"]


def cancel_job(session: Session, job: Job, *, force: bool = False) -> Job:
    """Cancel cooperatively and commit: a queued job is cancelled at once (its message no-ops at the
    claim); a running one becomes ``cancelling`` with ``cancel_requested`` (the worker's heartbeat sees
    it and stops the trainer; ``force`` skips the grace period). Cancelling a job already cancelled or
    cancelling changes nothing (``force`` still upgrades a pending cancel); a finished job raises
    :class:`~service.db.states.IllegalTransition` (409)."""
    # lock the row: a worker's claim (UPDATE ... WHERE status = 'queued') waits, then sees the new status
    session.refresh(job, with_for_update=True)
    current = JobStatus(job.status)
    if not check_transition(current, JobStatus.cancelled):
        if force and current == JobStatus.cancelling and not job.force_cancel:
            job.force_cancel = True
        session.commit()
        return job
    now = utcnow()
    if current == JobStatus.queued:
        job.status = JobStatus.cancelled.value
        job.cancel_requested = True
        job.finished_at = now
        job.failure_kind = "cancelled"
        add_event(
            session,
            job,
            "status",
            data={"status": JobStatus.cancelled.value, "attempt": job.attempt, "error": None},
        )
    else:
        check_transition(current, JobStatus.cancelling)
        job.status = JobStatus.cancelling.value
        job.cancel_requested = True
        job.force_cancel = job.force_cancel or force
        add_event(
            session,
            job,
            "status",
            data={"status": JobStatus.cancelling.value, "attempt": job.attempt, "error": None},
        )
    session.commit()
    return job


def retry_job(session: Session, settings: Settings, job: Job, *, start: str = "checkpoint") -> Job:
    """Queue a failed or cancelled job again, with a fresh restart budget, and send its task.

    ``start="checkpoint"``: the next attempt resumes from the newest ``last.pt`` an earlier attempt
    recorded, when there is one (its metrics past that point are archived as on any resume).
    ``start="scratch"``: nothing of the earlier attempts carries over: their checkpoint rows are dropped
    (so the next attempt starts afresh, in its own ``attempt-<n>`` folder; the earlier attempts' folders
    stay, for the user, and the ``weights`` folder of a job that ran before attempts had their own folders
    is kept aside as ``weights.retired-<attempt>``), their metric rows move to the archive, their
    evaluations are dropped, and progress and the final mAP are reset. Either way the job gets a new
    deadline (``resources.timeout``) at its next start. A job already queued is left as it is; a running,
    cancelling or succeeded job raises :class:`~service.db.states.IllegalTransition` (409)."""
    session.refresh(job, with_for_update=True)  # the worker's claim waits for this decision
    current = JobStatus(job.status)
    if current == JobStatus.queued:
        session.commit()
        return job
    if current not in (JobStatus.failed, JobStatus.cancelled):  # running -> queued is the worker's move only
        raise IllegalTransition(current, JobStatus.queued)
    check_transition(current, JobStatus.queued)
    if start == "scratch":
        _retire_attempts(session, settings, job)
    job.status = JobStatus.queued.value
    job.error = None
    job.failure_kind = None
    job.finished_at = None
    job.cancel_requested = False
    job.force_cancel = False
    job.restarts = 0
    job.lease_owner = None
    job.lease_expires_at = None
    job.deadline_at = None  # a retry runs with a new deadline (resources.timeout), set by its first claim
    job.dispatched_at = None
    add_event(
        session,
        job,
        "status",
        data={"status": JobStatus.queued.value, "attempt": job.attempt, "error": None, "retry": start},
    )
    session.commit()
    dispatch(session, settings, job)
    return job


def _retire_attempts(session: Session, settings: Settings, job: Job) -> None:
    """``start="scratch"``: set the earlier attempts' outputs aside (see :func:`retry_job`)."""
    if job.output_dir:
        weights = Path(job.output_dir) / "weights"
        if weights.is_dir():
            target = weights.with_name(f"weights.retired-{job.attempt}")
            k = 1
            while target.exists():
                k += 1
                target = weights.with_name(f"weights.retired-{job.attempt}-{k}")
            weights.rename(target)
    session.execute(
        insert(MetricArchive).from_select(
            ["job_id", "key", "step", "value", "epoch", "attempt"],
            select(Metric.job_id, Metric.key, Metric.step, Metric.value, Metric.epoch, Metric.attempt).where(
                Metric.job_id == job.id
            ),
        )
    )
    session.execute(delete(Metric).where(Metric.job_id == job.id))
    session.execute(delete(EvalResult).where(EvalResult.job_id == job.id))
    session.execute(delete(Checkpoint).where(Checkpoint.job_id == job.id))
    job.epoch = 0
    job.step = 0
    job.progress = 0.0
    job.final_map50 = None
    job.final_map50_95 = None
    job.results = None
