"""``daik api --workers 2``: two uvicorn worker processes on one port (the app built by the
``service.main:app_from_env`` factory), both registering the bootstrap token idempotently."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.auth.service import BOOTSTRAP_NAME
from service.db.models import ApiToken
from service.local import Supervisor, daik_command
from tests.service.conftest import REDIS_DB, REDIS_SERVER_URL
from tests.waiting import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_api_with_two_workers_serves(
    pg_url: str, roots: Path, db: sessionmaker[Session], tmp_path: Path
) -> None:
    token = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAIK_")}
    env |= {
        "DAIK_HOME": str(roots / "home"),
        "DAIK_DATABASE_URL": pg_url,
        "DAIK_BROKER_URL": f"{REDIS_SERVER_URL}/{REDIS_DB}",
        "DAIK_DATA_ROOT": str(roots / "data"),
        "DAIK_ARTIFACT_ROOT": str(roots / "artifacts"),
        "DAIK_BOOTSTRAP_TOKEN": token,
    }
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    sup = Supervisor(env, grace=10)
    api = sup.start("api", daik_command("api", "--port", str(port), "--workers", "2"), tmp_path / "api.log")
    try:

        def healthy() -> bool:
            assert not api.exited(), api.log_tail(40)
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, interval=0.2, what="the API to answer", on_timeout=lambda: api.log_tail(40))
        # both workers start (and register the bootstrap token) before the log says so
        wait_for(
            lambda: api.log_tail(200).count("Application startup complete") >= 2,
            30,
            interval=0.2,
            what="both API processes to start",
            on_timeout=lambda: api.log_tail(40),
        )
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            for _ in range(20):  # new connections: both processes answer some
                assert client.get("/healthz", headers={"Connection": "close"}).status_code == 200
                assert client.get("/jobs", headers={"Connection": "close"}).status_code == 200
        with db() as session:
            rows = session.scalars(select(ApiToken).where(ApiToken.name == BOOTSTRAP_NAME)).all()
            assert len(rows) == 1 and rows[0].revoked_at is None
    finally:
        sup.stop()
