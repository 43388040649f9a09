"""Celery task names, queue names and the send side (the API never imports the worker: it sends by name).

A broker message only wakes a worker; the job row in the database is the truth (SERVICE.md). Send after
the row is committed; a lost send is re-sent by the re-dispatcher (``daik.redispatch``).
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

from celery import Celery

from service.settings import Settings

__all__ = [
    "TASK_REAP",
    "TASK_REDISPATCH",
    "TASK_SCHEDULES",
    "TASK_TRAIN",
    "broker_transport_options",
    "make_celery",
    "queue_for",
    "send_train",
]

TASK_TRAIN = "daik.train"  # args: (job_id: str,)
TASK_REDISPATCH = "daik.redispatch"  # periodic: re-send queued jobs whose send is stale
TASK_REAP = "daik.reap"  # periodic: mark attempts with a dead heartbeat lost, re-queue their jobs
TASK_SCHEDULES = "daik.schedules.dispatch"  # periodic (every minute): fire the due schedules
CONTROL_QUEUE = "daik.control"  # the periodic housekeeping tasks
RESTORE_SWEEP_SECONDS = 100  # kombu's default period of the sweep that redelivers overdue messages


def queue_for(gpus: int) -> str:
    """The queue of jobs that need ``gpus`` GPUs (0: CPU jobs); one worker process per GPU set listens to
    the queue of its size."""
    return f"daik.gpus.{int(gpus)}"


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """Options shared by sender and worker; Redis redelivers a task unacked after ``visibility_timeout``,
    so it must exceed the longest job (SERVICE.md). Redis only: the embedded SQLAlchemy broker hands its
    transport options to ``create_engine``, which rejects unknown keys."""
    if not settings.broker.startswith(("redis", "rediss", "sentinel")):
        return {}
    vt = settings.visibility_timeout
    options: dict[str, Any] = {"visibility_timeout": vt}
    if vt < RESTORE_SWEEP_SECONDS:
        # kombu looks for overdue unacked messages every 10 s x 10 calls (~100 s); a short timeout
        # (tests, short jobs) is only honoured if the sweep runs at least as often as the timeout
        options |= {"unacked_restore_interval": max(1, vt // 5), "unacked_restore_throttle": 1}
    return options


def make_celery(settings: Settings, name: str = "daik") -> Celery:
    """A Celery app bound to the configured broker, with results ignored (the database holds them)."""
    app = Celery(name, broker=settings.broker, set_as_current=False)
    app.conf.update(
        broker_transport_options=broker_transport_options(settings),
        task_ignore_result=True,
        task_default_queue=queue_for(0),
        broker_connection_retry_on_startup=True,
    )
    return app


@lru_cache(maxsize=8)
def _cached_celery(settings: Settings) -> Celery:
    return make_celery(settings, name="daik-producer")


def send_train(settings: Settings, job_id: uuid.UUID, gpus: int) -> None:
    """Send the train task of ``job_id`` to the queue of its GPU count (at-least-once: the worker's
    atomic claim makes duplicates no-ops)."""
    _cached_celery(settings).send_task(TASK_TRAIN, args=[str(job_id)], queue=queue_for(gpus))
