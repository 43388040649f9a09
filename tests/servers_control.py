"""Stopping and starting the local PostgreSQL and Redis servers, for the tests that restart them (only when
they run on this machine, as in CI: ``pg_ctlcluster`` and ``redis-server`` are there and the test URLs are
the loopback defaults). Whatever happens in the test, the server is started again."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.servers import PG_SERVER_URL, REDIS_SERVER_URL
from tests.waiting import wait_for

LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379"
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "",
               "--appendonly", "no"]  # fmt: skip


def _pg_cluster() -> list[str] | None:
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if PG_SERVER_URL != LOCAL_PG or not versions or shutil.which("pg_ctlcluster") is None:
        return None
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def needs_local_postgres() -> pytest.MarkDecorator:
    return pytest.mark.skipif(_pg_cluster() is None, reason="PostgreSQL is not a local pg_ctlcluster server")


def needs_local_redis() -> pytest.MarkDecorator:
    ok = REDIS_SERVER_URL == LOCAL_REDIS and shutil.which("redis-server") and shutil.which("redis-cli")
    return pytest.mark.skipif(not ok, reason="Redis is not a local redis-server")


def _pg_ready() -> bool:
    return (
        subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432"], capture_output=True).returncode == 0
    )


@contextlib.contextmanager
def postgres_down() -> Iterator[None]:
    """PostgreSQL stopped inside the block (fast shutdown: connections are cut), started again after."""
    cluster = _pg_cluster()
    assert cluster is not None
    subprocess.run([*cluster, "stop", "-m", "fast"], check=True, capture_output=True)
    try:
        yield
    finally:
        start_postgres()


def start_postgres(timeout: float = 60.0) -> None:
    cluster = _pg_cluster()
    assert cluster is not None
    if not _pg_ready():
        subprocess.run([*cluster, "start"], capture_output=True)
    wait_for(_pg_ready, timeout, interval=0.2, what="PostgreSQL to come back")


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(LOCAL_REDIS, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def redis_down() -> Iterator[None]:
    """Redis shut down (no save: its lists are lost, as in a crash) inside the block, started after."""
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"], capture_output=True)
    deadline = time.monotonic() + 10
    while _redis_up() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        yield
    finally:
        if not _redis_up():
            subprocess.run(REDIS_START, check=True, capture_output=True)
        wait_for(_redis_up, 30, interval=0.1, what="Redis to come back")
