"""The periodic tasks (``daik.redispatch``, ``daik.reap``; ``daik beat`` sends them to the control queue and
runs them itself, so that no training can hold them up).

- :func:`redispatch` re-sends queued jobs whose broker send is missing or stale: a crash between the API's
  commit and its send, a message lost with a broker. On a Redis broker only a job with no message in flight
  is sent (:func:`service.queue.send_train_if_lost`): a job that merely waits behind busy workers gets no
  duplicate. Duplicates that do happen are harmless: the worker's claim makes every message after the first
  a no-op.
- :func:`record_run` notes that a task ran to its end (the ``maintenance`` table), which ``/readyz`` reads.
- :func:`reap` ends the attempts whose worker stopped heartbeating (its lease expired, by the database's
  clock, which the worker's claim and heartbeats also use): the attempt becomes
  ``lost``; a running job goes back to the queue (``restarts + 1``, sent again) while ``restarts <
  max_restarts``, else fails; a ``cancelling`` job becomes ``cancelled`` (what its client asked for).

Both take their rows ``FOR UPDATE SKIP LOCKED`` (two beats, or a reaper racing a worker, never act on one row
twice; SQLite, one machine, serialises writers instead), re-check their condition in the ``UPDATE``, commit,
and only then send.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.holds import held_by_batch
from service.db.models import Attempt, FailureKind, Job, JobStatus, Maintenance
from service.db.session import db_now, session_scope
from service.queue import send_train, send_train_if_lost
from service.settings import Settings
from worker.pipelines import gpus_of, worker_id
from worker.reporting import LIVE_STATES, add_job_events, dialect_insert, require_transition

__all__ = ["BATCH", "ReapReport", "reap", "record_run", "redispatch"]

log = logging.getLogger(__name__)

BATCH = 500  # rows per run; the next run takes the rest


def redispatch(
    db: sessionmaker[Session], settings: Settings, *, now: dt.datetime | None = None
) -> list[uuid.UUID]:
    """Send ``daik.train`` again for queued jobs whose ``dispatched_at`` is older than
    ``redispatch_after_seconds``, or missing on a job created before that (a fresher one may still be on its
    way from the API), unless a message of the job is still in flight (Redis brokers); ``dispatched_at``
    (last sent, or found in flight) becomes now, so that each run looks at the next ``BATCH`` jobs. Returns
    the ids sent."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(seconds=settings.redispatch_after_seconds)
    stale = or_(
        and_(Job.dispatched_at.is_(None), Job.created_at < cutoff),
        Job.dispatched_at < cutoff,
    )
    with session_scope(db) as s:
        rows = s.execute(
            select(Job.id, Job.resources)
            .where(Job.status == JobStatus.queued.value, stale, ~held_by_batch(Job.id))
            .order_by(Job.created_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:
            s.execute(
                update(Job)
                .where(Job.id.in_([r.id for r in rows]), Job.status == JobStatus.queued.value)
                .values(dispatched_at=now)
                .execution_options(synchronize_session=False)
            )
    sent = [r.id for r in rows if send_train_if_lost(settings, r.id, gpus_of(r.resources))]
    if sent:
        log.info(
            "re-sent %d queued jobs whose message was lost (%d still in flight)",
            len(sent),
            len(rows) - len(sent),
        )
    return sent


def record_run(
    db: sessionmaker[Session], task: str, *, every_seconds: float, now: dt.datetime | None = None
) -> None:
    """Note that ``task`` (meant to run every ``every_seconds``) ran to its end now, on this process."""
    now = now or utcnow()
    with session_scope(db) as s:
        stmt = dialect_insert(s, Maintenance).values(
            task=task, every_seconds=every_seconds, last_run_at=now, node=worker_id()
        )
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=[Maintenance.task],
                set_={"every_seconds": every_seconds, "last_run_at": now, "node": stmt.excluded.node},
            )
        )


@dataclass
class ReapReport:
    """What :func:`reap` did, by job id."""

    requeued: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    cancelled: list[uuid.UUID] = field(default_factory=list)


def reap(db: sessionmaker[Session], settings: Settings, *, now: dt.datetime | None = None) -> ReapReport:
    """End the attempts of running / cancelling jobs whose lease expired (see the module docstring), as of
    ``now`` (default: the database's clock, which also wrote the leases)."""
    report = ReapReport()
    resend: list[tuple[uuid.UUID, int]] = []
    with session_scope(db) as s:
        now = now or db_now(s)
        jobs = _expired(s, now)
        for j in jobs:
            target = _reap_one(s, j, now)
            if target is None:
                continue
            {JobStatus.queued: report.requeued, JobStatus.failed: report.failed}.get(
                target, report.cancelled
            ).append(j.id)
            if target == JobStatus.queued:
                resend.append((j.id, gpus_of(j.resources)))
    for job_id, gpus in resend:  # after the commit
        send_train(settings, job_id, gpus)
    if jobs:
        log.info(
            "reaped: %d re-queued, %d failed, %d cancelled",
            len(report.requeued),
            len(report.failed),
            len(report.cancelled),
        )
    return report


def _expired(s: Session, now: dt.datetime) -> Sequence[Row[Any]]:
    """Up to ``BATCH`` running / cancelling jobs whose lease expired before ``now``, the oldest first, locked
    (``FOR UPDATE SKIP LOCKED``)."""
    return s.execute(
        select(
            Job.id,
            Job.status,
            Job.attempt,
            Job.restarts,
            Job.max_restarts,
            Job.resources,
            Job.lease_owner,
            Job.lease_expires_at,
        )
        .where(Job.status.in_(LIVE_STATES), Job.lease_expires_at < now)
        .order_by(Job.lease_expires_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ).all()


def _reap_target(j: Row[Any]) -> tuple[JobStatus, str]:
    """Where an expired job goes, and why: ``cancelled`` (it was being cancelled), ``queued`` (restarts
    left) or ``failed``."""
    expired = j.lease_expires_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    reason = f"lost: the worker {j.lease_owner} stopped heartbeating (lease expired {expired} UTC)"
    current = JobStatus(j.status)
    if current == JobStatus.cancelling:
        target = JobStatus.cancelled
    elif j.restarts < j.max_restarts:
        target = JobStatus.queued
    else:
        target = JobStatus.failed
        reason += f"; no restarts left ({j.restarts} of {j.max_restarts} used)"
    require_transition(current, target)
    return target, reason


def _reap_values(j: Row[Any], target: JobStatus, reason: str, now: dt.datetime) -> dict[str, object]:
    """The job row's new values for ``target``."""
    values: dict[str, object] = {"status": target.value, "lease_expires_at": None, "updated_at": now}
    if target == JobStatus.queued:
        values.update(
            restarts=j.restarts + 1,
            dispatched_at=now,
            error=reason,
            failure_kind=FailureKind.lost.value,
        )
    elif target == JobStatus.failed:
        values.update(finished_at=now, error=reason, failure_kind=FailureKind.lost.value)
    else:
        values.update(finished_at=now)
    return values


def _reap_one(s: Session, j: Row[Any], now: dt.datetime) -> JobStatus | None:
    """Move the expired job ``j`` and end its attempt as ``lost``, with a ``status`` event; ``None``: the
    job is no longer as read (a heartbeat renewed the lease), nothing done."""
    target, reason = _reap_target(j)
    moved = s.execute(  # fenced: the job must be as read (a heartbeat may have renewed the lease)
        update(Job)
        .returning(Job.id)
        .where(
            Job.id == j.id,
            Job.attempt == j.attempt,
            Job.status == j.status,
            Job.lease_expires_at < now,
        )
        .values(**_reap_values(j, target, reason, now))
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if moved is None:
        return None
    s.execute(
        update(Attempt)
        .where(Attempt.job_id == j.id, Attempt.number == j.attempt, Attempt.status == "running")
        .values(status="failed", failure_kind=FailureKind.lost.value, reason=reason, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    error = reason if target != JobStatus.cancelled else None
    event = {"status": target.value, "attempt": j.attempt, "error": error}
    add_job_events(s, j.id, attempt=j.attempt, events=[("status", event)])
    return target
