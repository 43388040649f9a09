"""Celery task names, queue names and the send side (the API never imports the worker: it sends by name).

A broker message only wakes a worker; the job row in the database is the truth (SERVICE.md). Send after
the row is committed; a lost send is re-sent by the re-dispatcher (``daik.redispatch``).

In-flight markers (Redis brokers): every send of ``daik.train`` first sets ``daik:sent:<job id>`` in the
broker's Redis database, with an expiry (:data:`SENT_MARKER_SECONDS`, at most the visibility timeout); the
worker deletes it when it takes a message of the job (:func:`message_taken`). The re-dispatcher sends only
when it can create the marker (``SET NX``, :func:`send_train_if_lost`): a job whose message still waits in
the broker, behind busy workers, gets no duplicate. The marker lives beside the messages, so a broker that
loses its data (a restart without persistence, a flush) loses the markers with them, and the jobs are sent
again at the next re-dispatch. A marker that outlives its message some other way (a worker killed between
taking a message and deleting the marker) delays the job's next send by its expiry at most. Other brokers
(the embedded SQLAlchemy one) have no markers: the re-dispatcher re-sends every stale queued job, and the
worker's claim makes the duplicates no-ops.
"""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache
from typing import Any

import redis
from celery import Celery

from service.settings import Settings

__all__ = [
    "TASK_REAP",
    "TASK_REDISPATCH",
    "TASK_SCHEDULES",
    "TASK_TRAIN",
    "broker_transport_options",
    "maintenance_periods",
    "make_celery",
    "message_taken",
    "queue_for",
    "send_train",
    "send_train_if_lost",
]

log = logging.getLogger(__name__)

TASK_TRAIN = "daik.train"  # args: (job_id: str,)
TASK_REDISPATCH = "daik.redispatch"  # periodic: re-send queued jobs whose send is stale
TASK_REAP = "daik.reap"  # periodic: mark attempts with a dead heartbeat lost, re-queue their jobs
TASK_SCHEDULES = "daik.schedules.dispatch"  # periodic (every minute): fire the due schedules
CONTROL_QUEUE = "daik.control"  # the periodic housekeeping tasks
RESTORE_SWEEP_SECONDS = 100  # kombu's default period of the sweep that redelivers overdue messages
#: how long an in-flight marker lives (capped by the visibility timeout): a job whose message waits longer
#: behind busy workers gets one duplicate per this period, a no-op at the claim
SENT_MARKER_SECONDS = 3600
SENT_MARKER_PREFIX = "daik:sent:"


def queue_for(gpus: int) -> str:
    """The queue of jobs that need ``gpus`` GPUs (0: CPU jobs); one worker process per GPU set listens to
    the queue of its size."""
    return f"daik.gpus.{int(gpus)}"


def maintenance_periods(settings: Settings) -> dict[str, float]:
    """How often ``daik beat`` runs each housekeeping task: the re-dispatcher every half
    ``redispatch_after_seconds``, the reaper every third of ``lease_seconds``, the schedule dispatcher every
    ``schedule_dispatch_seconds`` (each at least every second)."""
    return {
        TASK_REDISPATCH: max(settings.redispatch_after_seconds / 2, 1.0),
        TASK_REAP: max(settings.lease_seconds / 3, 1.0),
        TASK_SCHEDULES: max(settings.schedule_dispatch_seconds, 1.0),
    }


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


@lru_cache(maxsize=8)
def _marker_store(settings: Settings) -> redis.Redis | None:
    """The broker's Redis database (the markers live beside the messages), or None for other brokers."""
    if not settings.broker.startswith(("redis://", "rediss://")):
        return None
    return redis.Redis.from_url(settings.broker, socket_timeout=10, socket_connect_timeout=10)


def _marker(job_id: uuid.UUID) -> str:
    return f"{SENT_MARKER_PREFIX}{job_id}"


def _mark(settings: Settings, store: redis.Redis, job_id: uuid.UUID, *, only_new: bool) -> bool:
    """Set the job's marker (``only_new``: only if it has none); True when set. A marker that cannot be
    written counts as set: better a duplicate message than a job never sent."""
    ex = min(SENT_MARKER_SECONDS, settings.visibility_timeout)
    try:
        return bool(store.set(_marker(job_id), 1, ex=ex, nx=only_new))
    except redis.RedisError as err:
        log.warning("job %s: could not write its in-flight marker (sending anyway): %s", job_id, err)
        return True


def _send(settings: Settings, job_id: uuid.UUID, gpus: int, store: redis.Redis | None) -> None:
    try:
        _cached_celery(settings).send_task(TASK_TRAIN, args=[str(job_id)], queue=queue_for(gpus))
    except Exception:
        if store is not None:  # no message went out: no marker either, so the re-dispatcher sends it
            try:
                store.delete(_marker(job_id))
            except redis.RedisError as err:
                log.warning("job %s: could not clear its in-flight marker: %s", job_id, err)
        raise


def send_train(settings: Settings, job_id: uuid.UUID, gpus: int) -> None:
    """Send the train task of ``job_id`` to the queue of its GPU count, marking it in flight (module
    docstring); at-least-once: the worker's atomic claim makes duplicates no-ops."""
    store = _marker_store(settings)
    if store is not None:
        _mark(settings, store, job_id, only_new=False)
    _send(settings, job_id, gpus, store)


def send_train_if_lost(settings: Settings, job_id: uuid.UUID, gpus: int) -> bool:
    """The re-dispatcher's send: only when no message of ``job_id`` is in flight (``SET NX`` of its marker;
    always on a broker without markers). Returns whether it sent."""
    store = _marker_store(settings)
    if store is not None and not _mark(settings, store, job_id, only_new=True):
        return False
    _send(settings, job_id, gpus, store)
    return True


def message_taken(settings: Settings, job_id: uuid.UUID) -> None:
    """A worker took a train message of ``job_id``: no message of it is in flight any more (a failure to
    say so only delays a re-send, so it is logged, not raised)."""
    store = _marker_store(settings)
    if store is None:
        return
    try:
        store.delete(_marker(job_id))
    except redis.RedisError as err:
        log.warning("job %s: could not clear its in-flight marker: %s", job_id, err)
