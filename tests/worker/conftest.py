"""Fixtures of the worker tests: a fresh PostgreSQL database ``daik_test_worker`` (migrated once per session
with Alembic), Redis db 12 as the broker, Settings with short liveness timings, job rows, and the scripted
fake trainer (``fake_trainer.py``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Job, JobEvent
from service.db.session import make_engine, make_sessionmaker, session_scope
from service.settings import Settings
from tests.servers import PG_SERVER_URL, database_name, recreate_database, redis_url

PG_DB = "daik_test_worker"
PG_URL = make_url(PG_SERVER_URL).set(database=database_name(PG_DB)).render_as_string(hide_password=False)
REDIS_URL = redis_url(12)
FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    eng = make_engine(recreate_database(PG_DB, migrated=True))
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """The worker commits its own transactions, so each test starts from empty tables instead of a
    rolled-back transaction."""
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE job, dataset, api_token, worker CASCADE"))
    yield make_sessionmaker(engine)


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """Redis db 12, empty: the broker of these tests (what ``send_train`` sends lands in its lists)."""
    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    yield r
    r.flushdb()
    r.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=PG_URL,
        broker_url=REDIS_URL,
        artifact_root=tmp_path / "artifacts",
        lease_seconds=30,
        heartbeat_seconds=0.2,
        cancel_grace_seconds=2.0,
        redispatch_after_seconds=60,
    )


def sent_jobs(r: redis.Redis, queue: str = "daik.gpus.0") -> list[str]:
    """The job ids of the ``daik.train`` messages waiting in ``queue`` (kombu's Redis list, JSON bodies)."""
    import base64

    ids = []
    for raw in r.lrange(queue, 0, -1):
        msg = json.loads(raw)
        assert msg["headers"]["task"] == "daik.train"
        args = json.loads(base64.b64decode(msg["body"]))[0]
        ids.append(args[0])
    return ids


def add_job(db: sessionmaker[Session], artifact_root: Path | None = None, **fields: Any) -> uuid.UUID:
    """Insert a job row (queued by default; ``spec.output`` under the artifact root when given)."""
    job_id = uuid.uuid4()
    spec: dict[str, Any] = {"name": "t", "dataset": {"train": "/nonexistent", "classes": "a,b"}}
    if artifact_root is not None:
        spec["output"] = str(artifact_root / "jobs" / str(job_id))
    values: dict[str, Any] = {
        "id": job_id,
        "name": "t",
        "kind": "train",
        "spec": spec,
        "resources": {"gpus": 0},
    }
    values.update(fields)
    with session_scope(db) as s:
        s.add(Job(**values))
    return job_id


def get_job(db: sessionmaker[Session], job_id: uuid.UUID) -> Job:
    with db() as s:
        job = s.get_one(Job, job_id)
        _ = job.attempts  # loaded while the session is open
        return job


def job_events(db: sessionmaker[Session], job_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    with db() as s:
        rows = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)).all()
        return [(e.type, e.data) for e in rows]


def ago(seconds: float) -> dt.datetime:
    return utcnow() - dt.timedelta(seconds=seconds)


def fake_command(*behaviour: str) -> Any:
    """A command factory (see :func:`worker.pipelines.train`) running the fake trainer with ``behaviour``."""

    def command(files: Any, gpus: int) -> list[str]:
        return [
            sys.executable,
            str(FAKE_TRAINER),
            "--events",
            str(files.events),
            "--output",
            str(files.output),
            *behaviour,
        ]

    return command


def group_gone(pgid: int, timeout: float = 5.0) -> bool:
    """Whether no live process of group ``pgid`` is left within ``timeout`` (a SIGKILLed process takes a
    moment to die)."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def group_alive(pgid: int) -> list[int]:
    """The pids of live (not zombie) processes whose process group is ``pgid``."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            alive.append(int(entry))
    return alive
