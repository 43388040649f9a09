"""``daik up`` as a user runs it: a temporary DAIK_HOME, no PostgreSQL or Redis settings (the embedded
SQLite database and SQLAlchemy broker), the same job flow as on the production stores, then a SIGTERM
that stops every process it started; and a child that dies (its port taken) is named in a non-zero exit."""

from __future__ import annotations

import signal
import socket
import stat
import time
from pathlib import Path

import httpx
import pytest

from service.local import Child, Supervisor, daik_command
from tests.e2e.conftest import clean_env, free_port, logs_of
from tests.e2e.flow import processes_of, run_train_flow, wait_ready

ANNOUNCE_TIMEOUT = 180.0


def _wait_for_announcement(up: Child, timeout: float = ANNOUNCE_TIMEOUT) -> str:
    """The log of ``daik up`` once it has printed the admin token (it does so only after /readyz)."""
    assert up.log_path is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = up.log_path.read_text() if up.log_path.exists() else ""
        if "admin token:" in text:
            return text
        if up.exited():
            raise AssertionError(f"daik up exited with {up.proc.returncode}:\n{text}")
        time.sleep(0.25)
    raise AssertionError(f"daik up did not announce itself within {timeout} s:\n{up.log_tail(60)}")


@pytest.mark.slow
def test_daik_up_runs_a_job_on_the_embedded_defaults(
    tmp_path: Path, supervisor: Supervisor, log_dir: Path
) -> None:
    home = tmp_path / "daik-home"
    supervisor.env = clean_env(DAIK_HOME=str(home))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    up = supervisor.start(
        "up",
        daik_command("up", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        log_dir / "up.log",
    )
    try:
        announcement = _wait_for_announcement(up)
        token_file = home / "token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert f"admin token: {token}" in announcement and base_url in announcement
        wait_ready(base_url, supervisor)
        run_train_flow(base_url, token, home / "data", home / "artifacts", name="e2e-up")
    except (AssertionError, httpx.HTTPError) as err:
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((home / "logs").glob("*.log"))
        )
        raise AssertionError(f"{err}\n{logs_of(supervisor)}\n{logs}") from None

    started = {p.pid for p in processes_of(home)} - {up.pid}
    assert len(started) >= 3, "expected the api, a worker and beat (and their helpers)"
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=90) == 0, up.log_tail(40)
    assert processes_of(home) == [], "daik up left processes running"


@pytest.mark.slow
def test_daik_up_names_a_child_that_dies(tmp_path: Path, supervisor: Supervisor, log_dir: Path) -> None:
    home = tmp_path / "daik-home"
    supervisor.env = clean_env(DAIK_HOME=str(home))
    with socket.socket() as taken:  # the API's port is taken: `daik api` fails to bind and exits
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = supervisor.start(
            "up", daik_command("up", "--host", "127.0.0.1", "--port", str(port)), log_dir / "up.log"
        )
        code = up.proc.wait(timeout=ANNOUNCE_TIMEOUT)
    text = up.log_path.read_text() if up.log_path else ""
    assert code == 1, text
    assert "the api process exited with code" in text, text
    assert "in use" in text.lower(), f"the api's own reason is not shown:\n{text}\n{logs_of(supervisor)}"
    assert processes_of(home) == [], "daik up left processes running after a child died"
