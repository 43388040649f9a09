"""The client half of the README's main command (``bash scripts/demo.sh`` runs it after starting ``daik up``).

Through the HTTP API only: registers the synthetic dataset that demo.sh generated under the service's data
root, submits a teacher job (preset s) and a plain student job (preset n), then, once the teacher has
succeeded, a DAIK-distilled student (preset n, ``kind: distill`` with ``teacher: {job: <teacher id>}`` and
AD, AAL, SAD, LD and class KD on) with the plain student's schedule; shows the progress live (one bar per
job: epoch, loss, mAP50 after each evaluation), prints the final mAP50 of the three side by side, and
leaves the service running with its URL, the admin token and how to stop it.

    .venv/bin/python scripts/demo.py --url http://127.0.0.1:8765 --home .daik-demo [--epochs-teacher 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

TERMINAL = {"succeeded", "failed", "cancelled"}
READY_TIMEOUT = 300.0  # a first start imports torch in each worker


def wait_for_service(url: str, home: Path) -> str:
    """Wait until ``daik up`` has written the token and ``/readyz`` answers; returns the token. Fails with
    the end of ``up.log`` when ``daik up`` has exited."""
    pid_file, log = home / "up.pid", home / "up.log"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if pid_file.exists() and not Path(f"/proc/{pid_file.read_text().strip()}").exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
            raise SystemExit(f"demo: `daik up` is not running; the end of {log}:\n{tail}")
        token_file = home / "token"
        if token_file.exists():
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return token_file.read_text().strip()
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    raise SystemExit(f"demo: {url}/readyz did not answer within {READY_TIMEOUT:.0f} s (see {log})")


def register_dataset(client: httpx.Client, home: Path, name: str) -> None:
    """Register ``<home>/data/<name>/{train,val}`` (its classes: those `daik synth` wrote)."""
    classes = (home / "data" / name / "train" / "classes.txt").read_text(encoding="utf-8").split()
    body = {
        "name": name,
        "train": f"{name}/train",
        "val": f"{name}/val",
        "classes": classes,
        "description": "synthetic aerial scenes of `daik synth` (scripts/demo.sh)",
    }
    r = client.post("/datasets", json=body)
    if r.status_code == 409:  # registered by an earlier run
        return
    r.raise_for_status()


def job_body(name: str, preset: str, dataset: str, epochs: int, imgsz: int, batch: int) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "train",
        "dataset": {"train": dataset},
        "student": {"preset": preset},
        "hparams": {
            "epochs": epochs,
            "batch": batch,
            "imgsz": imgsz,
            "lr": 0.001,
            "warmup_epochs": 1,
            "eval_interval": epochs,  # evaluate once, at the end (the last epoch is always evaluated)
            "workers": 0,
            "seed": 0,
        },
        "resources": {"gpus": 0},
        "max_restarts": 1,
    }


def submit(client: httpx.Client, url: str, label: str, body: dict[str, Any]) -> str:
    r = client.post("/jobs", json=body)
    r.raise_for_status()
    job_id = str(r.json()["id"])
    print(f"submitted {label}: {url}/jobs/{job_id}")
    return job_id


def follow(client: httpx.Client, jobs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One bar per job (label -> id), refreshed every second from ``GET /jobs/{id}`` until all are done."""
    bars = {
        label: tqdm(total=100, position=i, bar_format="{desc} |{bar:24}| {percentage:3.0f}%{postfix}")
        for i, label in enumerate(jobs)
    }
    final: dict[str, dict[str, Any]] = {}
    try:
        while len(final) < len(jobs):
            for label, job_id in jobs.items():
                if label in final:
                    continue
                job = client.get(f"/jobs/{job_id}").json()
                bar = bars[label]
                bar.n = round(100 * float(job["progress"] or 0.0))
                metrics = job.get("latest_metrics") or {}
                total = job["total_epochs"] or "?"
                # job["epoch"] counts finished epochs; a running job is in the next one
                epoch = job["epoch"] + 1 if job["status"] == "running" else job["epoch"]
                if isinstance(total, int):
                    epoch = min(epoch, total)
                bar.set_description_str(
                    f"{label:<18} {job['status']:<10} epoch {epoch}/{total}", refresh=False
                )
                post = [f"loss {metrics['loss']:.3f}"] if metrics.get("loss") is not None else []
                post += [f"mAP50 {metrics['map50']:.3f}"] if metrics.get("map50") is not None else []
                bar.set_postfix_str(", ".join(post), refresh=False)
                bar.refresh()
                if job["status"] in TERMINAL:
                    final[label] = job
            time.sleep(1.0)
    finally:
        for bar in bars.values():
            bar.close()
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8765")
    ap.add_argument("--home", type=Path, required=True, help="DAIK_HOME of `daik up` (token, data root)")
    ap.add_argument("--dataset", default="demo", help="folder under <home>/data with train/ and val/")
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--epochs-teacher", type=int, default=8)
    ap.add_argument("--epochs-student", type=int, default=12)
    ap.add_argument("--started-at", type=float, default=None, help="epoch seconds when demo.sh started")
    args = ap.parse_args(argv)

    started_at = time.time() if args.started_at is None else args.started_at
    home = args.home.resolve()
    token = wait_for_service(args.url, home)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=args.url, headers=headers, timeout=30) as client:
        register_dataset(client, home, args.dataset)
        specs = {
            "teacher (s)": job_body(
                "demo-teacher-s", "s", args.dataset, args.epochs_teacher, args.imgsz, args.batch
            ),
            "student (n)": job_body(
                "demo-student-n", "n", args.dataset, args.epochs_student, args.imgsz, args.batch
            ),
        }
        jobs = {label: submit(client, args.url, label, body) for label, body in specs.items()}
        try:
            final = follow(client, jobs)
            teacher = final["teacher (s)"]
            if teacher["status"] == "succeeded":
                body = job_body(
                    "demo-student-n-daik", "n", args.dataset, args.epochs_student, args.imgsz, args.batch
                )
                body["kind"] = "distill"
                body["teacher"] = {"job": teacher["id"]}
                body["losses"] = {term: {"enabled": True} for term in ("ad", "aal", "sad", "ld", "cls_kd")}
                label = "student (n) + DAIK"
                final |= follow(client, {label: submit(client, args.url, label, body)})
        except KeyboardInterrupt:
            print(
                f"\ndemo: stopped watching; the jobs go on in the service ({args.url}/jobs)\n"
                f"  stop the service: kill -TERM {(home / 'up.pid').read_text().strip()}"
            )
            return 130

    print(f"\n{'job':<20}{'status':<11}{'mAP50':>7}{'mAP50:95':>10}   id")
    for label, job in final.items():
        m50 = "-" if job["final_map50"] is None else f"{job['final_map50']:.3f}"
        m5095 = "-" if job["final_map50_95"] is None else f"{job['final_map50_95']:.3f}"
        print(f"{label:<20}{job['status']:<11}{m50:>7}{m5095:>10}   {job['id']}")
        if job["error"]:
            print(f"  error: {job['error']}")
    minutes = (time.time() - started_at) / 60
    pid = (home / "up.pid").read_text().strip()
    print(
        f"\n{minutes:.1f} min in all. The service is still running:\n"
        f"  URL:   {args.url}   (API docs: {args.url}/docs)\n"
        f"  UI:    {args.url}/ui   (the dashboard: log in with the token)\n"
        f"  token: {token}   (in {home / 'token'})\n"
        f"  try:   curl -H 'Authorization: Bearer {token}' {args.url}/jobs\n"
        f"  stop:  kill -TERM {pid}   (logs: {home / 'logs'})"
    )
    return 0 if all(job["status"] == "succeeded" for job in final.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
