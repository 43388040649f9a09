"""The process handling of ``daik up`` (service/local.py) with real processes: signals are forwarded, a
child that ignores them is killed after the grace period together with a grandchild in its own session,
a dead child is found, a SIGKILLed parent takes its children along, and the admin token file is private."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from service.local import Supervisor, load_or_create_token
from tests.waiting import wait_for


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def _wait_for(path: Path, timeout: float = 20.0) -> str:
    """The text of ``path`` once it is written."""
    return wait_for(lambda: path.exists() and path.read_text(), timeout, what=f"{path} to be written")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_token_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "home" / "token"
    token = load_or_create_token(path)
    assert len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token  # the next start reuses it
    path.chmod(0o644)
    assert load_or_create_token(path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a widened file is made private again
    assert load_or_create_token(tmp_path / "other") != token


def test_stop_forwards_the_signal(tmp_path: Path) -> None:
    marks = [tmp_path / f"child{i}.sig" for i in range(2)]
    sup = Supervisor(grace=10)
    for i, mark in enumerate(marks):
        sup.start(
            f"child{i}",
            _py(f"""
                import pathlib, signal, time
                def on(sig, _):
                    pathlib.Path({str(mark)!r}).write_text(str(sig)); raise SystemExit(0)
                signal.signal(signal.SIGINT, on)
                pathlib.Path({str(mark)!r} + ".ready").write_text("1")
                time.sleep(60)
            """),
        )
    for mark in marks:
        _wait_for(Path(str(mark) + ".ready"))
    t0 = time.monotonic()
    sup.stop(signal.SIGINT)
    assert time.monotonic() - t0 < 5  # they exited on the signal, not on the SIGKILL after the grace
    assert [m.read_text() for m in marks] == [str(int(signal.SIGINT))] * 2
    assert all(c.proc.returncode == 0 for c in sup.children)


def test_stop_kills_a_stubborn_child_and_its_detached_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    sup = Supervisor(grace=1.0)
    child = sup.start(
        "stubborn",
        _py(f"""
            import pathlib, signal, subprocess, sys, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            # like a worker's trainer: its own session, so not in the child's process group
            g = subprocess.Popen([sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"],
                start_new_session=True)
            pathlib.Path({str(pidfile)!r}).write_text(str(g.pid))
            time.sleep(60)
        """),
        log_path=tmp_path / "logs" / "stubborn.log",
    )
    grandchild = int(_wait_for(pidfile))
    assert os.getpgid(grandchild) != os.getpgid(child.pid)
    t0 = time.monotonic()
    sup.stop()
    assert time.monotonic() - t0 >= 1.0  # the grace period was given
    assert child.proc.returncode == -signal.SIGKILL
    assert _gone(grandchild), "the grandchild in its own session survived the stop"


def test_first_exited_names_the_dead_child(tmp_path: Path) -> None:
    sup = Supervisor(grace=5)
    try:
        sup.start("sleeper", _py("import time; time.sleep(60)"))
        crasher = sup.start(
            "crasher", _py("import sys; print('boom'); sys.exit(3)"), log_path=tmp_path / "crasher.log"
        )
        assert wait_for(sup.first_exited, 20, what="a child to exit") is crasher
        assert crasher.proc.returncode == 3
        assert crasher.log_tail() == "boom"
    finally:
        sup.stop()
    assert all(c.exited() for c in sup.children)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    # the parent stands for `daik up` killed with SIGKILL: it cannot forward anything, the kernel does
    pidfile = tmp_path / "child.pid"
    parent = subprocess.Popen(
        _py(f"""
            import pathlib, sys, time
            from service.local import Supervisor
            c = Supervisor().start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
            pathlib.Path({str(pidfile)!r}).write_text(str(c.pid))
            time.sleep(60)
        """)
    )
    try:
        child = int(_wait_for(pidfile))
        assert not _gone(child)
        parent.kill()
        parent.wait()
        wait_for(lambda: _gone(child), 10, what="the child to die with its SIGKILLed parent")
    finally:
        parent.kill()
        parent.wait()
