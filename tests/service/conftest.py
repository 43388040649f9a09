"""Fixtures of the HTTP API tests: the app from ``create_app`` on a real PostgreSQL database
(``daik_test_api``, dropped, created and migrated once per session) with Redis db 11 as the broker
(flushed at session start), driven through ``fastapi.testclient.TestClient``.

Every test starts from empty tables (TRUNCATE, not a rolled-back transaction: the API commits in its own
sessions and several tests race real threads against it). Data and artifact roots are temporary folders
shared by the session; each test makes its dataset folders under a name of its own.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from service.auth.service import create_token
from service.db.session import make_engine, make_sessionmaker
from service.main import create_app
from service.settings import Settings
from tests.servers import REDIS_SERVER_URL, recreate_database, redis_db
from tests.service.helpers import bearer, job_body, write_dota

API_DATABASE = "daik_test_api"
EMPTY_DATABASE = "daik_test_api_empty"  # created, never migrated: /readyz must answer 503 on it
REDIS_DB = redis_db(11)
MAX_REQUEST_BYTES = 64 * 1024  # small, so the 413 test sends little


def make_settings(database_url: str, roots: Path, **overrides: Any) -> Settings:
    """Test settings, every field that matters given explicitly (a DAIK_* variable of the shell running the
    tests must not leak in)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "broker_url": f"{REDIS_SERVER_URL}/{REDIS_DB}",
        "home": roots / "home",
        "data_root": roots / "data",
        "artifact_root": roots / "artifacts",
        "bootstrap_token": None,
        "max_request_bytes": MAX_REQUEST_BYTES,
        "cors_origins": (),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """``daik_test_api``: created anew and migrated to head with Alembic (which exercises the migrations)."""
    return recreate_database(API_DATABASE, migrated=True)


@pytest.fixture(scope="session")
def empty_pg_url() -> str:
    return recreate_database(EMPTY_DATABASE)


@pytest.fixture(scope="session")
def engine(pg_url: str) -> Iterator[Engine]:
    eng = make_engine(pg_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def db(engine: Engine) -> sessionmaker[Session]:
    """Sessions for arranging rows directly and checking what the API stored."""
    return make_sessionmaker(engine)


@pytest.fixture(scope="session")
def broker() -> redis.Redis:
    """Redis db 11, the broker of the test app; flushed once at session start."""
    client = redis.Redis.from_url(f"{REDIS_SERVER_URL}/{REDIS_DB}")
    client.flushdb()
    return client


@pytest.fixture(scope="session")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("daik-api")
    for sub in ("home", "data", "artifacts"):
        (base / sub).mkdir()
    return base


@pytest.fixture(scope="session")
def settings(pg_url: str, roots: Path, broker: redis.Redis) -> Settings:
    return make_settings(pg_url, roots)


@pytest.fixture(scope="session")
def app(settings: Settings) -> FastAPI:
    application = create_app(settings)
    application.state.sse_poll_seconds = 0.05  # fast event polling in the SSE tests
    return application


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:  # a context manager, so the lifespan runs
        yield c


@pytest.fixture(autouse=True)
def _empty_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE job, dataset, api_token, worker, maintenance CASCADE"))


# --- tokens ---------------------------------------------------------------------------------------------


TokenFactory = Callable[..., str]


@pytest.fixture
def make_token(db: sessionmaker[Session]) -> TokenFactory:
    """``make_token("jobs:read", expires_in=timedelta(...))`` -> a plain bearer token stored in the DB."""

    def factory(*scopes: str, expires_in: dt.timedelta | None = None, name: str = "test") -> str:
        with db() as session:
            _row, plain = create_token(
                session, name, scopes=list(scopes or ("admin",)), expires_in=expires_in
            )
            session.commit()
        return plain

    return factory


@pytest.fixture
def admin(make_token: TokenFactory) -> dict[str, str]:
    """Headers of an admin token."""
    return bearer(make_token("admin"))


# --- datasets on disk -----------------------------------------------------------------------------------


@pytest.fixture
def data_dir(settings: Settings) -> Path:
    """A folder of this test's own under the data root (its name is the relative path)."""
    folder = settings.data_dir / f"t-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    return folder


@pytest.fixture
def dota(data_dir: Path, settings: Settings) -> dict[str, str]:
    """``{"train": rel, "val": rel}``: two DOTA folders under the data root, as relative paths."""
    write_dota(data_dir / "train", images=2)
    write_dota(data_dir / "val", images=1)
    root = settings.data_dir
    return {
        "train": (data_dir / "train").relative_to(root).as_posix(),
        "val": (data_dir / "val").relative_to(root).as_posix(),
    }


@pytest.fixture
def submit(client: TestClient, admin: dict[str, str], dota: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """``submit(**overrides)`` POSTs a valid job and returns its JSON (asserting 201)."""

    def post(**overrides: Any) -> dict[str, Any]:
        r = client.post("/jobs", json=job_body(dota, **overrides), headers=admin)
        assert r.status_code == 201, r.text
        job: dict[str, Any] = r.json()
        return job

    return post
