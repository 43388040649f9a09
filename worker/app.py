"""The worker's Celery app: :func:`service.queue.make_celery` plus the delivery settings of SERVICE.md, the
three tasks and the beat schedule.

Delivery (Celery on Redis redelivers a task still running after the visibility timeout, celery#5935):

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged when its task ends, and
  requeued when the process running it dies; ``worker_prefetch_multiplier = 1``, one pool process per job
  (``--concurrency`` jobs at once, each on its own devices: :mod:`worker.resources`) and
  ``worker_max_tasks_per_child = 1`` (each job in a fresh process); results ignored (the database holds
  them).
- The visibility timeout (``settings.visibility_timeout``, above the longest job) in all three places that
  Celery's Redis documentation names: ``broker_transport_options`` (Redis brokers only, see
  :func:`service.queue.broker_transport_options`), ``result_backend_transport_options`` and
  ``visibility_timeout``.
- ``worker_cancel_long_running_tasks_on_connection_loss = False``: a broker hiccup must not kill a training
  that is supervised through the database; the redelivered message finds the job claimed (live lease) and
  does nothing.

Housekeeping (re-dispatch, reaping, schedule firing) runs in ``daik beat``: its scheduler sends the
tasks to the control queue, and a solo Celery consumer in the same command takes them (``daik beat`` is a
``celery worker --beat`` on that queue only), so no training can hold them up. Training workers never
consume the control queue.

Warm shutdown (SIGTERM / SIGINT to ``daik worker``): the main process sends SIGTERM to the pool processes
running a task; while running ``daik.train`` a pool process turns SIGTERM into setting :data:`SHUTDOWN`
(:func:`stop_on_sigterm`), so its supervisor stops the trainer, which checkpoints, and re-queues the job
(``preempted``). In a solo pool the task runs in the main process, where the shutdown handler sets
:data:`SHUTDOWN` itself. Without this a warm shutdown would wait for the whole training.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from celery import Celery, signals

from service.queue import (
    CONTROL_QUEUE,
    TASK_REAP,
    TASK_REDISPATCH,
    TASK_SCHEDULES,
    broker_transport_options,
    maintenance_periods,
    make_celery,
)
from service.settings import Settings
from worker.resources import JobResources

__all__ = [
    "SHUTDOWN",
    "SchedulerWatch",
    "advertise_worker",
    "beat_schedule",
    "make_worker_app",
    "stop_on_sigterm",
]

log = logging.getLogger(__name__)

#: set when this worker is shutting down: the supervisor stops its trainer with a checkpoint and re-queues
SHUTDOWN = threading.Event()


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """``daik.redispatch``, ``daik.reap`` and ``daik.schedules.dispatch`` at their periods
    (:func:`service.queue.maintenance_periods`), to the control queue, which ``daik beat`` consumes itself;
    a message not taken within its period expires, so that housekeeping does not pile up while the
    consumer is down."""
    periods = maintenance_periods(settings)
    names = {TASK_REDISPATCH: "daik-redispatch", TASK_REAP: "daik-reap", TASK_SCHEDULES: "daik-schedules"}
    return {
        name: {
            "task": task,
            "schedule": periods[task],
            "options": {"queue": CONTROL_QUEUE, "expires": periods[task]},
        }
        for task, name in names.items()
    }


def make_worker_app(settings: Settings, resources: JobResources | None = None) -> Celery:
    """The Celery app of ``daik worker`` and ``daik beat``, with the tasks registered; ``resources``: what
    each job of this worker gets (:mod:`worker.resources`)."""
    from worker.tasks import register_tasks

    app = make_celery(settings, name="daik-worker")
    vt = settings.visibility_timeout
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_max_tasks_per_child=1,
        task_ignore_result=True,
        broker_transport_options=broker_transport_options(settings),
        result_backend_transport_options={"visibility_timeout": vt},
        visibility_timeout=vt,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_routes={
            TASK_REDISPATCH: {"queue": CONTROL_QUEUE},
            TASK_REAP: {"queue": CONTROL_QUEUE},
            TASK_SCHEDULES: {"queue": CONTROL_QUEUE},
        },
        beat_schedule=beat_schedule(settings),
        worker_send_task_events=False,
    )
    register_tasks(app, settings, resources=resources)
    signals.worker_shutting_down.connect(_on_shutting_down, weak=False, dispatch_uid="daik-shutting-down")
    return app


def advertise_worker(
    app: Celery, settings: Settings, *, resources: JobResources, concurrency: int, queues: list[str]
) -> None:
    """Advertise this worker in the ``worker`` table (:mod:`worker.registry`) once Celery is ready (under
    its node name), heartbeat every ``settings.heartbeat_seconds`` (with the devices in use), and mark it
    stopped at shutdown, when its device pool's lock folder is removed too."""
    from functools import cache

    from service.db.session import make_engine, make_sessionmaker
    from worker.registry import Advertiser

    @cache
    def db() -> Any:
        return make_sessionmaker(make_engine(settings.db_url))

    advertiser = Advertiser(
        db, resources, concurrency=concurrency, queues=queues, every=settings.heartbeat_seconds
    )

    def on_ready(sender: Any = None, **_: Any) -> None:
        advertiser.start(str(getattr(sender, "hostname", None) or app.main))

    def on_shutdown(**_: Any) -> None:
        advertiser.stop()
        if resources.pool is not None:
            resources.pool.remove()

    signals.worker_ready.connect(on_ready, weak=False, dispatch_uid="daik-advertise")
    signals.worker_shutdown.connect(on_shutdown, weak=False, dispatch_uid="daik-retire")


class SchedulerWatch:
    """In ``daik beat``: once the worker is ready, watch its embedded scheduler process every ``every``
    seconds; if it dies while the worker runs, log it and stop the worker (SIGTERM to itself, a warm
    shutdown), so that whatever supervises ``daik beat`` restarts it instead of leaving a consumer that
    nothing feeds. :attr:`died` tells the command to exit non-zero."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.died = False
        signals.worker_ready.connect(self._on_ready, weak=False, dispatch_uid="daik-watch-scheduler")

    def _on_ready(self, sender: Any = None, **_: Any) -> None:
        service = getattr(getattr(sender, "controller", None), "beat", None)
        if service is None:
            log.warning("daik beat: no embedded scheduler to watch")
            return
        threading.Thread(
            target=self._watch, args=(service,), name="daik-watch-scheduler", daemon=True
        ).start()

    def _watch(self, service: Any) -> None:
        while not SHUTDOWN.wait(self.every):
            if not service.is_alive():
                self.died = True
                log.error("daik beat: its scheduler process died (exit code %s); stopping", service.exitcode)
                os.kill(os.getpid(), signal.SIGTERM)
                return


def _on_shutting_down(**_: Any) -> None:
    """In the main process, on a warm or cold shutdown: set :data:`SHUTDOWN` (a solo pool runs its task
    here) and send SIGTERM to the pool processes running a task (their supervisors stop the trainers with a
    checkpoint); idle pool processes are left to Celery."""
    from celery.worker import state

    SHUTDOWN.set()
    for request in list(state.active_requests):
        pid = getattr(request, "worker_pid", None)
        if pid and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """In a pool process: while the block runs, SIGTERM sets ``stop`` instead of ending the process
    (billiard's handler), so the supervisor can stop its trainer with a checkpoint; the previous handler
    comes back after. Only the main thread can set handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
