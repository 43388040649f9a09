"""What a real ``daik worker`` gives each trainer (the scripted fake trainer writes the environment it got):
its own GPUs of the worker's device pool as ``CUDA_VISIBLE_DEVICES`` (no GPU is needed: the pool names
absent devices under ``DAIK_ALLOW_ABSENT_DEVICES=1``), returned when the job ends, also when it is cancelled
or its pool process is killed; its CPU threads as ``OMP_NUM_THREADS``; and no secret: no database or broker
URL, no token, no ``DAIK_*`` setting. The worker registry shows the devices in use; a pool that cannot
hold the concurrency, or names a device the host lacks, stops the worker at start with a one-line error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Job, Worker
from service.db.session import session_scope
from service.queue import send_train
from service.settings import Settings
from tests.waiting import holds_for
from tests.worker.conftest import PG_URL, REDIS_URL, Procs, add_job, get_job, wait_for

pytestmark = pytest.mark.slow

LEASE_S = 5
# secrets in the worker's environment that must never reach a trainer
SECRETS = {
    "DAIK_BOOTSTRAP_TOKEN": "bootstrap-secret-0123456789-abcdef",  # 32+ characters, as required
    "DAIK_SESSION_SECRET": "session-secret-42",
}


@pytest.fixture
def procs(settings: Settings, broker: redis.Redis, tmp_path: Path) -> Any:
    p = Procs(
        settings, tmp_path, lease_seconds=LEASE_S, fake_trainer="--epochs 1 --iters 1 --hang --record-env"
    )
    p.env.update(SECRETS)
    yield p
    p.kill_all()


def _env_file(settings: Settings, job_id: uuid.UUID) -> Path:
    """The file of the job's latest attempt that recorded one (each attempt has its own folder)."""
    found = (settings.artifact_dir / "jobs" / str(job_id)).glob("attempt-*/trainer_env.json")
    files = sorted(found, key=lambda p: int(p.parent.name.removeprefix("attempt-")))
    return (
        files[-1]
        if files
        else settings.artifact_dir / "jobs" / str(job_id) / "attempt-1" / "trainer_env.json"
    )


def _trainer_env(settings: Settings, job_id: uuid.UUID) -> dict[str, str] | None:
    """The environment the job's trainer recorded (None until it has), the file removed once read so that a
    later attempt's can be told apart."""
    path = _env_file(settings, job_id)
    try:
        env: dict[str, str] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    path.unlink()
    return env


def _worker_row(db: sessionmaker[Session]) -> Worker | None:
    with db() as s:
        row = s.query(Worker).filter(Worker.stopped_at.is_(None)).one_or_none()
        if row is not None:
            s.expunge(row)
        return row


#: the DAIK_* names a trainer does get: the fake trainer's script, and its job for experiment tracking
ALLOWED_DAIK = {"DAIK_FAKE_TRAINER", "DAIK_JOB_ID", "DAIK_JOB_ATTEMPT"}


def _assert_no_secrets(env: dict[str, str]) -> None:
    assert not any(k.startswith("DAIK_") for k in env if k not in ALLOWED_DAIK), sorted(env)
    values = "\n".join(env.values())
    for secret in (PG_URL, REDIS_URL, *SECRETS.values()):
        assert secret not in values


def _started(settings: Settings, job_ids: list[uuid.UUID], envs: dict[uuid.UUID, dict[str, str]]) -> bool:
    for job_id in job_ids:
        if job_id not in envs:
            env = _trainer_env(settings, job_id)
            if env is not None:
                envs[job_id] = env
    return all(j in envs for j in job_ids)


def test_each_job_trains_on_its_own_devices_with_its_threads_and_no_secrets(
    db: sessionmaker[Session], settings: Settings, procs: Procs
) -> None:
    procs.env["DAIK_ALLOW_ABSENT_DEVICES"] = "1"
    procs.env["CUDA_VISIBLE_DEVICES"] = "5,6"  # the worker's own: its trainers see their devices instead
    procs.start(
        "gpu-worker", "worker", "--gpus", "1", "--devices", "0,1", "--concurrency", "2", "--cpus", "3"
    )
    procs.start("beat", "beat")
    wait_for("the worker to advertise itself", lambda: _worker_row(db) is not None, procs, timeout=120)
    me = _worker_row(db)
    assert me is not None
    assert (me.gpus, me.concurrency, me.devices, me.devices_in_use, me.cpus) == (1, 2, ["0", "1"], [], 3)
    assert me.queues == ["daik.gpus.1"]  # housekeeping is daik beat's

    a, b, c = (add_job(db, settings.artifact_dir, resources={"gpus": 1}, max_restarts=3) for _ in range(3))
    for job_id in (a, b, c):
        send_train(settings, job_id, gpus=1)
    envs: dict[uuid.UUID, dict[str, str]] = {}
    wait_for("two jobs to start", lambda: _started(settings, [a, b], envs), procs, timeout=120)
    assert {envs[a]["CUDA_VISIBLE_DEVICES"], envs[b]["CUDA_VISIBLE_DEVICES"]} == {"0", "1"}
    for env in envs.values():
        assert env["OMP_NUM_THREADS"] == "3"
        assert env["DAIK_FAKE_TRAINER"] and env["PYTHONUNBUFFERED"] == "1"
        _assert_no_secrets(env)
    wait_for(
        "the registry to show both devices in use",
        lambda: (w := _worker_row(db)) is not None and sorted(w.devices_in_use) == ["0", "1"],
        procs,
        timeout=30,
    )
    # the pool is full: the third job waits
    assert holds_for(lambda: get_job(db, c).status == "queued", 1.0, interval=0.2)

    # cancelled: its device goes to the waiting job
    freed = envs[a]["CUDA_VISIBLE_DEVICES"]
    with session_scope(db) as s:
        s.execute(update(Job).where(Job.id == a).values(status="cancelling", cancel_requested=True))
    wait_for("the third job to start", lambda: _started(settings, [c], envs), procs, timeout=60)
    assert get_job(db, a).status == "cancelled"
    assert envs[c]["CUDA_VISIBLE_DEVICES"] == freed

    # its pool process killed: the device comes back once the trainer is gone, and the job (taken over by
    # the redelivered message or re-queued by beat's reaper, once its lease expires) gets it again
    attempt = get_job(db, c).attempts[-1]
    assert attempt.worker is not None
    os.kill(int(attempt.worker.split(":")[1]), signal.SIGKILL)
    del envs[c]
    wait_for(
        "the job to run again after its pool process died",
        lambda: get_job(db, c).attempt >= 2 and _started(settings, [c], envs),
        procs,
        timeout=90,
    )
    assert envs[c]["CUDA_VISIBLE_DEVICES"] == freed
    assert get_job(db, b).attempt == 1  # the other job trained on undisturbed
    wait_for(
        "the registry to show both devices in use again",
        lambda: (w := _worker_row(db)) is not None and sorted(w.devices_in_use) == ["0", "1"],
        procs,
        timeout=30,
    )


def test_a_cpu_job_sees_no_gpu_and_gets_its_share_of_the_cores(
    db: sessionmaker[Session], settings: Settings, procs: Procs
) -> None:
    del procs.env["OMP_NUM_THREADS"]  # no --cpus, no OMP_NUM_THREADS: the cores / concurrency
    procs.start("cpu-worker", "worker", "--concurrency", "2")
    job_id = add_job(db, settings.artifact_dir)
    send_train(settings, job_id, gpus=0)
    envs: dict[uuid.UUID, dict[str, str]] = {}
    wait_for("the job to start", lambda: _started(settings, [job_id], envs), procs, timeout=120)
    env = envs[job_id]
    _assert_no_secrets(env)
    assert (env["DAIK_JOB_ID"], env["DAIK_JOB_ATTEMPT"]) == (str(job_id), "1")  # experiment tracking's tags
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["OMP_NUM_THREADS"] == str(max(1, len(os.sched_getaffinity(0)) // 2))


def _daik_worker(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DAIK_", "CUDA_"))}
    base |= {"DAIK_HOME": str(settings.home), "DAIK_DATABASE_URL": PG_URL, "DAIK_BROKER_URL": REDIS_URL}
    return subprocess.run(
        [sys.executable, "-m", "daik_core.cli", "worker", *args],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_pool_that_cannot_hold_the_jobs_or_names_an_absent_device_stops_the_worker(
    settings: Settings,
) -> None:
    r = _daik_worker(
        settings, "--gpus", "1", "--devices", "0,1", "--concurrency", "3", DAIK_ALLOW_ABSENT_DEVICES="1"
    )
    assert (r.returncode, r.stderr) == (
        1,
        "daik: error: --concurrency 3: 3 jobs of 1 GPU need 3 devices and the pool has 2 (0, 1)\n",
    )
    # the host's GPUs: CUDA_VISIBLE_DEVICES when set (here one GPU, 0), else what nvidia-smi lists
    r = _daik_worker(settings, "--gpus", "1", "--devices", "0,7", CUDA_VISIBLE_DEVICES="0")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(
        "daik: error: --devices: 7 not on this host (visible: 0; CUDA_VISIBLE_DEVICES)"
    )
    assert r.stderr.count("\n") == 1
    r = _daik_worker(settings, "--gpus", "2", CUDA_VISIBLE_DEVICES="0")
    assert (r.returncode, r.stderr) == (
        1,
        "daik: error: --gpus 2: a job needs 2 devices and the pool has 1 (0)\n",
    )
