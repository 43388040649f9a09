"""Leases and attempts, with real processes (``daik worker``, ``daik beat``, PostgreSQL, Redis db 12, the
scripted fake trainer):

- a worker cut off from the database (a black hole between them) kills its trainer before its lease runs
  out; beat re-queues the job and another worker resumes it in a folder of its own, so two attempts never
  train at once or write the same files, and the job's best checkpoint row names its file;
- a worker whose clock is an hour slow still takes leases that last ``lease_seconds``: lease times are
  PostgreSQL's ``now()``;
- a job past its deadline (``resources.timeout``) is stopped with a checkpoint and fails as ``timeout``,
  not retried; a trainer that reports nothing for ``DAIK_PROGRESS_TIMEOUT_SECONDS`` is stopped and fails
  as ``timeout``, retried while restarts are left;
- PostgreSQL down (stopped, then started again) while a job ends: the worker replays the attempt's event
  file with the end, and the job succeeds with every evaluation and checkpoint row.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.artifacts.service import best_checkpoint
from service.db.models import Checkpoint, EvalResult, Job
from service.queue import send_train
from service.settings import Settings
from tests import waiting
from tests.servers_control import needs_local_postgres, postgres_down
from tests.worker.conftest import PG_URL, BlackholeProxy, Procs, add_job, get_job, live_workers, wait_for

pytestmark = pytest.mark.slow

LEASE_S = 5
SKEWED_CLOCK = Path(__file__).with_name("skewed_clock")


@pytest.fixture
def procs(settings: Settings, broker: redis.Redis, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(settings, tmp_path, lease_seconds=LEASE_S, fake_trainer="--epochs 20 --iters 2 --sleep 0.5")
    yield p
    p.kill_all()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _trainer_pid(db: sessionmaker[Session], job_id: uuid.UUID, attempt: int) -> int | None:
    attempts = get_job(db, job_id).attempts
    return attempts[attempt - 1].pid if len(attempts) >= attempt else None


def _checkpoints(db: sessionmaker[Session], job_id: uuid.UUID) -> list[Checkpoint]:
    with db() as s:
        rows = list(s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)).all())
        s.expunge_all()
        return rows


def test_a_worker_cut_off_from_the_database_kills_its_trainer_before_its_lease_ends(
    db: sessionmaker[Session], settings: Settings, procs: Procs
) -> None:
    proxy = BlackholeProxy(make_url(PG_URL).host or "127.0.0.1", make_url(PG_URL).port or 5432)
    try:
        job_id = add_job(db, settings.artifact_dir, max_restarts=2)
        procs.start("beat", "beat")
        procs.env["DAIK_DATABASE_URL"] = proxy.url(
            PG_URL
        )  # this worker reaches the database through the proxy
        cut_off = procs.start("cut-off", "worker")
        procs.env["DAIK_DATABASE_URL"] = PG_URL
        send_train(settings, job_id, gpus=0)
        wait_for("epoch 3 of the first attempt", lambda: get_job(db, job_id).epoch >= 3, procs, timeout=120)
        first = _trainer_pid(db, job_id, 1)
        assert first is not None and _alive(first)

        proxy.cut()  # the database hangs for this worker; its heartbeats and writes never return
        cut_at = time.monotonic()
        procs.start("other", "worker")
        wait_for(
            "the cut-off worker to kill its trainer", lambda: not _alive(first), procs, timeout=3 * LEASE_S
        )
        took = time.monotonic() - cut_at
        assert took <= LEASE_S + 1.5, f"the trainer ran on {took:.1f} s after the cut (lease {LEASE_S} s)"
        assert cut_off.poll() is None  # the worker itself lives on

        wait_for("the job to end", lambda: get_job(db, job_id).finished_at is not None, procs, timeout=120)
        job = get_job(db, job_id)
        assert (job.status, job.attempt, job.restarts) == ("succeeded", 2, 1), (job.error, procs.logs())
        lost, second = job.attempts
        assert (lost.status, lost.failure_kind) == ("failed", "lost"), lost.reason
        assert second.started_at >= lost.started_at and second.worker != lost.worker
        out = settings.artifact_dir / "jobs" / str(job_id)
        assert second.resumed_from == str(out / "attempt-1" / "weights" / "last.pt")
        # every row of the second attempt names a file of its own folder that holds what the row says
        rows = [c for c in _checkpoints(db, job_id) if c.attempt == 2]
        assert rows and all(c.path.startswith(f"jobs/{job_id}/attempt-2/weights/") for c in rows)
        for c in rows:
            content = (settings.artifact_dir / c.path).read_bytes().decode()
            assert content.startswith(f"best epoch={c.epoch}." if c.is_best else f"epoch={c.epoch} "), (
                c.path,
                content,
            )
        with db() as s:
            best = best_checkpoint(s, job_id)
        assert best is not None and best.attempt == 2 and best.epoch == 20
    finally:
        proxy.close()


def test_leases_are_timed_by_the_database_clock_not_the_worker_s(
    db: sessionmaker[Session], settings: Settings, procs: Procs
) -> None:
    """The worker's clock is an hour slow. Its leases must still end ``lease_seconds`` after PostgreSQL's
    ``now()``: a lease timed by its own clock would have expired an hour ago, and beat's reaper (whose host
    keeps good time) would take the job away at once."""
    procs.env["DAIK_FAKE_TRAINER"] = "--epochs 6 --iters 2 --sleep 1"
    job_id = add_job(db, settings.artifact_dir, max_restarts=2)
    procs.start("beat", "beat")
    procs.env.update(PYTHONPATH=str(SKEWED_CLOCK), DAIK_TEST_CLOCK_SKEW="-3600")
    procs.start("slow-clock", "worker")
    send_train(settings, job_id, gpus=0)
    leases: list[float] = []

    def lease_left() -> bool:
        with db() as s:
            row = s.execute(
                select(Job.status, Job.lease_expires_at, func.now()).where(Job.id == job_id)
            ).one()
        if row.status == "running" and row.lease_expires_at is not None:
            leases.append((row.lease_expires_at - row.now).total_seconds())
        return row.status != "running" and get_job(db, job_id).attempt > 0

    wait_for("the job to end", lease_left, procs, timeout=120)
    job = get_job(db, job_id)
    assert (job.status, job.attempt, job.restarts) == ("succeeded", 1, 0), (job.error, procs.logs())
    assert leases and all(0 < left <= LEASE_S + 1 for left in leases), leases
    assert abs((job.attempts[0].started_at - job.started_at).total_seconds()) < 1  # the database's time


def test_a_job_past_its_deadline_fails_and_a_stalled_trainer_is_retried(
    db: sessionmaker[Session], settings: Settings, procs: Procs
) -> None:
    """One worker, two jobs whose trainer hangs after its first epoch (reporting nothing more). The first
    has a 2-second deadline: stopped with a checkpoint, ``timeout``, not retried although restarts are left.
    The second has none; the watchdog (3 s without an event) stops it: ``timeout``, retried once (its
    ``max_restarts``), then failed."""
    procs.env.update(DAIK_FAKE_TRAINER="--epochs 3 --iters 1 --hang", DAIK_PROGRESS_TIMEOUT_SECONDS="3")
    procs.start("worker", "worker")
    late = add_job(db, settings.artifact_dir, max_restarts=2, resources={"gpus": 0, "timeout": 2})
    send_train(settings, late, gpus=0)
    wait_for("the job with a deadline to end", lambda: get_job(db, late).finished_at is not None, procs, 120)
    job = get_job(db, late)
    assert (job.status, job.failure_kind, job.restarts, job.attempt) == ("failed", "timeout", 0, 1), job.error
    assert job.error is not None and "deadline" in job.error
    assert job.deadline_at is not None and job.started_at is not None
    assert job.deadline_at - job.started_at == dt.timedelta(seconds=2)
    (attempt,) = job.attempts
    assert attempt.exit_code == 143  # SIGTERM: the trainer checkpointed
    last = settings.artifact_dir / "jobs" / str(late) / "attempt-1" / "weights" / "last.pt"
    assert last.read_bytes().endswith(b"stopped=1")

    stalled = add_job(db, settings.artifact_dir, max_restarts=1)
    send_train(settings, stalled, gpus=0)
    wait_for("the stalled job to end", lambda: get_job(db, stalled).finished_at is not None, procs, 120)
    job = get_job(db, stalled)
    assert (job.status, job.failure_kind, job.restarts, job.attempt) == ("failed", "timeout", 1, 2), job.error
    assert job.deadline_at is None
    assert [(a.status, a.failure_kind) for a in job.attempts] == [("failed", "timeout")] * 2
    assert job.error is not None and "no progress" in job.error


@needs_local_postgres()
def test_a_job_that_ends_while_postgres_is_down_keeps_its_final_rows(
    db: sessionmaker[Session], settings: Settings, procs: Procs, tmp_path: Path
) -> None:
    """The trainer writes its last epoch (evaluation, checkpoints) and its end while PostgreSQL is stopped;
    the database comes back 7 s after the trainer exited. The worker writes the events it could not write
    then, with the end, in one transaction: the job succeeds in its first attempt with every row.

    Stops the shared PostgreSQL server for about 8 s: run it under ``flock /tmp/daik-pg-restart.lock``."""
    gate = tmp_path / "gate"
    procs.env["DAIK_FAKE_TRAINER"] = f"--epochs 3 --iters 2 --gate {gate}"
    procs.env["DAIK_LEASE_SECONDS"] = "60"  # the outage is shorter than the lease: no one takes the job away
    job_id = add_job(db, settings.artifact_dir)
    procs.start("worker", "worker")
    wait_for("the worker to be up", lambda: len(live_workers(db)) == 1, procs, timeout=120)
    send_train(settings, job_id, gpus=0)
    wait_for("epoch 2", lambda: get_job(db, job_id).epoch >= 2, procs, timeout=120)
    pid = _trainer_pid(db, job_id, 1)
    assert pid is not None
    with postgres_down():
        gate.touch()  # the trainer runs its last epoch and ends
        waiting.wait_for(lambda: not _alive(pid), 30, interval=0.1, what="the trainer to end")
        time.sleep(7.0)  # the scenario: the database stays down a while after the trainer ended
    wait_for("the job to end", lambda: get_job(db, job_id).finished_at is not None, procs, timeout=120)
    job = get_job(db, job_id)
    assert (job.status, job.attempt, job.restarts, job.final_map50) == ("succeeded", 1, 0, 0.5), (
        job.error,
        procs.logs(),
    )
    with db() as s:
        evals = s.scalars(select(EvalResult.epoch).where(EvalResult.job_id == job_id)).all()
    assert sorted(evals) == [1, 2, 3]
    final = {(c.path.rsplit("/", 1)[1], c.epoch) for c in _checkpoints(db, job_id)}
    assert final == {("last.pt", 3), ("best.pt", 3)}
    assert "ending attempt 1 failed" in procs.log("worker")  # it tried, and waited for the database
    assert os.path.exists(settings.artifact_dir / "jobs" / str(job_id) / "attempt-1" / "events.jsonl")
