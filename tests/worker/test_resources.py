"""The device pool, the thread share and the trainer's environment (:mod:`worker.resources`), on real
processes and real lock files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.waiting import wait_for
from worker.resources import (
    DeviceError,
    DevicePool,
    Grant,
    JobResources,
    Visible,
    find_visible,
    plan_devices,
    threads_per_job,
    trainer_environ,
)

NO_GPU = Visible((), frozenset(), "no nvidia-smi on this host")
TWO_GPUS = Visible(("0", "1"), frozenset({"0", "1", "GPU-aaa", "GPU-bbb"}), "nvidia-smi")


def test_the_pool_defaults_to_the_visible_gpus_and_the_concurrency_fills_it() -> None:
    assert plan_devices(None, gpus=1, concurrency=None, allow_absent=False, visible=TWO_GPUS) == (
        ("0", "1"),
        2,
    )
    assert plan_devices("GPU-bbb", gpus=1, concurrency=None, allow_absent=False, visible=TWO_GPUS) == (
        ("GPU-bbb",),
        1,
    )
    assert plan_devices("0,1", gpus=2, concurrency=None, allow_absent=False, visible=TWO_GPUS) == (
        ("0", "1"),
        1,
    )
    assert plan_devices("0, 1", gpus=1, concurrency=1, allow_absent=False, visible=TWO_GPUS) == (
        ("0", "1"),
        1,
    )
    assert plan_devices(None, gpus=0, concurrency=None, allow_absent=False, visible=NO_GPU) == (
        (),
        1,
    )  # a CPU worker
    assert plan_devices("4,5", gpus=1, concurrency=2, allow_absent=True, visible=NO_GPU) == (("4", "5"), 2)
    assert find_visible({"CUDA_VISIBLE_DEVICES": "3, 5"}) == Visible(
        ("3", "5"), frozenset({"3", "5"}), "CUDA_VISIBLE_DEVICES"
    )
    assert find_visible({"CUDA_VISIBLE_DEVICES": ""}).ids == ()


@pytest.mark.parametrize(
    ("devices", "gpus", "concurrency", "message"),
    [
        ("0,1", 1, 3, "--concurrency 3: 3 jobs of 1 GPU need 3 devices and the pool has 2 (0, 1)"),
        ("0", 2, None, "--gpus 2: a job needs 2 devices and the pool has 1 (0)"),
        ("0,7", 1, None, "--devices: 7 not on this host (visible: 0, 1; nvidia-smi)"),
        ("0,,1", 1, None, "--devices '0,,1': an empty device id"),
        ("1,1", 1, None, "--devices '1,1': 1 named twice"),
        ("0", 0, None, "--devices is for GPU workers, and --gpus is 0"),
        (None, 1, 0, "--concurrency must be >= 1, got 0"),
    ],
)
def test_a_pool_that_cannot_work_is_refused_naming_the_flag(
    devices: str | None, gpus: int, concurrency: int | None, message: str
) -> None:
    with pytest.raises(DeviceError) as err:
        plan_devices(devices, gpus=gpus, concurrency=concurrency, allow_absent=False, visible=TWO_GPUS)
    assert str(err.value).startswith(message)


def test_no_visible_gpu_is_refused_unless_the_devices_are_named_and_absent_ones_allowed() -> None:
    with pytest.raises(DeviceError, match=r"--gpus 1: no GPU is visible \(no nvidia-smi on this host\)"):
        plan_devices(None, gpus=1, concurrency=None, allow_absent=True, visible=NO_GPU)
    with pytest.raises(DeviceError, match="DAIK_ALLOW_ABSENT_DEVICES=1"):
        plan_devices("0", gpus=1, concurrency=None, allow_absent=False, visible=NO_GPU)


def test_threads_per_job() -> None:
    cores = len(os.sched_getaffinity(0))
    assert threads_per_job(6, concurrency=2, environ={}) == 6
    assert threads_per_job(None, concurrency=2, environ={"OMP_NUM_THREADS": "3"}) == 3
    assert threads_per_job(None, concurrency=2, environ={}) == max(1, cores // 2)
    assert threads_per_job(None, concurrency=10 * cores, environ={"OMP_NUM_THREADS": "x"}) == 1
    with pytest.raises(DeviceError, match="--cpus must be >= 1, got 0"):
        threads_per_job(0, concurrency=1, environ={})


def test_a_trainer_gets_only_what_it_needs() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LC_ALL": "C.UTF-8",
        "NCCL_DEBUG": "INFO",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "CUDA_VISIBLE_DEVICES": "0,1,2,3",
        "OMP_NUM_THREADS": "16",
        "DAIK_DATABASE_URL": "postgresql://daik:pw@db/daik",
        "DAIK_BROKER_URL": "redis://:pw@redis:6379/0",
        "DAIK_BOOTSTRAP_TOKEN": "secret",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "WANDB_API_KEY": "named",
    }
    grant = Grant(devices=("2", "3"), threads=8, pooled=True)
    env = trainer_environ(environ, extra_names=["WANDB_API_KEY"], gpus=2, grant=grant)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LC_ALL": "C.UTF-8",
        "NCCL_DEBUG": "INFO",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "CUDA_VISIBLE_DEVICES": "2,3",
        "OMP_NUM_THREADS": "4",  # 8 threads shared by the job's 2 processes (torchrun)
        "WANDB_API_KEY": "named",
        "PYTHONUNBUFFERED": "1",
    }
    assert (
        trainer_environ(environ, extra_names=[], gpus=0, grant=grant)["CUDA_VISIBLE_DEVICES"] == ""
    )  # a CPU job: no GPU
    # outside a worker (no pool): the worker's own devices and threads pass through
    assert trainer_environ(environ, extra_names=[], gpus=1, grant=None)["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    with pytest.raises(DeviceError, match="the job needs 3 GPUs and this worker grants 2 per job"):
        trainer_environ(environ, extra_names=[], gpus=3, grant=grant)


def test_trainer_environ_passes_experiment_tracking_settings() -> None:
    """MLflow / TensorBoard settings reach the trainer (the operator sets them for every job); the
    service's own secrets still do not."""
    environ = {
        "PATH": "/usr/bin",
        "DAIK_MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "DAIK_MLFLOW_EXPERIMENT": "daik-prod",
        "DAIK_TENSORBOARD": "1",
        "MLFLOW_TRACKING_TOKEN": "tok",
        "MLFLOW_TRACKING_USERNAME": "u",
        "MLFLOW_TRACKING_PASSWORD": "pw",
        "DAIK_DATABASE_URL": "postgresql://daik:pw@db/daik",
        "DAIK_ADMIN_TOKEN": "secret",
    }
    env = trainer_environ(environ, extra_names=[], gpus=0, grant=None)
    for name in (
        "DAIK_MLFLOW_TRACKING_URI",
        "DAIK_MLFLOW_EXPERIMENT",
        "DAIK_TENSORBOARD",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        assert env[name] == environ[name]
    assert "DAIK_DATABASE_URL" not in env and "DAIK_ADMIN_TOKEN" not in env


def _hold_in_child(pool: DevicePool, n: int) -> tuple[subprocess.Popen[bytes], list[str]]:
    """Take ``n`` devices, then start a process that inherits their locks (as a trainer does) and release
    this process's own descriptors: the devices stay held by the child alone."""
    grant = pool.acquire(n, timeout=1)
    assert grant is not None
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=grant.fds)
    grant.release()
    return child, list(grant.devices)


def test_devices_are_held_while_any_process_of_the_job_lives(tmp_path: Path) -> None:
    pool = DevicePool(["0", "1", "2"], tmp_path / "locks")
    assert pool.in_use() == []
    first = pool.acquire(2, timeout=1)
    assert first is not None and first.devices == ("0", "1")
    assert pool.in_use() == ["0", "1"]
    assert pool.acquire(2, timeout=0.3) is None  # one free: not enough
    first.release()
    assert pool.in_use() == []

    trainer, held = _hold_in_child(pool, 2)
    assert pool.in_use() == held == ["0", "1"]
    other = pool.acquire(1, timeout=1)
    assert other is not None and other.devices == ("2",)
    other.release()
    trainer.send_signal(signal.SIGKILL)  # a crash: the kernel drops its locks
    trainer.wait()
    wait_for(lambda: pool.in_use() == [], 5, what="the devices to be free")


def test_a_job_waiting_for_devices_gives_up_on_shutdown(tmp_path: Path) -> None:
    resources = JobResources(1, DevicePool(["0"], tmp_path / "locks"), threads=2)
    held = resources.take(timeout=1)
    assert held is not None and (held.devices, held.threads) == (("0",), 2)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert resources.take(timeout=30, stop=stop) is None
    assert time.monotonic() - started < 5
    held.release()
    with resources.granted(timeout=1) as grant:
        assert grant is not None and grant.devices == ("0",)
    assert resources.pool is not None and resources.pool.in_use() == []


def test_a_process_forked_during_a_probe_never_keeps_a_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's main process probes its devices (for the registry) while it forks pool processes. A
    fork right after the probe opened a lock file gives the child a copy of that descriptor; the probe's
    lock must not live on in it, or no job could take that device while the child runs."""
    pool = DevicePool(["0"], tmp_path / "locks")
    real_open = os.open
    children: list[int] = []

    def open_then_fork(path: str, flags: int, *args: int) -> int:
        fd = real_open(path, flags, *args)
        pid = os.fork()
        if pid == 0:  # a pool process forked at that moment: it keeps its copy of the descriptor
            time.sleep(30)
            os._exit(0)
        children.append(pid)
        return fd

    monkeypatch.setattr(os, "open", open_then_fork)
    try:
        assert pool.in_use() == []
        monkeypatch.undo()
        assert children
        grant = pool.acquire(1, timeout=1)
        assert grant is not None and grant.devices == ("0",)
        grant.release()
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
