"""Housekeeping with real processes (``daik worker``, ``daik beat``, the scripted fake trainer): it runs in
``daik beat``, so training never holds it up, and it floods nothing.

- every worker busy training, another job's worker SIGKILLed: beat's reaper re-queues that job within the
  lease period, and records its runs (``/readyz`` reads them);
- 50 queued jobs waiting behind one busy worker, 10 re-dispatch periods: the broker still holds one train
  message per job (the re-dispatcher sends only jobs whose message is lost);
- ``daik beat`` whose scheduler process dies stops, with an error, instead of running on unfed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Job, Maintenance
from service.db.session import session_scope
from service.queue import TASK_REAP, send_train
from service.settings import Settings
from tests.worker.conftest import Procs, add_job, ago, get_job, live_workers, sent_jobs, wait_for

pytestmark = pytest.mark.slow

LEASE_S = 5


@pytest.fixture
def procs(settings: Settings, broker: redis.Redis, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(settings, tmp_path, lease_seconds=LEASE_S, fake_trainer="--epochs 1 --iters 1 --hang")
    yield p
    p.kill_all()


def _running(db: sessionmaker[Session], job_id: uuid.UUID) -> bool:
    job = get_job(db, job_id)
    return job.status == "running" and job.epoch >= 1


def _maintenance(db: sessionmaker[Session]) -> dict[str, Maintenance]:
    with db() as s:
        rows = {m.task: m for m in s.scalars(select(Maintenance)).all()}
        s.expunge_all()
        return rows


def test_a_lost_job_is_requeued_while_every_worker_trains(
    db: sessionmaker[Session], settings: Settings, procs: Procs
) -> None:
    """Two CPU workers, each training a job that runs for hours; one of them is SIGKILLed. The other is
    busy, so only ``daik beat`` can notice: its reaper re-queues the dead worker's job once the lease has
    expired, within the next lease period."""
    busy_job = add_job(db, settings.artifact_dir)
    lost_job = add_job(db, settings.artifact_dir, max_restarts=2)
    procs.start("busy", "worker")
    procs.start("beat", "beat")
    wait_for("the worker to be up", lambda: len(live_workers(db)) == 1, procs, timeout=120)
    send_train(settings, busy_job, gpus=0)
    wait_for("the first job to train", lambda: _running(db, busy_job), procs, timeout=120)
    doomed = procs.start("doomed", "worker")
    send_train(settings, lost_job, gpus=0)
    wait_for("the second job to train", lambda: _running(db, lost_job), procs, timeout=120)

    os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its pool process; its trainer dies with them
    killed_at = time.monotonic()
    wait_for(
        "the lost job to be re-queued",
        lambda: get_job(db, lost_job).status == "queued",
        procs,
        timeout=2 * LEASE_S + 30,
    )
    took = time.monotonic() - killed_at
    job = get_job(db, lost_job)
    assert (job.restarts, job.failure_kind) == (1, "lost"), job.error
    assert took <= 2 * LEASE_S + 5, f"re-queued {took:.1f} s after the kill (lease {LEASE_S} s)"
    assert get_job(db, busy_job).status == "running"  # the busy worker trained on, undisturbed

    reap = _maintenance(db)[TASK_REAP]  # beat records its runs (what /readyz reads): fresh
    assert reap.every_seconds == LEASE_S / 3
    assert (utcnow() - reap.last_run_at).total_seconds() < 3 * reap.every_seconds


def test_jobs_waiting_behind_a_busy_worker_get_no_duplicate_messages(
    db: sessionmaker[Session], settings: Settings, procs: Procs, broker: redis.Redis
) -> None:
    """50 queued jobs whose messages wait in the broker behind one busy worker; the re-dispatcher runs
    every second (``redispatch_after_seconds`` 2) and finds every job stale for 10 of its periods, yet it
    sends nothing: each job's message is still in flight. One message per job."""
    procs.env["DAIK_REDISPATCH_AFTER_SECONDS"] = "2"
    busy_job = add_job(db, settings.artifact_dir)
    procs.start("busy", "worker")
    send_train(settings, busy_job, gpus=0)
    wait_for("the worker to be busy", lambda: _running(db, busy_job), procs, timeout=120)

    waiting = [add_job(db, settings.artifact_dir) for _ in range(50)]
    for job_id in waiting:
        send_train(settings, job_id, gpus=0)  # as the API does: send, then note when
    with session_scope(db) as s:
        s.execute(update(Job).where(Job.id.in_(waiting)).values(dispatched_at=ago(1), created_at=ago(1)))
    procs.start("beat", "beat")

    def redispatch_runs() -> int:
        return len(re.findall(r"Task daik\.redispatch\[[^]]+\] succeeded", procs.log("beat")))

    wait_for("10 re-dispatch periods", lambda: redispatch_runs() >= 10, procs, timeout=120)
    queued = sent_jobs(broker)
    assert len(queued) <= 50, f"{len(queued)} train messages for 50 waiting jobs"
    assert sorted(queued) == sorted(str(j) for j in waiting)
    assert all(get_job(db, j).status == "queued" for j in waiting[:3])


def test_daik_beat_stops_when_its_scheduler_dies(procs: Procs) -> None:
    """``daik beat`` runs its scheduler as a child process beside the consumer of the housekeeping; if the
    scheduler dies, ``daik beat`` stops with an error (so that its supervisor restarts it) instead of
    consuming a queue that nothing feeds."""
    beat = procs.start("beat", "beat")
    wait_for("daik beat to be ready", lambda: "ready." in procs.log("beat"), procs, timeout=120)
    wait_for("its scheduler process", lambda: psutil.Process(beat.pid).children(), procs, timeout=30)
    (scheduler,) = psutil.Process(beat.pid).children()
    scheduler.kill()
    try:
        code = beat.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"daik beat runs on without its scheduler\n{procs.logs()}")
    assert code == 1, procs.logs()
    log = procs.log("beat")
    assert "its scheduler process died" in log
    assert log.rstrip().endswith("daik: error: the scheduler of daik beat died; see the log above")
