"""``worker.pipelines.train`` with the scripted fake trainer (real processes, real PostgreSQL and Redis, no
Celery): success, cancel (obeyed, ignored, forced), a lost fence, a user error, an OOM, a preemption."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Checkpoint, EvalResult, Job, JobStatus, Metric
from service.db.session import session_scope
from service.settings import Settings
from tests.waiting import wait_for
from tests.worker.conftest import (
    add_job,
    fake_command,
    get_job,
    group_alive,
    group_gone,
    job_events,
    sent_jobs,
)
from worker.pipelines import train

POLL = 0.05


def _run_in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


def _trainer_pid(db: sessionmaker[Session], job_id: uuid.UUID) -> int | None:
    job = get_job(db, job_id)
    return job.attempts[-1].pid if job.attempts else None


def _hanging(db: sessionmaker[Session], job_id: uuid.UUID) -> bool:
    """The fake trainer has finished its first epoch and hangs (the checkpoint rows are written)."""
    with db() as s:
        return s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)).first() is not None


def test_a_completed_run_succeeds_with_its_rows(db: sessionmaker[Session], settings: Settings) -> None:
    job_id = add_job(db, artifact_root=settings.artifact_dir)
    status = train(db, settings, job_id, command=fake_command("--epochs", "2"), poll_s=POLL)
    assert status == JobStatus.succeeded
    job = get_job(db, job_id)
    assert (job.status, job.final_map50, job.final_map50_95, job.progress) == ("succeeded", 0.5, 0.25, 1.0)
    assert job.results is not None and job.results["epochs"] == 2 and job.finished_at is not None
    assert (job.epoch, job.total_epochs, job.step, job.lease_expires_at) == (2, 2, 6, None)
    (attempt,) = job.attempts
    assert (attempt.status, attempt.exit_code, attempt.pid) == ("succeeded", 0, attempt.pid)
    assert (
        attempt.pid is not None and attempt.log_tail is not None and "fake trainer: start" in attempt.log_tail
    )
    with db() as s:
        metrics = {(m.key, m.step) for m in s.scalars(select(Metric).where(Metric.job_id == job_id))}
        ckpts = s.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.path)
        ).all()
        evals = s.scalars(select(EvalResult).where(EvalResult.job_id == job_id)).all()
    keys = {"loss_cls", "loss_box", "loss", "lr", "images_per_s", "map50", "map50_95"}
    assert metrics == {(k, s) for k in keys for s in (3, 6)}
    assert [(c.path, c.is_best, c.epoch, c.size_bytes) for c in ckpts] == [
        (f"jobs/{job_id}/attempt-1/weights/best.pt", True, 2, 100),
        (f"jobs/{job_id}/attempt-1/weights/last.pt", False, 2, len(b"epoch=2 step=6")),
    ]
    assert sorted(e.epoch for e in evals) == [1, 2]
    types = [t for t, _ in job_events(db, job_id)]
    assert types[0] == "status" and types[-1] == "status"
    assert [t for t in types if t != "progress"][1:-1] == ["eval", "epoch", "checkpoint", "checkpoint"] * 2
    assert job_events(db, job_id)[-1][1] == {"status": "succeeded", "attempt": 1, "error": None}


def _cancel(db: sessionmaker[Session], job_id: uuid.UUID, force: bool = False) -> None:
    with session_scope(db) as s:  # what the API does on DELETE / POST .../cancel of a running job
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="cancelling", cancel_requested=True, force_cancel=force)
        )


def _cancel_test(
    db: sessionmaker[Session], settings: Settings, *behaviour: str, force: bool = False
) -> tuple[float, Job]:
    """Cancel the hanging fake trainer (whose child ignores SIGTERM); returns how long the cancel took (from
    the request to the end of the task) and the job."""
    job_id = add_job(db, artifact_root=settings.artifact_dir)
    cmd = fake_command("--hang", "--child", *behaviour)
    thread, result = _run_in_thread(lambda: train(db, settings, job_id, command=cmd, poll_s=POLL))
    wait_for(lambda: _hanging(db, job_id), what="the trainer to hang")
    pgid = _trainer_pid(db, job_id)
    assert pgid is not None
    child = int((settings.artifact_dir / "jobs" / str(job_id) / "attempt-1" / "child.pid").read_text())
    assert os.getpgid(child) == pgid and len(group_alive(pgid)) == 2  # the trainer and its child
    t0 = time.monotonic()
    _cancel(db, job_id, force=force)
    thread.join(timeout=30)
    took = time.monotonic() - t0
    assert not thread.is_alive() and result == [JobStatus.cancelled]
    assert group_gone(pgid)  # no process of the job is left, the SIGTERM-proof child included
    job = get_job(db, job_id)
    assert (job.status, job.error) == ("cancelled", None) and job.finished_at is not None
    (attempt,) = job.attempts
    assert (attempt.status, attempt.failure_kind) == ("cancelled", "cancelled")
    assert job_events(db, job_id)[-1][1] == {"status": "cancelled", "attempt": 1, "error": None}
    return took, job


def test_cancel_stops_the_trainer_with_a_checkpoint_and_leaves_no_process(
    db: sessionmaker[Session], settings: Settings
) -> None:
    took, job = _cancel_test(db, settings)
    assert took < settings.cancel_grace_seconds  # the trainer obeyed SIGTERM: no waiting for the grace
    assert job.attempts[0].exit_code == 143
    last = settings.artifact_dir / "jobs" / str(job.id) / "attempt-1" / "weights" / "last.pt"
    assert last.read_bytes().endswith(b"stopped=1")  # written by the trainer's SIGTERM handler


def test_cancel_of_a_trainer_that_ignores_sigterm_escalates_to_sigkill(
    db: sessionmaker[Session], settings: Settings
) -> None:
    took, job = _cancel_test(db, settings, "--on-term", "ignore")
    assert took >= settings.cancel_grace_seconds
    assert job.attempts[0].exit_code == -9


def test_a_forced_cancel_kills_at_once(db: sessionmaker[Session], settings: Settings) -> None:
    took, job = _cancel_test(db, settings, "--on-term", "ignore", force=True)
    assert took < settings.cancel_grace_seconds
    assert job.attempts[0].exit_code == -9


def test_a_trainer_error_fails_the_job_with_its_reason(db: sessionmaker[Session], settings: Settings) -> None:
    job_id = add_job(db, artifact_root=settings.artifact_dir)
    cmd = fake_command("--fail", "2", "--message", "data/train: no images")
    assert train(db, settings, job_id, command=cmd, poll_s=POLL) == JobStatus.failed
    job = get_job(db, job_id)
    assert (job.status, job.failure_kind, job.error) == (
        "failed",
        "user_error",
        "data/train: no images",  # the trainer's typed failure event, not its log
    )
    (attempt,) = job.attempts
    assert (attempt.status, attempt.exit_code, attempt.failure_kind) == ("failed", 2, "user_error")
    assert attempt.reason == job.error and attempt.log_tail is not None and job.error in attempt.log_tail
    assert job.final_map50 is None and job.restarts == 0
    assert job_events(db, job_id)[-1][1] == {"status": "failed", "attempt": 1, "error": job.error}


def test_out_of_memory_is_not_retried(db: sessionmaker[Session], settings: Settings) -> None:
    """The trainer reports a CUDA OOM as a typed ``failure`` event of kind ``oom`` (not the log's text)."""
    job_id = add_job(db, artifact_root=settings.artifact_dir)
    message = "OutOfMemoryError: CUDA out of memory. Tried ..."
    cmd = fake_command("--fail", "1", "--failure", "oom", "--message", message)
    assert train(db, settings, job_id, command=cmd, poll_s=POLL) == JobStatus.failed
    job = get_job(db, job_id)
    assert (job.failure_kind, job.restarts, job.error) == ("oom", 0, f"oom: {message}")


def test_a_failure_is_judged_by_its_event_not_by_the_log_s_text(
    db: sessionmaker[Session], settings: Settings
) -> None:
    """A log line that mentions memory does not make an error an OOM (the classification used to search the
    log for "out of memory")."""
    job_id = add_job(db, artifact_root=settings.artifact_dir)
    message = "ValueError: dataset.train: out of memory budget for the cache (raise cache_mb)"
    cmd = fake_command("--fail", "1", "--failure", "error", "--message", message)
    assert train(db, settings, job_id, command=cmd, poll_s=POLL) == JobStatus.failed
    job = get_job(db, job_id)
    assert (job.failure_kind, job.error) == ("user_error", message)


def test_a_signalled_trainer_is_requeued_and_sent_again_until_the_restarts_run_out(
    db: sessionmaker[Session], settings: Settings, broker: redis.Redis
) -> None:
    job_id = add_job(db, artifact_root=settings.artifact_dir, max_restarts=1)
    cmd = fake_command("--fail", "143", "--failure", "none", "--message", "daik: SIGTERM: stopping")
    assert train(db, settings, job_id, command=cmd, poll_s=POLL) == JobStatus.queued
    job = get_job(db, job_id)
    assert (job.status, job.restarts, job.failure_kind, job.lease_expires_at) == (
        "queued",
        1,
        "preempted",
        None,
    )
    assert job.dispatched_at is not None and job.error == "preempted: stopped by a signal (exit code 143)"
    assert (job.attempts[0].status, job.attempts[0].failure_kind) == ("failed", "preempted")
    assert sent_jobs(broker) == [str(job_id)]
    assert job_events(db, job_id)[-1][1] == {"status": "queued", "attempt": 1, "error": job.error}
    # the second attempt resumes (from the first's last.pt) and is preempted again: no restarts left
    assert train(db, settings, job_id, command=cmd, poll_s=POLL) == JobStatus.failed
    job = get_job(db, job_id)
    assert (job.status, job.restarts, job.attempt, job.failure_kind) == ("failed", 1, 2, "preempted")
    assert job.attempts[1].resumed_from == str(
        settings.artifact_dir / "jobs" / str(job_id) / "attempt-1" / "weights" / "last.pt"
    )
    assert sent_jobs(broker) == [str(job_id)]  # not sent again


def test_an_attempt_that_lost_the_job_stops_its_trainer_and_writes_nothing(
    db: sessionmaker[Session], settings: Settings
) -> None:
    job_id = add_job(db, artifact_root=settings.artifact_dir)
    cmd = fake_command("--hang", "--child")
    thread, result = _run_in_thread(lambda: train(db, settings, job_id, command=cmd, poll_s=POLL))
    wait_for(lambda: _hanging(db, job_id), what="the trainer to hang")
    pgid = _trainer_pid(db, job_id)
    assert pgid is not None
    with session_scope(db) as s:  # the reaper re-queued it and another worker claimed it: attempt 2
        s.execute(update(Job).where(Job.id == job_id).values(attempt=2, lease_owner="other:1"))
    thread.join(timeout=30)
    assert not thread.is_alive() and result == [None]
    assert group_gone(pgid)
    job = get_job(db, job_id)
    assert (job.status, job.attempt, job.lease_owner, job.finished_at) == ("running", 2, "other:1", None)
    assert job.attempts[0].status == "running"  # the claim of attempt 2 (or the reaper) closes it
    statuses = [data for kind, data in job_events(db, job_id) if kind == "status"]
    assert statuses == [{"status": "running", "attempt": 1, "error": None}]


def test_the_worker_shutting_down_requeues_its_job(
    db: sessionmaker[Session], settings: Settings, broker: redis.Redis
) -> None:
    job_id = add_job(db, artifact_root=settings.artifact_dir)
    stop = threading.Event()
    cmd = fake_command("--hang")
    thread, result = _run_in_thread(lambda: train(db, settings, job_id, stop=stop, command=cmd, poll_s=POLL))
    wait_for(lambda: _hanging(db, job_id), what="the trainer to hang")
    stop.set()
    thread.join(timeout=30)
    assert result == [JobStatus.queued]
    job = get_job(db, job_id)
    assert (job.status, job.restarts, job.error) == (
        "queued",
        1,
        "preempted: the worker shut down (exit code 143)",
    )
    assert sent_jobs(broker) == [str(job_id)]
    last = Path(settings.artifact_dir / "jobs" / str(job_id) / "attempt-1" / "weights" / "last.pt")
    assert last.read_bytes().endswith(b"stopped=1")
