"""Fixtures of the worker tests: a fresh PostgreSQL database ``daik_test_worker`` (migrated once per session
with Alembic), Redis db 12 as the broker, Settings with short liveness timings, job rows, and the scripted
fake trainer (``fake_trainer.py``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Job, JobEvent, Worker
from service.db.session import make_engine, make_sessionmaker, session_scope
from service.settings import Settings
from tests import waiting
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
        conn.execute(text("TRUNCATE job, dataset, api_token, worker, maintenance CASCADE"))
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
        resume = ["--resume", str(files.resume_from)] if files.resume_from is not None else []
        return [
            sys.executable,
            str(FAKE_TRAINER),
            "--events",
            str(files.events),
            "--output",
            str(files.folder),
            *resume,
            *behaviour,
        ]

    return command


def group_gone(pgid: int, timeout: float = 5.0) -> bool:
    """Whether no live process of group ``pgid`` is left within ``timeout`` (a SIGKILLed process takes a
    moment to die)."""
    try:
        waiting.wait_for(lambda: not group_alive(pgid), timeout, what=f"process group {pgid} to end")
    except AssertionError:
        return False
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


class Procs:
    """``daik`` processes of one test (``daik worker``, ``daik beat``), each in its own session, with the
    test's settings, a lease of ``lease_seconds`` and the scripted fake trainer (behaviour
    ``fake_trainer``, passed to it through ``DAIK_TRAINER_ENV``); all killed at the end."""

    def __init__(self, settings: Settings, tmp_path: Path, *, lease_seconds: int, fake_trainer: str) -> None:
        self.tmp = tmp_path
        self.env = dict(
            os.environ,
            DAIK_HOME=str(settings.home),
            DAIK_DATABASE_URL=PG_URL,
            DAIK_BROKER_URL=REDIS_URL,
            DAIK_ARTIFACT_ROOT=str(settings.artifact_dir),
            DAIK_LEASE_SECONDS=str(lease_seconds),
            DAIK_HEARTBEAT_SECONDS="0.5",
            DAIK_TRAINER_COMMAND=f"{sys.executable} {FAKE_TRAINER}",
            DAIK_FAKE_TRAINER=fake_trainer,
            DAIK_TRAINER_ENV="DAIK_FAKE_TRAINER",  # a trainer gets no DAIK_* variable unless named here
            OMP_NUM_THREADS="1",
            TMPDIR=str(tmp_path),  # a GPU worker's device lock folder: removed with the test's files
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        """``daik ARGS`` (``prefix``: a command that runs it, e.g. one that first joins a cgroup)."""
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "daik_core.cli", *args, "--loglevel", "info"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{self.log(n)[-3000:]}" for n in self.procs)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def live_workers(db: sessionmaker[Session]) -> list[str]:
    with db() as s:
        return list(s.scalars(select(Worker.name).where(Worker.stopped_at.is_(None))).all())


def wait_for(what: str, cond: Callable[[], Any], procs: Procs, timeout: float) -> None:
    """Poll ``cond`` until it holds; fail with the processes' logs after ``timeout`` seconds."""
    waiting.wait_for(cond, timeout, interval=0.2, what=what, on_timeout=procs.logs)


class BlackholeProxy:
    """A TCP proxy on 127.0.0.1 to ``host:port`` (threads of the test process). :meth:`cut` turns it into a
    black hole, as a network partition or a hung server looks to a client: connections stay open, what the
    client sends is swallowed, nothing comes back, and new connections are accepted and never answered."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` (a SQLAlchemy URL) pointing at the proxy instead."""
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def cut(self) -> None:
        self._cut.set()

    def close(self) -> None:
        self._closed.set()
        for sock in [self.listener, *self._socks]:
            sock.close()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._socks.append(client)
            if self._cut.is_set():
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            server = socket.create_connection(self.upstream)
            self._socks.append(server)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                if not self._cut.is_set():
                    dst.sendall(data)
        except OSError:
            pass

    def _swallow(self, sock: Any) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
