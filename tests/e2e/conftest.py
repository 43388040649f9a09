"""Fixtures of the end-to-end tests: real ``daik`` processes on loopback, each started through
:class:`service.local.Supervisor` and stopped by a finalizer (children, their process groups and every
descendant), so nothing is left running even when a test fails."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.local import Supervisor, daik_command
from tests.servers import REDIS_SERVER_URL, recreate_database, redis_db

REDIS_URL = REDIS_SERVER_URL
E2E_DATABASE = "daik_test_e2e"
E2E_REDIS_DB = redis_db(13)
STOP_GRACE = 15.0  # a worker's warm shutdown; then SIGKILL


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**daik: str) -> dict[str, str]:
    """This process's environment without any DAIK_* setting, plus ``daik``; children log unbuffered, and
    torch runs one thread per process: on a small shared machine (2 cores, the API and the test beside the
    trainer) its intra-op threads stall each other, which made a 25 s test take 80 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAIK_")}
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(daik, PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture
def pg_e2e() -> str:
    """The URL of ``daik_test_e2e``: dropped, created and migrated to head for the test."""
    return recreate_database(E2E_DATABASE, migrated=True)


@pytest.fixture
def redis_e2e() -> Iterator[str]:
    """The broker URL of Redis db 13, flushed before and after the test."""
    url = f"{REDIS_URL}/{E2E_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    """Starts the test's processes; its finalizer stops them all."""
    sup = Supervisor(grace=STOP_GRACE)
    yield sup
    sup.stop()


def logs_of(sup: Supervisor) -> str:
    """The end of every child's log, to explain a failure."""
    return "\n".join(f"--- {c.name} (exit {c.proc.poll()}) ---\n{c.log_tail(40)}" for c in sup.children)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


def start_api_on_servers(
    supervisor: Supervisor, tmp_path: Path, pg_url: str, redis_url_: str, token: str, log_dir: Path
) -> str:
    """Set the supervisor's environment for PostgreSQL ``pg_url`` and Redis ``redis_url_`` (home, data and
    artifact roots under ``tmp_path``, ``token`` as the bootstrap token) and start ``daik api`` on a free
    loopback port; returns its base URL (not waited for: see ``flow.wait_ready``)."""
    supervisor.env = clean_env(
        DAIK_HOME=str(tmp_path / "home"),
        DAIK_DATABASE_URL=pg_url,
        DAIK_BROKER_URL=redis_url_,
        DAIK_DATA_ROOT=str(tmp_path / "data"),
        DAIK_ARTIFACT_ROOT=str(tmp_path / "artifacts"),
        DAIK_BOOTSTRAP_TOKEN=token,
    )
    port = free_port()
    supervisor.start(
        "api", daik_command("api", "--host", "127.0.0.1", "--port", str(port)), log_dir / "api.log"
    )
    return f"http://127.0.0.1:{port}"
