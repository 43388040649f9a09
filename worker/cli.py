"""``daik worker`` and ``daik beat`` (registered with the ``daik`` command through the ``daik.commands``
entry point group; Celery and the database are imported inside the handlers)."""

from __future__ import annotations

import argparse
import os
from typing import Any


def _settings() -> Any:
    try:
        from service.settings import Settings
    except ImportError as err:  # the worker extra is not installed
        raise SystemExit(
            f"daik: error: the worker needs `pip install daik[worker]` ({err.name} missing)"
        ) from None
    settings = Settings()
    settings.ensure_dirs()
    return settings


def worker_argv(gpus: int, concurrency: int, loglevel: str, pool: str) -> list[str]:
    """The ``celery worker`` arguments: the queue of ``gpus`` GPUs (and, for CPU workers, the control queue of
    the housekeeping tasks); no gossip, mingle or event heartbeats (the database holds the state, and the
    embedded SQLAlchemy broker has no broadcast)."""
    from service.queue import CONTROL_QUEUE, queue_for

    queues = [queue_for(gpus)] + ([CONTROL_QUEUE] if gpus == 0 else [])
    return [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        f"--pool={pool}",
        f"--hostname=daik-gpus{gpus}-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def _cmd_worker(args: argparse.Namespace) -> int:
    from worker.app import advertise_worker, make_worker_app

    if args.gpus < 0 or args.concurrency < 1:
        raise SystemExit("daik: error: --gpus must be >= 0 and --concurrency >= 1")
    settings = _settings()
    app = make_worker_app(settings)
    argv = worker_argv(args.gpus, args.concurrency, args.loglevel, args.pool)
    queues = next(a for a in argv if a.startswith("--queues=")).removeprefix("--queues=").split(",")
    advertise_worker(app, settings, args.gpus, args.concurrency, queues)
    app.worker_main(argv)
    return 0


def _cmd_beat(args: argparse.Namespace) -> int:
    from worker.app import make_worker_app

    settings = _settings()
    app = make_worker_app(settings)
    argv = ["beat", f"--schedule={settings.home / 'celerybeat-schedule'}", f"--loglevel={args.loglevel}"]
    return int(app.start(argv) or 0)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``daik worker`` and ``daik beat``."""
    p = sub.add_parser(
        "worker", help="run jobs: a Celery worker for the jobs of one GPU count (DAIK_* settings)"
    )
    p.add_argument("--gpus", type=int, default=0, help="GPUs per job of this worker's queue (default 0: CPU)")
    p.add_argument("--concurrency", type=int, default=1, help="jobs at once (default 1)")
    p.add_argument("--loglevel", default="info", help="debug | info | warning | error (default info)")
    p.add_argument(
        "--pool", choices=("prefork", "solo"), default="prefork", help="Celery pool (default prefork)"
    )
    p.set_defaults(handler=_cmd_worker)

    p = sub.add_parser("beat", help="send the periodic housekeeping tasks (re-dispatch, reap)")
    p.add_argument("--loglevel", default="info", help="debug | info | warning | error (default info)")
    p.set_defaults(handler=_cmd_beat)
