"""The kernel's OOM killer, for real: ``daik worker`` runs in a memory cgroup of its own with a limit, and
the scripted fake trainer allocates memory until the kernel kills it (SIGKILL). The worker reads its
cgroup's OOM kill count before and after (``worker.oom``): the job fails as ``oom`` and is not retried
(a SIGKILL alone would be a preemption, retried). Creating a memory cgroup needs root or a delegated cgroup;
where that is not possible the test is skipped. (A torchrun rank killed the same way: the judgement is
``tests/worker/test_pipelines.py::test_judge_from_typed_events``, the rank's report
``tests/core/engine/test_launch.py``.)"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from service.queue import send_train
from service.settings import Settings
from tests.worker.conftest import Procs, add_job, get_job, wait_for
from worker.oom import OomKills, cgroup_oom_file

pytestmark = pytest.mark.slow

LIMIT_MB = 700


def test_the_oom_kill_count_of_this_process_s_cgroup_is_read() -> None:
    file = cgroup_oom_file("self")
    if file is None:
        pytest.skip("no memory cgroup file for this process (root cgroup, or no memory controller)")
    assert file.name in ("memory.events", "memory.oom_control")
    count = OomKills(file).count()
    assert isinstance(count, int) and count >= 0
    assert OomKills(None).count() is None and OomKills(file.with_name("missing")).count() is None


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    """A child of this process's memory cgroup, limited to ``LIMIT_MB`` (cgroup v1 or v2)."""
    file = cgroup_oom_file("self")
    if file is None:
        pytest.skip("no memory cgroup for this process")
    child = file.parent / f"daik-test-{uuid.uuid4().hex[:8]}"
    limit = "memory.limit_in_bytes" if file.name == "memory.oom_control" else "memory.max"
    try:
        child.mkdir()
        (child / limit).write_text(str(LIMIT_MB * 2**20))
    except OSError as err:
        if child.is_dir():
            child.rmdir()
        pytest.skip(
            f"cannot make a memory cgroup with a limit here ({err}): needs root or a delegated cgroup"
        )
    yield child
    deadline = time.monotonic() + 10
    while True:  # empty once the test's processes are gone
        try:
            child.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def procs(settings: Settings, broker: redis.Redis, tmp_path: Path, memory_cgroup: Path) -> Iterator[Procs]:
    p = Procs(settings, tmp_path, lease_seconds=10, fake_trainer="--epochs 2 --iters 1 --eat-memory")
    yield p
    p.kill_all()


def test_a_trainer_killed_by_the_oom_killer_fails_as_oom_and_is_not_retried(
    db: sessionmaker[Session], settings: Settings, procs: Procs, memory_cgroup: Path
) -> None:
    job_id = add_job(db, settings.artifact_dir, max_restarts=2)
    join = ("sh", "-c", f'echo $$ > {memory_cgroup}/cgroup.procs && exec "$@"', "sh")
    procs.start("worker", "worker", prefix=join)
    send_train(settings, job_id, gpus=0)
    wait_for("the job to end", lambda: get_job(db, job_id).finished_at is not None, procs, timeout=120)
    job = get_job(db, job_id)
    assert (job.status, job.failure_kind, job.restarts, job.attempt) == ("failed", "oom", 0, 1), (
        job.error,
        procs.logs(),
    )
    assert job.attempts[0].exit_code == -9
    assert (
        job.error == "oom: the trainer was killed by the kernel's OOM killer (host memory; killed by SIGKILL)"
    )
    assert procs.procs["worker"].poll() is None  # the worker itself was spared
