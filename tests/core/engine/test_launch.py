"""``python -m daik_core.engine.launch``: torchrun, reporting its failed ranks as typed ``rank_exit`` events
(exit codes and signals, and the message of a rank's torchelastic error file). The ranks here are plain
Python scripts (no torch), so each run takes only torchrun's own start. (Its exit 128 + N when stopped by
signal N: ``tests/worker/test_ddp_shutdown.py``, under a worker's warm shutdown.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from daik_core.events import RankExit, decode

pytestmark = pytest.mark.slow

RANK = """
import json, os, signal, sys, time
rank, mode, folder = int(os.environ["RANK"]), sys.argv[1], sys.argv[2]
open(os.path.join(folder, f"rank{rank}.started"), "w").close()
if rank == 1 and mode == "kill":  # as the kernel's OOM killer does
    os.kill(os.getpid(), signal.SIGKILL)
if rank == 1 and mode == "raise":  # what `daik train` writes when training raises under torchrun
    info = {"py_callstack": "", "timestamp": str(int(time.time()))}
    message = {"message": "ValueError: bad data", "extraInfo": info}
    with open(os.environ["TORCHELASTIC_ERROR_FILE"], "w") as f:
        json.dump({"message": message}, f)
    sys.exit(1)
time.sleep(120)
"""


def _launch(tmp_path: Path, mode: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    argv = ["--events", str(tmp_path / "events.jsonl"), "--standalone", "--nproc-per-node=2"]
    argv += [f"--log-dir={tmp_path / 'torchrun'}", str(script), mode, str(tmp_path)]
    log = (tmp_path / "launch.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "daik_core.engine.launch", *argv],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def _events(tmp_path: Path) -> list[RankExit]:
    path = tmp_path / "events.jsonl"
    events = [decode(line) for line in path.read_text().splitlines()] if path.exists() else []
    assert all(isinstance(e, RankExit) for e in events)
    return sorted((e for e in events if isinstance(e, RankExit)), key=lambda e: e.rank)


def _wait(proc: subprocess.Popen[bytes], tmp_path: Path) -> int:
    try:
        return proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail((tmp_path / "launch.log").read_text(errors="replace")[-3000:])


def test_a_rank_killed_by_sigkill_is_reported_with_its_signal(tmp_path: Path) -> None:
    assert _wait(_launch(tmp_path, "kill"), tmp_path) == 1
    rank0, rank1 = _events(tmp_path)
    assert (rank1.exitcode, rank1.signal, rank1.message, rank1.first) == (-9, signal.SIGKILL, None, True)
    assert rank0.signal == signal.SIGTERM  # stopped by torchrun after rank 1 failed


def test_a_rank_that_raised_is_reported_with_its_error_file_s_message(tmp_path: Path) -> None:
    assert _wait(_launch(tmp_path, "raise"), tmp_path) == 1
    failed = {e.rank: e for e in _events(tmp_path)}
    assert (failed[1].exitcode, failed[1].message, failed[1].first) == (1, "ValueError: bad data", True)
    assert list((tmp_path / "torchrun").rglob("error.json"))  # the per-rank error file, in --log-dir
