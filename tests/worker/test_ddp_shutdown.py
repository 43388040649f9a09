"""A multi-process job survives a warm shutdown: a real ``daik worker --gpus 2`` (its two "GPUs" allowed to
be absent: the real trainer runs DDP on the CPU with gloo, two processes under torchrun) trains a tiny
synthetic dataset; SIGTERM to the worker mid-epoch stops torchrun, whose ranks stop together and
checkpoint. torchrun itself would exit 1 (once a ``user_error``, never retried); the trainer's ``end`` event
says ``stopped`` and the launcher exits 143, so the job is ``preempted`` and re-queued, and a second worker
resumes it from the first attempt's ``last.pt`` to ``succeeded``, with one metric row per step."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from daik_core.config import parse_spec
from daik_core.data.synth import SYNTH_CLASSES, generate_dataset
from service.db.models import Job, Metric
from service.db.session import session_scope
from service.queue import send_train
from service.settings import Settings
from tests.worker.conftest import Procs, get_job, group_gone, wait_for

pytestmark = pytest.mark.slow

EPOCHS = 3  # 8 images, a global batch of 4 over two processes: 2 steps per epoch


@pytest.fixture
def procs(settings: Settings, broker: redis.Redis, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(settings, tmp_path, lease_seconds=30, fake_trainer="")
    del p.env["DAIK_TRAINER_COMMAND"]  # the real trainer
    p.env.update(DAIK_ALLOW_ABSENT_DEVICES="1", DAIK_CANCEL_GRACE_SECONDS="60")
    yield p
    p.kill_all()


def _ddp_job(db: sessionmaker[Session], settings: Settings, data: Path) -> uuid.UUID:
    job_id = uuid.uuid4()
    spec = parse_spec(
        {
            "name": "ddp",
            "dataset": {
                "train": str(data / "train"),
                "val": str(data / "val"),
                "classes": ",".join(SYNTH_CLASSES),
            },
            "student": {"preset": "n"},
            "hparams": {
                "epochs": EPOCHS,
                "batch": 4,
                "imgsz": 64,
                "workers": 0,
                "device": "cpu",
                "eval_interval": EPOCHS,  # one evaluation, at the end
            },
            "output": str(settings.artifact_dir / "jobs" / str(job_id)),
        }
    ).model_dump(mode="json")
    with session_scope(db) as s:
        s.add(Job(id=job_id, name="ddp", kind="train", spec=spec, resources={"gpus": 2}, max_restarts=2))
    return job_id


def test_a_ddp_job_is_checkpointed_on_warm_shutdown_and_resumed_by_another_worker(
    db: sessionmaker[Session], settings: Settings, procs: Procs, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    generate_dataset(data / "train", images=8, size=64, seed=0, difficulty="easy", progress=False, workers=1)
    generate_dataset(data / "val", images=2, size=64, seed=1, difficulty="easy", progress=False, workers=1)
    job_id = _ddp_job(db, settings, data)
    flags = ("worker", "--gpus", "2", "--devices", "0,1")
    first = procs.start("first", *flags)
    send_train(settings, job_id, gpus=2)
    wait_for("the first worker to take the job", lambda: get_job(db, job_id).attempt == 1, procs, timeout=120)
    procs.start("second", *flags)  # idle until the job comes back to the queue
    wait_for("the first step", lambda: get_job(db, job_id).step >= 1, procs, timeout=240)

    first.send_signal(signal.SIGTERM)  # a warm shutdown, mid-epoch
    try:
        assert first.wait(timeout=120) == 0
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not stop\n{procs.logs()}")
    assert group_gone(first.pid)  # no rank, no torchrun left
    ended = get_job(db, job_id).attempts[0]
    assert (ended.status, ended.failure_kind, ended.exit_code) == ("failed", "preempted", 143), ended.reason
    assert ended.reason == "preempted: the worker shut down (exit code 143)"  # torchrun alone would exit 1
    last = settings.artifact_dir / "jobs" / str(job_id) / "attempt-1" / "weights" / "last.pt"
    assert last.is_file()

    wait_for("the job to end", lambda: get_job(db, job_id).finished_at is not None, procs, timeout=300)
    job = get_job(db, job_id)
    assert (job.status, job.attempt, job.restarts, job.epoch) == ("succeeded", 2, 1, EPOCHS), (
        job.error,
        procs.logs(),
    )
    assert job.final_map50 is not None and job.attempts[1].resumed_from == str(last)
    assert job.attempts[0].worker != job.attempts[1].worker
    with db() as s:
        steps = s.execute(
            select(Metric.step, func.count())
            .where(Metric.job_id == job_id, Metric.key == "loss")
            .group_by(Metric.step)
        ).all()
    assert sorted(steps) == [(2 * e, 1) for e in range(1, EPOCHS + 1)]
