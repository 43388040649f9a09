"""Benchmark: latency of the HTTP API under concurrent clients, on PostgreSQL, against fixed targets.

It starts ``daik api`` itself (a real process on loopback) on its own PostgreSQL database ``daik_bench``
(dropped, created and migrated) and Redis db 14 (the broker, flushed at the end: no worker runs, so the
submitted jobs stay queued). One job is given 300 epochs of history directly in the database (10 metric
keys per epoch and a per-class evaluation each epoch, as a long training leaves it); then ``--clients``
concurrent clients (one ``httpx.AsyncClient`` pool, one connection each) loop for ``--duration`` seconds
over the three routes a dashboard and a submitter hit most:

- ``POST /jobs``                 a new train job (validated, committed, sent to the broker)
- ``GET /jobs/{id}``             the long job's summary (latest metrics included)
- ``GET /jobs/{id}/metrics``     every series of the long job (3,000 points) and its per-class AP

and prints p50 / p99 latency and requests/s per route next to the targets (p99 < 50 ms for POST /jobs,
< 30 ms for the metrics read). A first pass with one client for 5 s gives the time of a request alone,
without queueing: with N clients in a closed loop, latency ~ N / throughput. The load generator runs on
the same machine, in one Python process: on a small machine it competes with the server for the cores, so
the numbers are an upper bound of the server's own latency.

    .venv/bin/python bench/bench_api_latency.py [--clients 50] [--duration 20] [--epochs 300]
        [--api-workers 1] [--rate 200]

``--api-workers N`` runs ``daik api --workers N``. ``--rate R`` adds an open-loop pass: the same clients
send R requests/s in all on a fixed schedule, whatever the answers' latency (latency counts from the
scheduled time), which shows the latency at a load the server can serve rather than the queueing of a
closed loop that always offers more than capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import insert, update

from daik_core.data.synth import SYNTH_CLASSES, generate_dataset
from service import migrate
from service.db.base import utcnow
from service.db.models import EvalResult, Job, Metric
from service.db.session import make_engine
from service.local import Supervisor, daik_command

PG_SERVER_URL = os.environ.get("DAIK_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DAIK_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
DATABASE = "daik_bench"
REDIS_DB = 14
EPOCH_KEYS = ("loss_cls", "loss_box", "loss_dfl", "loss_angle", "loss", "lr", "images_per_s", "epoch_time_s")
EVAL_KEYS = ("map50", "map50_95")
STEPS_PER_EPOCH = 100
TARGET_P99_MS = {"POST /jobs": 50.0, "GET /jobs/{id}/metrics": 30.0}


@dataclass
class RouteStats:
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_database() -> str:
    return migrate.recreate_database(PG_SERVER_URL, DATABASE)


def job_body(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "train",
        "dataset": {"train": "bench"},
        "student": {"preset": "n"},
        "hparams": {"epochs": 300, "batch": 16, "imgsz": 512, "workers": 2},
        "resources": {"gpus": 0},
        "max_restarts": 1,
    }


def fill_history(db_url: str, job_id: str, epochs: int) -> int:
    """Give ``job_id`` the history of a finished ``epochs``-epoch training; returns the metric rows."""
    jid = uuid.UUID(job_id)
    rows: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    for e in range(1, epochs + 1):
        step = e * STEPS_PER_EPOCH
        decay = 1.0 / (1.0 + 0.02 * e)
        values = {
            "loss_cls": 1.2 * decay,
            "loss_box": 0.9 * decay,
            "loss_dfl": 0.8 * decay,
            "loss_angle": 0.3 * decay,
            "loss": 3.2 * decay,
            "lr": 8e-4 * decay,
            "images_per_s": 250.0,
            "epoch_time_s": 60.0,
        }
        map50 = 0.8 * (1.0 - decay)
        values |= {"map50": map50, "map50_95": 0.55 * map50}
        rows += [
            {"job_id": jid, "key": k, "step": step, "value": v, "epoch": e, "attempt": 1}
            for k, v in values.items()
        ]
        per_class = {
            "ap50": {c: map50 for c in SYNTH_CLASSES},
            "ap50_95": {c: 0.55 * map50 for c in SYNTH_CLASSES},
        }
        evals.append(
            {
                "job_id": jid,
                "attempt": 1,
                "epoch": e,
                "step": step,
                "map50": map50,
                "map50_95": 0.55 * map50,
                "per_class": per_class,
            }
        )
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(Metric), rows)
            conn.execute(insert(EvalResult), evals)
            last = evals[-1]
            conn.execute(
                update(Job)
                .where(Job.id == jid)
                .values(
                    status="succeeded",
                    attempt=1,
                    epoch=epochs,
                    total_epochs=epochs,
                    step=epochs * STEPS_PER_EPOCH,
                    progress=1.0,
                    final_map50=last["map50"],
                    final_map50_95=last["map50_95"],
                    started_at=utcnow(),
                    finished_at=utcnow(),
                )
            )
    finally:
        engine.dispose()
    return len(rows)


ROUTES = ("POST /jobs", "GET /jobs/{id}", "GET /jobs/{id}/metrics")


async def one_request(
    client: httpx.AsyncClient, job_id: str, route: str, n: int, t0: float, stats: dict[str, RouteStats]
) -> None:
    """One request of ``route``; its latency counted from ``t0`` (the open loop's scheduled send time)."""
    try:
        if route == "POST /jobs":
            r = await client.post("/jobs", json=job_body(f"bench-{n}"))
            ok = r.status_code == 201
        elif route == "GET /jobs/{id}":
            r = await client.get(f"/jobs/{job_id}")
            ok = r.status_code == 200
        else:
            r = await client.get(f"/jobs/{job_id}/metrics")
            ok = r.status_code == 200
        await r.aread()
    except httpx.HTTPError as err:
        stats[route].errors[type(err).__name__] += 1
        return
    ms = (time.perf_counter() - t0) * 1000.0
    if ok:
        stats[route].latencies_ms.append(ms)
    else:
        stats[route].errors[str(r.status_code)] += 1


async def client_loop(
    client: httpx.AsyncClient, job_id: str, deadline: float, offset: int, stats: dict[str, RouteStats]
) -> None:
    """One closed-loop client: the three routes in turn (starting at ``offset``, so the clients spread
    over them), each request sent when the previous one has answered."""
    n = offset
    while time.perf_counter() < deadline:
        route = ROUTES[n % 3]
        n += 1
        await one_request(client, job_id, route, n, time.perf_counter(), stats)


async def open_client(
    client: httpx.AsyncClient,
    job_id: str,
    start: float,
    deadline: float,
    interval: float,
    offset: int,
    stats: dict[str, RouteStats],
) -> None:
    """One open-loop client: a request every ``interval`` seconds on a fixed schedule, whether or not the
    earlier ones have answered; latency counts from the scheduled time (no coordinated omission)."""
    tasks = []
    n = offset
    at = start
    while at < deadline:
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one_request(client, job_id, ROUTES[n % 3], n, at, stats)))
        n += 1
        at += interval
    await asyncio.gather(*tasks)


async def load(
    base_url: str, token: str, job_id: str, clients: int, duration: float, rate: float | None = None
) -> dict[str, RouteStats]:
    """Closed loop (``rate`` None: each client sends its next request when the last one answered) or open
    loop (``rate`` requests/s in all, spread evenly over the clients, on a fixed schedule)."""
    stats: dict[str, RouteStats] = defaultdict(RouteStats)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30) as client:
        for _ in range(2):  # warm-up: connections, caches, the first compiled queries
            for route in ("/jobs", f"/jobs/{job_id}", f"/jobs/{job_id}/metrics"):
                (await client.get(route)).raise_for_status()
        start = time.perf_counter()
        deadline = start + duration
        if rate is None:
            await asyncio.gather(*(client_loop(client, job_id, deadline, i, stats) for i in range(clients)))
        else:
            interval = clients / rate
            starts = [start + interval * i / clients for i in range(clients)]
            await asyncio.gather(
                *(
                    open_client(client, job_id, starts[i], deadline, interval, i, stats)
                    for i in range(clients)
                )
            )
    return stats


def report(
    stats: dict[str, RouteStats],
    duration: float,
    clients: int,
    targets: bool = True,
    label: str = "closed loop",
) -> bool:
    """Print one line per route; True when every target is met (``targets``: compare with them)."""
    print(f"\n{clients} concurrent client{'s' if clients > 1 else ''}, {duration:.0f} s, {label}")
    print(f"{'route':<26}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}   target p99   errors")
    all_met = True
    for route in ("POST /jobs", "GET /jobs/{id}", "GET /jobs/{id}/metrics"):
        s = stats[route]
        lat = sorted(s.latencies_ms)
        if len(lat) >= 2:
            q = statistics.quantiles(lat, n=100, method="inclusive")
            p50, p99 = q[49], q[98]
        else:
            p50 = p99 = float("nan")
        target = TARGET_P99_MS.get(route) if targets else None
        verdict = ""
        if target is not None:
            met = p99 < target
            all_met &= met
            verdict = f"< {target:.0f} ms {'met' if met else 'MISSED'}"
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(s.errors.items())) or "-"
        rate = len(lat) / duration
        print(f"{route:<26}{len(lat):>9}{rate:>8.1f}{p50:>9.1f}{p99:>9.1f}   {verdict:<12} {errors}")
    return all_met


# --------------------------------------------------------------------------------------- wrk (C) clients

WRK_SCRIPT = """
wrk.method = %(method)s
wrk.path = %(path)s
wrk.body = %(body)s
wrk.headers["Authorization"] = %(auth)s
wrk.headers["Content-Type"] = "application/json"
function delay() return %(think_ms)d end
function done(summary, latency, requests)
  io.write(string.format('DAIK {"requests": %%d, "p50_us": %%d, "p99_us": %%d, "status_errors": %%d, '
    .. '"socket_errors": %%d}\\n', summary.requests, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for this ASCII text


def wrk_pass(
    base_url: str, token: str, job_id: str, clients: int, duration: float, think_ms: int, tmp: Path
) -> dict[str, dict[str, float]]:
    """``clients`` connections split over the three routes, one ``wrk`` process (C, one thread) per route,
    all three at once; each connection waits ``think_ms`` after an answer before its next request (a
    dashboard or submitter with a think time; 0 = closed loop). wrk costs a few microseconds of CPU per
    request, so the server keeps the cores that httpx takes in the Python passes."""
    requests = {
        "POST /jobs": ("POST", "/jobs", json.dumps(job_body("bench-wrk"))),
        "GET /jobs/{id}": ("GET", f"/jobs/{job_id}", ""),
        "GET /jobs/{id}/metrics": ("GET", f"/jobs/{job_id}/metrics", ""),
    }
    procs = {}
    for i, (route, (method, path, body)) in enumerate(requests.items()):
        script = tmp / f"wrk-{i}.lua"
        script.write_text(
            WRK_SCRIPT
            % {
                "method": lua_string(method),
                "path": lua_string(path),
                "body": lua_string(body),
                "auth": lua_string(f"Bearer {token}"),
                "think_ms": think_ms,
            }
        )
        conns = clients // 3 + (1 if i < clients % 3 else 0)
        cmd = [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{duration:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base_url,
        ]
        procs[route] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results: dict[str, dict[str, float]] = {}
    for route, proc in procs.items():
        out, _ = proc.communicate()
        line = next((ln for ln in out.splitlines() if ln.startswith("DAIK ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed for {route}:\n{out}")
        results[route] = json.loads(line[5:])
    return results


def report_wrk(results: dict[str, dict[str, float]], duration: float, clients: int, think_ms: int) -> bool:
    label = "closed loop" if think_ms == 0 else f"each connection waits {think_ms} ms between requests"
    print(f"\n{clients} concurrent connections (wrk, split over the routes), {duration:.0f} s, {label}")
    print(f"{'route':<26}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}   target p99   errors")
    all_met = True
    for route, r in results.items():
        target = TARGET_P99_MS.get(route)
        p50, p99 = r["p50_us"] / 1000.0, r["p99_us"] / 1000.0
        verdict = ""
        if target is not None:
            met = p99 < target
            all_met &= met
            verdict = f"< {target:.0f} ms {'met' if met else 'MISSED'}"
        errors = f"status {r['status_errors']}, socket {r['socket_errors']}"
        rps = r["requests"] / duration
        print(f"{route:<26}{int(r['requests']):>9}{rps:>8.1f}{p50:>9.1f}{p99:>9.1f}   {verdict:<12} {errors}")
        all_met &= r["status_errors"] == 0 and r["socket_errors"] == 0
    return all_met


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    ap.add_argument("--epochs", type=int, default=300, help="epochs of history of the read job")
    ap.add_argument("--api-workers", type=int, default=1, help="`daik api --workers N` (default 1)")
    ap.add_argument(
        "--rate",
        type=float,
        default=None,
        help="also run an open loop: this many requests/s in all, spread over the clients",
    )
    ap.add_argument(
        "--wrk-think-ms",
        type=int,
        nargs="*",
        default=None,
        help="also run wrk passes (needs the `wrk` binary), one per think time in ms (0 = closed loop)",
    )
    ap.add_argument(
        "--read-cache-entries",
        type=int,
        default=256,
        help="the API's cache of computed job reads (DAIK_READ_CACHE_ENTRIES; 0: off, as before it existed)",
    )
    args = ap.parse_args(argv)
    if args.wrk_think_ms and shutil.which("wrk") is None:
        ap.error("--wrk-think-ms needs the `wrk` load generator (Debian: apt-get install wrk)")

    db_url = fresh_database()
    broker_url = f"{REDIS_URL}/{REDIS_DB}"
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="daik-bench-") as tmp:
        root = Path(tmp)
        generate_dataset(root / "data" / "bench" / "train", images=4, size=64, seed=0, progress=False)
        generate_dataset(root / "data" / "bench" / "val", images=2, size=64, seed=1, progress=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAIK_")}
        env |= {
            "DAIK_HOME": str(root / "home"),
            "DAIK_DATABASE_URL": db_url,
            "DAIK_BROKER_URL": broker_url,
            "DAIK_DATA_ROOT": str(root / "data"),
            "DAIK_ARTIFACT_ROOT": str(root / "artifacts"),
            "DAIK_BOOTSTRAP_TOKEN": token,
            "DAIK_READ_CACHE_ENTRIES": str(args.read_cache_entries),
        }
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        sup = Supervisor(env, grace=10)
        api = sup.start(
            "api",
            daik_command(
                "api", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.api_workers)
            ),
            root / "api.log",
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                if api.exited():
                    print(f"daik api exited with {api.proc.returncode}:\n{api.log_tail(40)}", file=sys.stderr)
                    return 1
                try:
                    if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    print(f"daik api not ready after 120 s:\n{api.log_tail(40)}", file=sys.stderr)
                    return 1
                time.sleep(0.25)

            headers = {"Authorization": f"Bearer {token}"}
            dataset = {
                "name": "bench",
                "train": "bench/train",
                "val": "bench/val",
                "classes": list(SYNTH_CLASSES),
            }
            httpx.post(f"{base_url}/datasets", json=dataset, headers=headers, timeout=30).raise_for_status()
            r = httpx.post(f"{base_url}/jobs", json=job_body("bench-history"), headers=headers, timeout=30)
            r.raise_for_status()
            job_id = r.json()["id"]
            n_rows = fill_history(db_url, job_id, args.epochs)
            print(
                f"daik api on {base_url} (PostgreSQL {DATABASE}, Redis db {REDIS_DB}); job {job_id}: ", end=""
            )
            print(f"{args.epochs} epochs, {n_rows} metric rows, {args.epochs} evaluations")

            # first one client alone: the time a request takes without queueing behind the others
            solo = min(5.0, args.duration)
            report(asyncio.run(load(base_url, token, job_id, 1, solo)), solo, 1, targets=False)
            stats = asyncio.run(load(base_url, token, job_id, args.clients, args.duration))
            all_met = report(stats, args.duration, args.clients)
            print("\nclosed loop: all targets met" if all_met else "\nclosed loop: some targets MISSED")
            if args.rate is not None:
                stats = asyncio.run(load(base_url, token, job_id, args.clients, args.duration, args.rate))
                label = f"open loop at {args.rate:g} requests/s offered"
                met = report(stats, args.duration, args.clients, label=label)
                print(f"\nopen loop: {'all targets met' if met else 'some targets MISSED'}")
            for think_ms in args.wrk_think_ms or []:
                results = wrk_pass(base_url, token, job_id, args.clients, args.duration, think_ms, root)
                met = report_wrk(results, args.duration, args.clients, think_ms)
                print(f"\nwrk, think {think_ms} ms: {'all targets met' if met else 'some targets MISSED'}")
            return 0
        finally:
            sup.stop()
            broker.flushdb()
            broker.close()


if __name__ == "__main__":
    sys.exit(main())
