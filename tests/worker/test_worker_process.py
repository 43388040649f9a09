"""The Celery path end to end: ``daik worker`` as a real process (prefork pool, Redis db 12 as the broker,
PostgreSQL), sent a job with ``service.queue.send_train``, runs the REAL trainer on a tiny synthetic dataset
and reports it into the database; then a warm shutdown (SIGTERM) during a second job checkpoints it and puts
it back in the queue, and the worker exits leaving no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from daik_core.config import parse_spec
from daik_core.data.synth import SYNTH_CLASSES, generate_dataset
from service.db.models import Checkpoint, EvalResult, Job, Metric, Worker
from service.db.session import session_scope
from service.queue import send_train
from service.settings import Settings
from tests.waiting import wait_for
from tests.worker.conftest import PG_URL, REDIS_URL, get_job, group_gone, job_events, sent_jobs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("worker-data")
    generate_dataset(root / "train", images=8, size=128, seed=0, difficulty="easy", progress=False, workers=1)
    generate_dataset(root / "val", images=4, size=128, seed=1, difficulty="easy", progress=False, workers=1)
    return root


def _insert_job(db: sessionmaker[Session], settings: Settings, data: Path, epochs: int) -> uuid.UUID:
    """A job row as the API writes it: the fully resolved spec, its output under the artifact root."""
    job_id = uuid.uuid4()
    spec = parse_spec(
        {
            "name": f"e2e-{epochs}",
            "dataset": {
                "train": str(data / "train"),
                "val": str(data / "val"),
                "classes": ",".join(SYNTH_CLASSES),
            },
            "student": {"preset": "n"},
            "hparams": {"epochs": epochs, "batch": 4, "imgsz": 128, "workers": 0, "device": "cpu"},
            "output": str(settings.artifact_dir / "jobs" / str(job_id)),
        }
    ).model_dump(mode="json")
    with session_scope(db) as s:
        s.add(Job(id=job_id, name=spec["name"], kind="train", spec=spec, resources={"gpus": 0}))
    return job_id


@pytest.fixture
def worker(settings: Settings, broker: redis.Redis, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``daik worker`` in its own session (so the teardown can kill whatever is left of it)."""
    env = dict(
        os.environ,
        DAIK_HOME=str(settings.home),
        DAIK_DATABASE_URL=PG_URL,
        DAIK_BROKER_URL=REDIS_URL,
        DAIK_ARTIFACT_ROOT=str(settings.artifact_dir),
        DAIK_HEARTBEAT_SECONDS="1",
        OMP_NUM_THREADS="1",
    )
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daik_core.cli", "worker", "--loglevel", "info"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()


def _workers(db: sessionmaker[Session]) -> list[Worker]:
    with db() as s:
        rows = list(s.scalars(select(Worker)).all())
        s.expunge_all()
        return rows


def _wait_for(what: str, cond: Callable[[], Any], log: Path, timeout: float) -> None:
    def tail() -> str:
        return "worker log:\n" + (log.read_text(errors="replace")[-4000:] if log.exists() else "")

    wait_for(cond, timeout, interval=0.25, what=what, on_timeout=tail)


def test_a_real_worker_runs_the_real_trainer_and_requeues_on_warm_shutdown(
    db: sessionmaker[Session],
    settings: Settings,
    broker: redis.Redis,
    worker: subprocess.Popen[bytes],
    data: Path,
    tmp_path: Path,
) -> None:
    wlog = tmp_path / "worker.log"
    # the worker advertises itself: the GPU count of its queue, its concurrency, and heartbeats
    _wait_for("the worker to advertise itself", lambda: len(_workers(db)) == 1, wlog, timeout=120)
    (me,) = _workers(db)
    assert (me.gpus, me.concurrency, me.queues, me.stopped_at) == (
        0,
        1,
        ["daik.gpus.0"],  # housekeeping runs in daik beat
        None,
    )
    assert me.name.startswith(f"daik-gpus0-{worker.pid}@")
    first_beat = me.heartbeat_at
    _wait_for("a heartbeat", lambda: _workers(db)[0].heartbeat_at > first_beat, wlog, timeout=30)
    job_id = _insert_job(db, settings, data, epochs=2)
    send_train(settings, job_id, gpus=0)
    _wait_for("the job to end", lambda: get_job(db, job_id).finished_at is not None, wlog, timeout=300)

    job = get_job(db, job_id)
    assert job.status == "succeeded", (job.error, job.attempts[-1].log_tail if job.attempts else None)
    assert (job.attempt, job.restarts, job.epoch, job.total_epochs, job.progress) == (1, 0, 2, 2, 1.0)
    assert job.final_map50 is not None and job.final_map50_95 is not None
    assert job.results is not None and job.results["map50"] == job.final_map50 and job.results["epochs"] == 2
    (attempt,) = job.attempts
    assert (attempt.status, attempt.exit_code, attempt.failure_kind) == ("succeeded", 0, None)
    assert attempt.worker is not None and attempt.worker.split(":")[1] != str(worker.pid)  # a pool process
    steps = {1: 2, 2: 4}  # 8 images, batch 4: 2 steps per epoch
    with db() as s:
        metrics = s.execute(
            select(Metric.key, Metric.step, Metric.epoch).where(Metric.job_id == job_id)
        ).all()
        evals = s.scalars(
            select(EvalResult).where(EvalResult.job_id == job_id).order_by(EvalResult.epoch)
        ).all()
        ckpts = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)).all()
    for epoch, step in steps.items():
        keys = {k for k, st, e in metrics if st == step and e == epoch}
        assert {"loss", "loss_cls", "loss_box", "loss_dfl", "lr", "images_per_s", "map50", "map50_95"} <= keys
    assert {st for _, st, _ in metrics} == set(steps.values())  # one row per (key, step), nothing else
    assert [(e.epoch, e.step) for e in evals] == list(steps.items())
    assert set(evals[-1].per_class["ap50"]) == set(SYNTH_CLASSES) and evals[-1].map50 == job.final_map50
    paths = {c.path: c for c in ckpts}
    last = f"jobs/{job_id}/attempt-1/weights/last.pt"
    assert last in paths and paths[last].epoch == 2 and paths[last].size_bytes
    assert (settings.artifact_dir / last).is_file()
    assert f"jobs/{job_id}/attempt-1/weights/best.pt" in paths

    events = job_events(db, job_id)
    kinds = [k for k, _ in events if k != "progress"]
    assert kinds[0] == "status" and kinds[-1] == "status"
    epoch_events = [d["epoch"] for k, d in events if k == "epoch"]
    assert epoch_events == [1, 2]
    # per epoch: eval, epoch, then its checkpoints (last.pt before best.pt)
    body = kinds[1:-1]
    assert body[:3] == ["eval", "epoch", "checkpoint"] and body[body.index("epoch", 2) - 1] == "eval"
    assert [d["status"] for k, d in events if k == "status"] == ["running", "succeeded"]

    # a second, longer job; SIGTERM to the worker while it trains: checkpoint, re-queue, clean exit
    broker.flushdb()
    job2 = _insert_job(db, settings, data, epochs=50)
    send_train(settings, job2, gpus=0)
    _wait_for("the second job to train", lambda: get_job(db, job2).step > 0, wlog, timeout=120)
    worker.send_signal(signal.SIGTERM)
    try:
        assert worker.wait(timeout=120) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not exit after SIGTERM:\n" + wlog.read_text(errors="replace")[-4000:])
    assert group_gone(worker.pid)  # no pool process, no trainer left
    job = get_job(db, job2)
    assert (job.status, job.restarts, job.failure_kind) == ("queued", 1, "preempted"), job.error
    assert job.error == "preempted: the worker shut down (exit code 143)"
    assert (job.attempts[0].status, job.attempts[0].exit_code) == ("failed", 143)
    assert (settings.artifact_dir / "jobs" / str(job2) / "attempt-1" / "weights" / "last.pt").is_file()
    assert sent_jobs(broker) == [str(job2)]  # sent again for the next worker
    with db() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.status == "running")) == 0
    assert _workers(db)[0].stopped_at is not None  # retired at shutdown: no longer counted as live
