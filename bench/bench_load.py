"""Benchmark: N jobs through the whole service with real processes (``daik api``, ``--workers`` ``daik
worker`` processes and ``daik beat`` on PostgreSQL + Redis), each job run by the scripted fake trainer of the
worker tests (``DAIK_TRAINER_COMMAND``; one epoch, a few events, a checkpoint) instead of real training, so
the service's own cost shows: claims, supervision, event ingestion, bookkeeping.

Submits the N jobs over HTTP as fast as one client can, waits until every job is terminal, then checks that
none was lost (all ``succeeded``) and none ran twice (exactly one attempt each, one ``succeeded`` status
event), and prints the wall time, jobs/s, and the queue latency (``started_at - created_at``: p50 / p95 /
max).

    .venv/bin/python bench/bench_load.py [--jobs 1000] [--workers 4]

Its own PostgreSQL database ``daik_bench_load`` (dropped, created, migrated) and Redis db 14 (flushed).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import func, select

from daik_core.data.synth import SYNTH_CLASSES, generate_dataset
from service import migrate
from service.db.models import Attempt, Job, JobEvent
from service.db.session import make_engine, make_sessionmaker
from service.local import Supervisor, daik_command

PG_SERVER_URL = os.environ.get("DAIK_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DAIK_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
DATABASE = "daik_bench_load"
REDIS_DB = 14
FAKE_TRAINER = Path(__file__).resolve().parents[1] / "tests" / "worker" / "fake_trainer.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def job_body(i: int) -> dict[str, Any]:
    return {
        "name": f"load-{i}",
        "kind": "train",
        "dataset": {"train": "bench"},
        "student": {"preset": "n"},
        "hparams": {"epochs": 1, "batch": 2, "imgsz": 64, "workers": 0},
        "resources": {"gpus": 0},
        "max_restarts": 1,
    }


def wait_ready(base_url: str, sup: Supervisor, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = sup.first_exited()
        if dead is not None:
            raise SystemExit(f"{dead.name} exited:\n{dead.log_tail(40)}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{base_url}/readyz not ready after {timeout:.0f} s")


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1] if len(xs) > 1 else xs[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=4, help="`daik worker` processes (concurrency 1 each)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    args = ap.parse_args(argv)

    db_url = migrate.recreate_database(PG_SERVER_URL, DATABASE, migrated=True)
    broker_url = f"{REDIS_URL}/{REDIS_DB}"
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    token = secrets.token_urlsafe(24)
    engine = make_engine(db_url)
    db = make_sessionmaker(engine)
    with tempfile.TemporaryDirectory(prefix="daik-load-") as tmp:
        root = Path(tmp)
        generate_dataset(root / "data" / "bench" / "train", images=2, size=64, seed=0, progress=False)
        generate_dataset(root / "data" / "bench" / "val", images=1, size=64, seed=1, progress=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAIK_")}
        env |= {
            "DAIK_HOME": str(root / "home"),
            "DAIK_DATABASE_URL": db_url,
            "DAIK_BROKER_URL": broker_url,
            "DAIK_DATA_ROOT": str(root / "data"),
            "DAIK_ARTIFACT_ROOT": str(root / "artifacts"),
            "DAIK_BOOTSTRAP_TOKEN": token,
            "DAIK_TRAINER_COMMAND": f"{sys.executable} {FAKE_TRAINER}",
            "DAIK_FAKE_TRAINER": "--epochs 1 --iters 2",
            "DAIK_TRAINER_ENV": "DAIK_FAKE_TRAINER",
            "DAIK_HEARTBEAT_SECONDS": "2",
            "OMP_NUM_THREADS": "1",
        }
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        sup = Supervisor(env, grace=15)
        logs = root / "logs"
        logs.mkdir()
        sup.start("api", daik_command("api", "--host", "127.0.0.1", "--port", str(port)), logs / "api.log")
        for w in range(args.workers):
            sup.start(
                f"worker-{w}", daik_command("worker", "--loglevel", "warning"), logs / f"worker-{w}.log"
            )
        sup.start("beat", daik_command("beat", "--loglevel", "warning"), logs / "beat.log")
        try:
            wait_ready(base_url, sup)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
                dataset = {
                    "name": "bench",
                    "train": "bench/train",
                    "val": "bench/val",
                    "classes": list(SYNTH_CLASSES),
                }
                client.post("/datasets", json=dataset).raise_for_status()
                t0 = time.monotonic()
                for i in range(args.jobs):
                    client.post("/jobs", json=job_body(i)).raise_for_status()
                submitted_s = time.monotonic() - t0
                rate = args.jobs / submitted_s
                print(f"submitted {args.jobs} jobs in {submitted_s:.1f} s ({rate:.0f} jobs/s)")
                terminal = ("succeeded", "failed", "cancelled")
                last_report = 0.0
                while True:
                    with db() as s:
                        done = s.scalar(select(func.count()).select_from(Job).where(Job.status.in_(terminal)))
                    elapsed = time.monotonic() - t0
                    if done == args.jobs:
                        break
                    if elapsed > args.timeout:
                        raise SystemExit(f"only {done} of {args.jobs} jobs terminal after {elapsed:.0f} s")
                    if elapsed - last_report >= 10:
                        print(f"  {elapsed:6.0f} s: {done} / {args.jobs} jobs done", flush=True)
                        last_report = elapsed
                    time.sleep(1.0)
                total_s = time.monotonic() - t0
            with db() as s:
                statuses = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
                attempts = dict(
                    s.execute(select(Attempt.number, func.count()).group_by(Attempt.number)).all()
                )
                twice = s.scalar(
                    select(func.count()).select_from(
                        select(JobEvent.job_id)
                        .where(JobEvent.type == "status", JobEvent.data["status"].as_string() == "succeeded")
                        .group_by(JobEvent.job_id)
                        .having(func.count() > 1)
                        .subquery()
                    )
                )
                rows = s.execute(select(Job.created_at, Job.started_at, Job.finished_at)).all()
            waits = [(st - cr).total_seconds() for cr, st, _ in rows if st is not None]
            runs = [(fi - st).total_seconds() for _, st, fi in rows if st is not None and fi is not None]
            print(
                f"\n{args.jobs} jobs, {args.workers} worker processes, fake trainer: {total_s:.1f} s from "
                f"the first submission to the last terminal job ({args.jobs / total_s:.2f} jobs/s)"
            )
            print(f"statuses: {statuses}; attempts by number: {attempts}; jobs that succeeded twice: {twice}")
            print(
                f"queue latency (started - created): p50 {pct(waits, 50):.1f} s, p95 {pct(waits, 95):.1f} s, "
                f"max {max(waits):.1f} s; run time per job: p50 {pct(runs, 50):.2f} s, max {max(runs):.2f} s"
            )
            ok = statuses == {"succeeded": args.jobs} and set(attempts) == {1} and twice == 0
            print("none lost, none run twice" if ok else "PROBLEM: some jobs were lost or ran twice")
            return 0 if ok else 1
        finally:
            sup.stop()
            broker.flushdb()
            broker.close()
            engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
