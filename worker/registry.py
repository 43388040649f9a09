"""How a ``daik worker`` advertises itself (the ``worker`` table): on start it writes its node name, the
GPU count of the jobs it takes, its concurrency and queues, the devices it owns and the CPU threads each
trainer gets; a thread of the main process refreshes ``heartbeat_at`` and ``devices_in_use`` every
``heartbeat_seconds``; on shutdown it sets ``stopped_at``. The API reads the live
rows (``service.workers``) to refuse jobs that no worker can take and to say why a queued job waits.

Written from the Celery main process only (the signals ``worker_ready`` and ``worker_shutdown``); a failed
write is logged and retried at the next beat: advertising must never stop a worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Worker
from service.db.session import session_scope
from worker.resources import JobResources

__all__ = ["Advertiser", "advertise", "beat", "retire"]

log = logging.getLogger(__name__)


def advertise(
    db: sessionmaker[Session],
    name: str,
    *,
    gpus: int,
    concurrency: int,
    queues: Sequence[str],
    devices: Sequence[str] = (),
    devices_in_use: Sequence[str] = (),
    cpus: int | None = None,
) -> None:
    """Insert or refresh the row of worker ``name`` (a restarted node of the same name starts anew)."""
    now = utcnow()
    with session_scope(db) as s:
        s.merge(
            Worker(
                name=name,
                gpus=gpus,
                concurrency=concurrency,
                queues=list(queues),
                started_at=now,
                heartbeat_at=now,
                stopped_at=None,
                devices=list(devices),
                devices_in_use=list(devices_in_use),
                cpus=cpus,
            )
        )


def beat(db: sessionmaker[Session], name: str, *, devices_in_use: Sequence[str] = ()) -> None:
    with session_scope(db) as s:
        s.execute(
            update(Worker)
            .where(Worker.name == name)
            .values(heartbeat_at=utcnow(), stopped_at=None, devices_in_use=list(devices_in_use))
        )


def retire(db: sessionmaker[Session], name: str) -> None:
    with session_scope(db) as s:
        s.execute(update(Worker).where(Worker.name == name).values(stopped_at=utcnow()))


class Advertiser:
    """Advertise on :meth:`start`, heartbeat in a daemon thread, retire on :meth:`stop`."""

    def __init__(
        self,
        db: Callable[[], sessionmaker[Session]],
        resources: JobResources,
        *,
        concurrency: int,
        queues: Sequence[str],
        every: float,
    ) -> None:
        self.db, self.resources, self.concurrency, self.queues, self.every = (
            db,
            resources,
            concurrency,
            list(queues),
            every,
        )
        self.name: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _in_use(self) -> list[str]:
        pool = self.resources.pool
        return pool.in_use() if pool is not None else []

    def start(self, name: str) -> None:
        self.name = name
        pool = self.resources.pool
        self._safely(
            "advertise",
            lambda: advertise(
                self.db(),
                name,
                gpus=self.resources.gpus,
                concurrency=self.concurrency,
                queues=self.queues,
                devices=pool.devices if pool is not None else (),
                devices_in_use=self._in_use(),
                cpus=self.resources.threads,
            ),
        )
        self._thread = threading.Thread(target=self._run, name="daik-worker-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.name is not None
        name = self.name
        while not self._stop.wait(self.every):
            self._safely("heartbeat", lambda: beat(self.db(), name, devices_in_use=self._in_use()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.name is not None:
            name = self.name
            self._safely("retire", lambda: retire(self.db(), name))

    def _safely(self, what: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as err:  # the database is down: the worker goes on; the next beat retries
            log.warning(
                "worker %s: could not %s in the database (%s: %s)", self.name, what, type(err).__name__, err
            )
