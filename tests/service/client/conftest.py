"""Fixtures of the client tests: one real ``daik api`` (uvicorn) and one ``daik worker`` running the scripted
fake trainer (``tests/worker/fake_trainer.py``), on a PostgreSQL database of their own
(``daik_test_client``, made anew for the package) and Redis db 10, shared by the package's tests; the
``daik jobs`` / ``daik batches`` commands talk to them over HTTP.

The fake trainer waits before its last epoch until the gate file exists (``Service.open_gate``): until
then the first job runs and every later one stays queued behind it (the worker runs one at a time)."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from service.local import Supervisor, daik_command
from tests.e2e.conftest import clean_env, free_port, logs_of
from tests.servers import REDIS_SERVER_URL, recreate_database, redis_db
from tests.service.helpers import write_dota
from tests.waiting import wait_for

CLIENT_DATABASE = "daik_test_client"
CLIENT_REDIS_DB = redis_db(10)
FAKE_TRAINER = Path(__file__).parents[2] / "worker" / "fake_trainer.py"
READY_TIMEOUT = 120.0


@dataclass
class Service:
    url: str
    token: str  # the bootstrap (admin) token
    roots: Path  # home/, data/, artifacts/
    gate: Path
    sup: Supervisor

    @property
    def artifacts(self) -> Path:
        return self.roots / "artifacts"

    def open_gate(self) -> None:
        self.gate.write_text("open")

    def logs(self) -> str:
        return logs_of(self.sup)


@pytest.fixture(autouse=True)
def _empty_tables() -> None:
    """Replaces tests/service's per-test TRUNCATE: the package's tests share one service and database."""


@pytest.fixture(scope="package")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    pg_url = recreate_database(CLIENT_DATABASE, migrated=True)
    broker_url = f"{REDIS_SERVER_URL}/{CLIENT_REDIS_DB}"
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    roots = tmp_path_factory.mktemp("daik-client")
    for sub in ("home", "data", "artifacts", "logs"):
        (roots / sub).mkdir()
    token = secrets.token_urlsafe(24)
    gate = roots / "gate"
    env = clean_env(
        DAIK_HOME=str(roots / "home"),
        DAIK_DATABASE_URL=pg_url,
        DAIK_BROKER_URL=broker_url,
        DAIK_DATA_ROOT=str(roots / "data"),
        DAIK_ARTIFACT_ROOT=str(roots / "artifacts"),
        DAIK_BOOTSTRAP_TOKEN=token,
    )
    sup = Supervisor(env, grace=15)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        sup.start("api", daik_command("api", "--port", str(port)), roots / "logs" / "api.log")
        sup.start(
            "worker",
            daik_command("worker", "--concurrency", "1"),
            roots / "logs" / "worker.log",
            env={
                "DAIK_TRAINER_COMMAND": f"{sys.executable} {FAKE_TRAINER}",
                "DAIK_FAKE_TRAINER": f"--gate {gate} --sleep 0.2",
                "DAIK_TRAINER_ENV": "DAIK_FAKE_TRAINER",
            },
        )

        def ready() -> bool:
            exited = sup.first_exited()
            assert exited is None, f"{exited.name} exited\n{logs_of(sup)}"
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(
            ready, READY_TIMEOUT, interval=0.3, what="the API to come up", on_timeout=lambda: logs_of(sup)
        )
        write_dota(roots / "data" / "ds" / "train", images=2)
        write_dota(roots / "data" / "ds" / "val", images=1)
        yield Service(url, token, roots, gate, sup)
    finally:
        sup.stop()
        broker.flushdb()
        broker.close()
