"""The user's flow through the HTTP API, shared by the end-to-end tests (PostgreSQL + Redis, and ``daik up``
on the embedded defaults): register a tiny synthetic dataset, submit a train job, follow its Server-Sent
Events to the end, then read the job and its metrics. Written against the contracts of the service
(``shared/SERVICE.md`` and the issue), so it checks what a client may rely on."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from httpx_sse import connect_sse

from daik_core.data.synth import SYNTH_CLASSES, generate_dataset
from service.local import Supervisor

EPOCHS = 2
LOSS_KEYS = ("loss_cls", "loss_box", "loss_dfl", "loss_angle", "loss")
EPOCH_KEYS = (*LOSS_KEYS, "lr", "images_per_s")
EVAL_KEYS = ("map50", "map50_95")
EVENT_TYPES = {"status", "progress", "epoch", "eval", "checkpoint"}
TERMINAL = {"succeeded", "failed", "cancelled"}
READY_TIMEOUT = 120.0
JOB_TIMEOUT = 300.0  # between two events of the stream (a slow CPU, a worker that imports torch)


@dataclass
class Event:
    id: int
    type: str
    data: dict[str, Any]


def wait_ready(base_url: str, sup: Supervisor, timeout: float = READY_TIMEOUT) -> None:
    """Poll ``/readyz`` until it answers 200; fail at once, with the logs, when a child has exited."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        dead = sup.first_exited()
        if dead is not None:
            raise AssertionError(f"{dead.name} exited with {dead.proc.returncode}:\n{dead.log_tail(60)}")
        try:
            r = httpx.get(f"{base_url}/readyz", timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:300]}"
        except httpx.HTTPError as err:
            last = repr(err)
        time.sleep(0.25)
    raise AssertionError(f"{base_url}/readyz not ready after {timeout} s (last: {last})")


def make_dataset(data_root: Path, name: str) -> dict[str, Any]:
    """8 train and 4 val images of 128 px under ``data_root/name``; returns the POST /datasets body."""
    generate_dataset(
        data_root / name / "train", images=8, size=128, seed=0, difficulty="easy", progress=False
    )
    generate_dataset(data_root / name / "val", images=4, size=128, seed=1, difficulty="easy", progress=False)
    return {
        "name": name,
        "train": f"{name}/train",
        "val": f"{name}/val",
        "classes": list(SYNTH_CLASSES),
        "description": "end-to-end test: 8 + 4 synthetic images of 128 px",
    }


def job_body(name: str, dataset: str) -> dict[str, Any]:
    """A 2-epoch n-preset train job on a registered dataset (val and classes come from the registry)."""
    return {
        "name": name,
        "kind": "train",
        "dataset": {"train": dataset},
        "student": {"preset": "n"},
        "hparams": {
            "epochs": EPOCHS,
            "batch": 4,
            "imgsz": 128,
            "workers": 0,
            "eval_interval": 1,
            "device": "cpu",
            "seed": 0,
        },
        "resources": {"gpus": 0},
        "max_restarts": 0,
    }


def follow_events(client: httpx.Client, job_id: str) -> list[Event]:
    """Read ``GET /jobs/{id}/events`` until the server ends the stream (after the terminal status)."""
    events: list[Event] = []
    timeout = httpx.Timeout(10.0, read=JOB_TIMEOUT)
    with connect_sse(client, "GET", f"/jobs/{job_id}/events", timeout=timeout) as source:
        assert source.response.status_code == 200, source.response.read()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            if not sse.data:  # a `retry:` field alone dispatches no event (the SSE spec)
                continue
            events.append(Event(id=int(sse.id), type=sse.event, data=json.loads(sse.data)))
    return events


def check_events(events: list[Event]) -> None:
    assert events, "the stream ended without an event"
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), f"event ids not strictly increasing: {ids}"
    assert {e.type for e in events} <= EVENT_TYPES, {e.type for e in events}
    last = events[-1]
    assert last.type == "status" and last.data["status"] == "succeeded", (last, events[-5:])
    statuses = [e.data["status"] for e in events if e.type == "status"]
    assert "running" in statuses and not TERMINAL & set(statuses[:-1]), statuses
    for e in events:
        if e.type == "status":
            assert set(e.data) >= {"status", "attempt", "error"}, e
        elif e.type == "progress":
            assert set(e.data) >= {"epoch", "iteration", "iters_per_epoch", "progress"}, e
            assert 0.0 <= e.data["progress"] <= 1.0
    epochs = [e.data for e in events if e.type == "epoch"]
    assert [d["epoch"] for d in epochs] == list(range(1, EPOCHS + 1)), epochs
    assert all(d["total_epochs"] == EPOCHS for d in epochs)
    assert [d["step"] for d in epochs] == sorted({d["step"] for d in epochs})
    assert epochs[-1]["progress"] == 1.0
    assert set(LOSS_KEYS) <= set(epochs[-1]["metrics"]), epochs[-1]["metrics"]
    progress = [e.data["progress"] for e in events if e.type in ("progress", "epoch")]
    assert progress == sorted(progress), f"progress went backwards: {progress}"


def check_metrics(client: httpx.Client, job_id: str) -> None:
    keys = ",".join(EPOCH_KEYS + EVAL_KEYS)
    r = client.get(f"/jobs/{job_id}/metrics", params={"keys": keys})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["job_id"] == job_id
    series = body["series"]
    for key in EPOCH_KEYS:
        points = series[key]
        assert [p["epoch"] for p in points] == list(range(1, EPOCHS + 1)), (key, points)
        assert [p["step"] for p in points] == sorted({p["step"] for p in points}), (key, points)
        assert all(p["value"] is not None and math.isfinite(p["value"]) for p in points), (key, points)
    assert all(p["value"] > 0 for p in series["loss"]), series["loss"]
    for key in EVAL_KEYS:
        points = series[key]
        assert len(points) == EPOCHS, (key, points)  # evaluated after every epoch
        assert all(0.0 <= p["value"] <= 1.0 for p in points), (key, points)
    pc = body["per_class_ap"]
    assert pc is not None
    assert pc["epoch"] in range(1, EPOCHS + 1)
    assert pc["ap50"] and set(pc["ap50"]) <= set(SYNTH_CLASSES), pc
    assert set(pc["ap50_95"]) == set(pc["ap50"])
    assert 0.0 <= pc["map50"] <= 1.0 and 0.0 <= pc["map50_95"] <= pc["map50"] + 1e-9

    # from_step drops the earlier points
    last_step = series["loss"][-1]["step"]
    late = client.get(f"/jobs/{job_id}/metrics", params={"keys": "loss", "from_step": last_step}).json()
    assert [p["step"] for p in late["series"]["loss"]] == [last_step]


def run_train_flow(
    base_url: str, token: str, data_root: Path, artifact_root: Path, name: str
) -> dict[str, Any]:
    """The whole flow; returns the final job JSON."""
    dataset = make_dataset(data_root, name)
    # the API is closed without a token, and says so as problem+json
    r = httpx.get(f"{base_url}/jobs", timeout=10)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        r = client.post("/datasets", json=dataset)
        assert r.status_code == 201, r.text

        r = client.post("/jobs", json=job_body(f"{name}-n", name))
        assert r.status_code == 201, r.text
        job = r.json()
        job_id = job["id"]
        assert r.headers["location"] == f"/jobs/{job_id}"
        assert job["status"] == "queued" and job["kind"] == "train" and job["attempt"] == 0
        assert job["spec"]["dataset"]["val"], "the job spec was not resolved from the dataset registry"

        events = follow_events(client, job_id)
        check_events(events)

        r = client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        assert job["status"] == "succeeded", job
        assert job["attempt"] == 1 and job["restarts"] == 0 and job["error"] is None, job
        assert job["epoch"] == job["total_epochs"] == EPOCHS and job["progress"] == 1.0, job
        assert job["final_map50"] is not None and 0.0 <= job["final_map50"] <= 1.0, job
        assert job["final_map50_95"] is not None and job["final_map50_95"] <= job["final_map50"] + 1e-9
        assert set(LOSS_KEYS) <= set(job["latest_metrics"]), job["latest_metrics"]
        assert job["started_at"] and job["finished_at"] and job["finished_at"] >= job["started_at"]

        check_metrics(client, job_id)

        r = client.get("/jobs", params={"status": "succeeded", "name": f"{name}-n"})
        assert r.status_code == 200, r.text
        assert [j["id"] for j in r.json()["items"]] == [job_id]

    out = artifact_root / "jobs" / job_id
    assert out.is_dir() and any(out.rglob("*.pt")), f"no checkpoint under {out}"
    return job


def processes_of(home: Path) -> list[psutil.Process]:
    """Live processes started with ``DAIK_HOME=home`` (every process of one test has its own home), to
    prove that nothing was left running."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("DAIK_HOME") == str(home) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


KD_KEYS = ("loss_ad", "loss_ld", "loss_cls_kd")


def run_distill_flow(base_url: str, token: str, name: str, teacher_id: str) -> dict[str, Any]:
    """A ``kind: distill`` job whose teacher is the succeeded job ``teacher_id`` (the service resolves it
    to that job's best checkpoint), with AD, AAL, SAD, LD and class KD on; it must succeed with its KD
    terms in the stored metrics. Returns the final job JSON."""
    headers = {"Authorization": f"Bearer {token}"}
    body = job_body(f"{name}-distill", name)
    body["kind"] = "distill"
    body["teacher"] = {"job": teacher_id}
    body["hparams"]["epochs"] = 1
    body["losses"] = {t: {"enabled": True} for t in ("ad", "aal", "sad", "ld", "cls_kd")}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        r = client.post("/jobs", json=body)
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["kind"] == "distill" and job["spec"]["teacher"]["checkpoint"].endswith(".pt"), job["spec"]
        events = follow_events(client, job["id"])
        assert events[-1].type == "status" and events[-1].data["status"] == "succeeded", events[-3:]
        job = client.get(f"/jobs/{job['id']}").json()
        assert job["final_map50"] is not None, job
        series = client.get(f"/jobs/{job['id']}/metrics", params={"keys": ",".join(KD_KEYS)}).json()["series"]
        for key in KD_KEYS:
            assert [p["epoch"] for p in series[key]] == [1], (key, series)
            assert series[key][0]["value"] is not None and series[key][0]["value"] >= 0.0, (key, series)
    return job
