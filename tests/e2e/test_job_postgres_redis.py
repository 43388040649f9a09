"""End to end on the production stores: PostgreSQL (``daik_test_e2e``) and Redis (db 13), with ``daik api``
and ``daik worker`` as real processes on loopback, a real training job of the n preset on a tiny
synthetic dataset, followed through Server-Sent Events to its final mAP; then a distill job taught by it
(``teacher: {job: <its id>}``)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.local import Supervisor, daik_command
from tests.e2e.conftest import logs_of, start_api_on_servers
from tests.e2e.flow import processes_of, run_distill_flow, run_train_flow, wait_ready


@pytest.mark.slow
def test_train_job_on_postgres_and_redis(
    tmp_path: Path, pg_e2e: str, redis_e2e: str, supervisor: Supervisor, token: str, log_dir: Path
) -> None:
    home, data_root, artifact_root = tmp_path / "home", tmp_path / "data", tmp_path / "artifacts"
    base_url = start_api_on_servers(supervisor, tmp_path, pg_e2e, redis_e2e, token, log_dir)
    supervisor.start("worker", daik_command("worker"), log_dir / "worker.log")
    try:
        wait_ready(base_url, supervisor)
        teacher = run_train_flow(base_url, token, data_root, artifact_root, name="e2e-pg")
        # the trained job teaches a distilled student through the same service
        run_distill_flow(base_url, token, "e2e-pg", teacher["id"])
    except (AssertionError, httpx.HTTPError) as err:
        raise AssertionError(f"{err}\n{logs_of(supervisor)}") from None

    supervisor.stop()
    assert processes_of(home) == [], "processes left running after the stop"
