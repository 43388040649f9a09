"""PostgreSQL restarted under a running ``daik api``: while it is down, routes that need it answer 503
problem+json (with Retry-After) and ``/readyz`` says the database check fails; once it is back, the same
requests succeed without restarting the API (the pool pre-pings and reconnects)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from service.local import Supervisor, daik_command
from tests.e2e.conftest import clean_env, free_port, logs_of
from tests.e2e.flow import wait_ready
from tests.servers_control import needs_local_postgres, postgres_down

pytestmark = [pytest.mark.slow, needs_local_postgres()]


def test_the_api_answers_503_while_postgres_is_down_and_recovers_by_itself(
    tmp_path: Path, pg_e2e: str, redis_e2e: str, supervisor: Supervisor, token: str, log_dir: Path
) -> None:
    supervisor.env = clean_env(
        DAIK_HOME=str(tmp_path / "home"),
        DAIK_DATABASE_URL=pg_e2e,
        DAIK_BROKER_URL=redis_e2e,
        DAIK_DATA_ROOT=str(tmp_path / "data"),
        DAIK_ARTIFACT_ROOT=str(tmp_path / "artifacts"),
        DAIK_BOOTSTRAP_TOKEN=token,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    supervisor.start(
        "api", daik_command("api", "--host", "127.0.0.1", "--port", str(port)), log_dir / "api.log"
    )
    wait_ready(base, supervisor)
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{base}/jobs", headers=headers, timeout=10).status_code == 200

    with postgres_down():
        r = httpx.get(f"{base}/jobs", headers=headers, timeout=30)
        assert r.status_code == 503, (r.text, logs_of(supervisor))
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["retry-after"] == "5" and r.json()["status"] == 503
        assert "database" in r.json()["detail"]
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok", ready.text
        assert supervisor.first_exited() is None  # the API itself keeps running

    deadline = time.monotonic() + 60
    while True:
        r = httpx.get(f"{base}/jobs", headers=headers, timeout=30)
        if r.status_code == 200:
            break
        assert time.monotonic() < deadline, f"the API did not recover: {r.status_code} {r.text}"
        time.sleep(0.5)
    assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200
