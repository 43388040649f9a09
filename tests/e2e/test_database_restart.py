"""PostgreSQL restarted under a running ``daik api``: while it is down, routes that need it answer 503
problem+json (with Retry-After) and ``/readyz`` says the database check fails; once it is back, the same
requests succeed without restarting the API (the pool pre-pings and reconnects)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from service.local import Supervisor
from tests.e2e.conftest import logs_of, start_api_on_servers
from tests.e2e.flow import wait_ready
from tests.servers_control import needs_local_postgres, postgres_down

pytestmark = [pytest.mark.slow, needs_local_postgres()]


def test_the_api_answers_503_while_postgres_is_down_and_recovers_by_itself(
    tmp_path: Path, pg_e2e: str, redis_e2e: str, supervisor: Supervisor, token: str, log_dir: Path
) -> None:
    base = start_api_on_servers(supervisor, tmp_path, pg_e2e, redis_e2e, token, log_dir)
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
