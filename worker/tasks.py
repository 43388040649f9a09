"""The Celery tasks, thin and idempotent: each takes ids, is named by a constant of :mod:`service.queue` and
calls a plain function of :mod:`worker.pipelines` / :mod:`worker.housekeeping`."""

from __future__ import annotations

import contextlib
import logging
import uuid
from functools import cache, partial

from billiard.process import current_process
from celery import Celery
from celery.exceptions import Reject
from sqlalchemy.orm import Session, sessionmaker

from service.db.session import make_engine, make_sessionmaker
from service.queue import (
    TASK_REAP,
    TASK_REDISPATCH,
    TASK_SCHEDULES,
    TASK_TRAIN,
    maintenance_periods,
    message_taken,
)
from service.settings import Settings
from worker import housekeeping, pipelines, schedules
from worker.app import SHUTDOWN, stop_on_sigterm
from worker.resources import JobResources

__all__ = ["DEVICE_WAIT_EXTRA_SECONDS", "register_tasks"]

log = logging.getLogger(__name__)

#: how long a job waits for its devices beyond ``cancel_grace_seconds`` (the trainer of a killed pool
#: process may still be checkpointing on them) before its message goes back to the broker
DEVICE_WAIT_EXTRA_SECONDS = 30.0


def register_tasks(app: Celery, settings: Settings, *, resources: JobResources | None = None) -> None:
    """Register ``daik.train(job_id)``, ``daik.redispatch()``, ``daik.reap()`` and
    ``daik.schedules.dispatch()`` on ``app``; ``resources``: the devices and CPU threads each job of this
    worker gets (:mod:`worker.resources`). The database engine is made on first use, in the process that
    runs the task (never shared across a fork)."""
    resources = resources or JobResources()
    periods = maintenance_periods(settings)

    @cache
    def db() -> sessionmaker[Session]:
        return make_sessionmaker(make_engine(settings.db_url))

    @app.task(name=TASK_TRAIN)
    def train(job_id: str) -> None:
        if SHUTDOWN.is_set():  # shutting down: back to the broker for another worker
            raise Reject("the worker is shutting down", requeue=True)
        try:
            jid = uuid.UUID(job_id)
        except ValueError:
            log.error("daik.train: %r is not a job id; dropping the message", job_id)
            return
        in_pool_process = current_process().name != "MainProcess"  # prefork, not solo
        wait = settings.cancel_grace_seconds + DEVICE_WAIT_EXTRA_SECONDS
        with (
            stop_on_sigterm(SHUTDOWN) if in_pool_process else contextlib.nullcontext(),
            resources.granted(timeout=wait, stop=SHUTDOWN) as grant,
        ):
            if SHUTDOWN.is_set():
                raise Reject("the worker is shutting down", requeue=True)
            if grant is None:
                log.warning("job %s: no free device of this worker within %.0f s; re-queued", jid, wait)
                raise Reject("no free device", requeue=True)
            message_taken(settings, jid)  # taken: the re-dispatcher may send again if the job stays queued
            command = partial(pipelines.trainer_command, prefix=settings.trainer_command)
            pipelines.train(db(), settings, jid, stop=SHUTDOWN, command=command, grant=grant)

    @app.task(name=TASK_REDISPATCH)
    def redispatch() -> None:
        housekeeping.redispatch(db(), settings)
        housekeeping.record_run(db(), TASK_REDISPATCH, every_seconds=periods[TASK_REDISPATCH])

    @app.task(name=TASK_REAP)
    def reap() -> None:
        housekeeping.reap(db(), settings)
        housekeeping.record_run(db(), TASK_REAP, every_seconds=periods[TASK_REAP])

    @app.task(name=TASK_SCHEDULES)
    def dispatch_schedules() -> None:
        schedules.dispatch_schedules(db(), settings)
        housekeeping.record_run(db(), TASK_SCHEDULES, every_seconds=periods[TASK_SCHEDULES])
