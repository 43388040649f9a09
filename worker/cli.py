"""``daik worker`` and ``daik beat`` (registered with the ``daik`` command through the ``daik.commands``
entry point group; Celery and the database are imported inside the handlers)."""

from __future__ import annotations

import argparse
import os
from typing import Any


def _settings() -> Any:
    try:
        from pydantic import ValidationError

        from service.settings import Settings
    except ImportError as err:  # the worker extra is not installed
        raise SystemExit(
            f"daik: error: the worker needs `pip install daik[worker]` ({err.name} missing)"
        ) from None
    try:
        settings = Settings()
    except ValidationError as err:
        first = err.errors()[0]
        name = "DAIK_" + str(first["loc"][0]).upper() if first["loc"] else "DAIK_*"
        raise SystemExit(f"daik: error: {name}: {first['msg']}") from None
    settings.ensure_dirs()
    return settings


def _celery_flags(hostname: str, loglevel: str) -> list[str]:
    """No gossip, mingle or event heartbeats (the database holds the state, and the embedded SQLAlchemy
    broker has no broadcast)."""
    return [
        f"--hostname={hostname}",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def worker_argv(gpus: int, *, concurrency: int, loglevel: str, pool: str) -> list[str]:
    """The ``celery worker`` arguments of a training worker: the queue of ``gpus`` GPUs only (housekeeping
    runs in ``daik beat``)."""
    from service.queue import queue_for

    return [
        "worker",
        f"--queues={queue_for(gpus)}",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        *_celery_flags(f"daik-gpus{gpus}-{os.getpid()}@%h", loglevel),
    ]


def beat_argv(loglevel: str) -> list[str]:
    """The ``celery worker --beat`` arguments of ``daik beat``: the scheduler of the housekeeping tasks and a
    solo consumer of the control queue, which runs them; it takes no training job. The scheduler keeps its
    state in memory (every task runs every minute or more often, and the schedules' own times are in the
    database), so two ``daik beat`` on one ``DAIK_HOME`` share no file."""
    from service.queue import CONTROL_QUEUE

    return [
        "worker",
        "--beat",
        "--scheduler=celery.beat:Scheduler",
        f"--queues={CONTROL_QUEUE}",
        "--concurrency=1",
        "--pool=solo",
        *_celery_flags(f"daik-beat-{os.getpid()}@%h", loglevel),
    ]


def _cmd_worker(args: argparse.Namespace) -> int:
    from worker.app import advertise_worker, make_worker_app
    from worker.resources import (
        DeviceError,
        DevicePool,
        JobResources,
        Visible,
        find_visible,
        plan_devices,
        threads_per_job,
    )

    settings = _settings()
    lookup = args.gpus > 0 and not (args.devices is not None and settings.allow_absent_devices)
    visible = find_visible() if lookup else Visible((), frozenset(), "not looked up")
    try:
        devices, concurrency = plan_devices(
            args.devices,
            gpus=args.gpus,
            concurrency=args.concurrency,
            allow_absent=settings.allow_absent_devices,
            visible=visible,
        )
        threads = threads_per_job(args.cpus, concurrency=concurrency)
    except DeviceError as err:
        raise SystemExit(f"daik: error: {err}") from None
    if args.pool == "solo" and concurrency > 1:
        raise SystemExit(f"daik: error: --pool solo runs one job at a time; --concurrency is {concurrency}")
    resources = JobResources(args.gpus, DevicePool.create(devices) if devices else None, threads)
    app = make_worker_app(settings, resources)
    argv = worker_argv(args.gpus, concurrency=concurrency, loglevel=args.loglevel, pool=args.pool)
    queues = next(a for a in argv if a.startswith("--queues=")).removeprefix("--queues=").split(",")
    advertise_worker(app, settings, resources=resources, concurrency=concurrency, queues=queues)
    app.worker_main(argv)
    return 0


def _cmd_beat(args: argparse.Namespace) -> int:
    from worker.app import SchedulerWatch, make_worker_app

    settings = _settings()
    app = make_worker_app(settings)
    watch = SchedulerWatch()
    app.worker_main(beat_argv(args.loglevel))
    if watch.died:
        raise SystemExit("daik: error: the scheduler of daik beat died; see the log above")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``daik worker`` and ``daik beat``."""
    p = sub.add_parser(
        "worker", help="run jobs: a Celery worker for the jobs of one GPU count (DAIK_* settings)"
    )
    p.add_argument("--gpus", type=int, default=0, help="GPUs per job of this worker's queue (default 0: CPU)")
    p.add_argument(
        "--devices",
        default=None,
        help="the GPUs this worker owns, comma-separated CUDA_VISIBLE_DEVICES ids (default: every visible "
        "GPU); each job gets --gpus of them",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="jobs at once (default: as many as the devices hold; CPU workers 1)",
    )
    p.add_argument(
        "--cpus",
        type=int,
        default=None,
        help="CPU threads per job (OMP_NUM_THREADS of each trainer; default: OMP_NUM_THREADS when set, "
        "else this machine's cores / concurrency)",
    )
    p.add_argument("--loglevel", default="info", help="debug | info | warning | error (default info)")
    p.add_argument(
        "--pool", choices=("prefork", "solo"), default="prefork", help="Celery pool (default prefork)"
    )
    p.set_defaults(handler=_cmd_worker)

    p = sub.add_parser(
        "beat", help="run the housekeeping: re-dispatch, reaping and the schedules (send and run them)"
    )
    p.add_argument("--loglevel", default="info", help="debug | info | warning | error (default info)")
    p.set_defaults(handler=_cmd_beat)
