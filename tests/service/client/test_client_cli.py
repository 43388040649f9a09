"""``daik jobs ...`` and ``daik batches ...`` against a real API (uvicorn), worker (the fake trainer) and
PostgreSQL: submit, list, read, cancel, retry, logs, metrics, the run folder's files and their download;
errors as one line on stderr (a bad spec naming its field, an unknown server, a missing token); the file
routes refuse paths out of the job's folder.

Most commands run in this process through ``daik_core.cli.main`` (the ``daik`` entry point; stdout and
stderr captured); the error cases also run as ``python -m daik_core.cli`` subprocesses, where the exit
status and the absence of a traceback are what a user sees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from daik_core.cli import main
from tests.e2e.conftest import clean_env, free_port
from tests.service.client.conftest import Service
from tests.service.helpers import PNG_1X1
from tests.waiting import wait_for

JOB_TIMEOUT = 180.0  # the worker starts a fake trainer (a Python process) on a busy 2-core machine


def _spec(tmp_path: Path, name: str, **hparams: Any) -> Path:
    spec = {
        "name": name,
        "kind": "train",
        "dataset": {"train": "ds/train", "val": "ds/val", "classes": "plane,ship"},
        "student": {"preset": "n"},
        "hparams": {"epochs": 2, "batch": 2, "imgsz": 64, **hparams},
        "output": "runs/ignored",  # a `daik train` spec: the client leaves it out
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


class Cli:
    """``daik ARGS`` in this process, against the service, with its admin token."""

    def __init__(self, service: Service, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys = capsys
        monkeypatch.setenv("DAIK_SERVER", service.url)
        monkeypatch.setenv("DAIK_TOKEN", service.token)

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            rc = main(list(args))
        except SystemExit as exit_:
            code = exit_.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
                rc = 1
            else:
                rc = int(code or 0)
        out = self.capsys.readouterr()
        return rc, out.out, out.err

    def json(self, *args: str) -> Any:
        rc, out, err = self(*args, "--json")
        assert rc == 0, err
        return json.loads(out)


@pytest.fixture
def cli(service: Service, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(service, capsys, monkeypatch)


def _daik(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m daik_core.cli ARGS`` with only ``env`` of the DAIK_* settings."""
    return subprocess.run(
        [sys.executable, "-m", "daik_core.cli", *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _wait_status(cli: Cli, service: Service, job_id: str, wanted: set[str]) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        last.update(cli.json("jobs", "get", job_id))
        return dict(last) if last["status"] in wanted else None

    job: dict[str, Any] = wait_for(
        reached,
        JOB_TIMEOUT,
        interval=0.5,
        what=f"job {job_id} to reach {sorted(wanted)}",
        on_timeout=lambda: f"still {last['status']}\n{service.logs()}",
    )
    return job


def test_submit_list_cancel_finish_and_download(cli: Cli, service: Service, tmp_path: Path) -> None:
    # submitted by the installed entry point's module, as a user runs it
    proc = _daik(
        "jobs", "submit", str(_spec(tmp_path, "client-a")), "--json",
        DAIK_SERVER=service.url, DAIK_TOKEN=service.token,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    a = json.loads(proc.stdout)
    assert a["name"] == "client-a" and a["kind"] == "train" and a["status"] == "queued"
    assert a["spec"]["output"].endswith(f"jobs/{a['id']}")  # the service's folder, not runs/ignored
    assert "output (runs/ignored) is left out" in proc.stderr

    rc, out, _ = cli("jobs", "submit", str(_spec(tmp_path, "client-b")), "--name", "client-b2")
    assert rc == 0
    assert out.startswith("submitted job ") and "(client-b2, train): queued" in out
    b_id = out.split()[2]

    # A runs (the fake trainer waits at the gate before its last epoch); B waits behind it
    running = _wait_status(cli, service, a["id"], {"running"})
    assert running["attempt"] == 1
    listing = cli.json("jobs", "ls")
    by_id = {j["id"]: j for j in listing["items"]}
    assert set(by_id) == {a["id"], b_id}
    assert by_id[a["id"]]["status"] == "running" and by_id[b_id]["status"] == "queued"
    assert by_id[b_id]["name"] == "client-b2"
    assert listing["items"][0]["id"] == b_id  # newest first
    assert [j["id"] for j in cli.json("jobs", "ls", "--status", "queued")["items"]] == [b_id]
    rc, table, _ = cli("jobs", "ls")
    header, *rows = table.splitlines()
    assert header.split() == ["ID", "NAME", "KIND", "STATUS", "EPOCH", "mAP50", "CREATED"]
    assert [r.split()[:4] for r in rows] == [
        [b_id, "client-b2", "train", "queued"],
        [a["id"], "client-a", "train", "running"],
    ]

    rc, out, _ = cli("jobs", "cancel", b_id)
    assert rc == 0 and out.strip() == f"job {b_id}: cancelled"
    assert cli.json("jobs", "get", b_id)["status"] == "cancelled"
    rc, out, _ = cli("jobs", "get", b_id)
    assert {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()}["status"] == "cancelled"

    # the live log of the running attempt
    logs = cli.json("jobs", "logs", a["id"], "--tail", "5")
    assert logs["attempt"] == 1 and logs["path"] == "attempt-1/trainer.log"
    assert "fake trainer: start" in logs["lines"]
    assert len(logs["lines"]) <= 5

    service.open_gate()
    done = _wait_status(cli, service, a["id"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", f"{done}\n{service.logs()}"
    assert done["final_map50"] == pytest.approx(0.5)

    files = cli.json("jobs", "files", a["id"])
    kinds = {f["path"]: f["kind"] for f in files["items"]}
    assert files["truncated"] is False
    assert kinds["attempt-1/results.json"] == "results"
    assert kinds["attempt-1/metrics.jsonl"] == "metrics"
    assert kinds["attempt-1/results.png"] == "plot"
    assert kinds["attempt-1/trainer.log"] == "log"
    assert kinds["attempt-1/weights/best.pt"] == "checkpoint"
    sizes = {f["path"]: f["size"] for f in files["items"]}
    run = service.artifacts / "jobs" / a["id"] / "attempt-1"
    assert sizes["attempt-1/results.json"] == (run / "results.json").stat().st_size
    assert all(f["attempt"] == 1 for f in files["items"] if f["path"].startswith("attempt-1/"))

    out_dir = tmp_path / "dl"
    rc, out, err = cli("jobs", "download", a["id"], "--what", "results.json", "-o", str(out_dir))
    assert rc == 0, err
    results = json.loads((out_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["map50"] == 0.5 and results["epochs"] == 2
    assert out.startswith(str(out_dir / "results.json"))

    got = cli.json("jobs", "download", a["id"], "--what", "metrics.jsonl", "-o", str(out_dir))
    assert got == [
        {
            "path": str(out_dir / "metrics.jsonl"),
            "source": f"/jobs/{a['id']}/files/attempt-1/metrics.jsonl",
            "size": (run / "metrics.jsonl").stat().st_size,
        }
    ]
    lines = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and lines[1]["map50"] == pytest.approx(0.5)

    rc, _, err = cli("jobs", "download", a["id"], "--what", "plots", "-o", str(out_dir))
    assert rc == 0, err
    assert (out_dir / "results.png").read_bytes() == PNG_1X1
    rc, _, err = cli("jobs", "download", a["id"], "-o", str(out_dir))  # best.pt by default
    assert rc == 0, err
    assert (out_dir / "best.pt").read_bytes().startswith(b"best epoch=2")
    assert not list(out_dir.glob("*.part"))
    rc, _, err = cli("jobs", "download", a["id"], "--what", "onnx", "-o", str(out_dir))
    assert rc == 1
    assert (
        err.strip() == f"daik: error: job {a['id']} has no onnx (yet); its files: `daik jobs files {a['id']}`"
    )

    metrics = cli.json("jobs", "metrics", a["id"], "--keys", "map50")
    assert [p["value"] for p in metrics["series"]["map50"]] == pytest.approx([0.25, 0.5])
    rc, out, _ = cli("jobs", "metrics", a["id"])
    assert rc == 0 and any(r.split()[0] == "map50" and r.split()[4] == "0.5000" for r in out.splitlines())

    # retry: the cancelled job is queued again
    rc, out, _ = cli("jobs", "retry", b_id)
    assert rc == 0 and out.startswith(f"job {b_id}: queued")
    rc, _, err = cli("jobs", "retry", a["id"])  # succeeded: 409, one line
    assert (
        rc == 1
        and err == "daik: error: Illegal state transition (409): a succeeded job cannot become queued\n"
    )


def test_file_routes_stay_inside_the_job_folder(cli: Cli, service: Service, tmp_path: Path) -> None:
    job = cli.json("jobs", "submit", str(_spec(tmp_path, "client-files")))
    # files of an attempt of its own beside what the worker writes (attempt-1/), a symlink out of the job's
    # folder in it, and a symlink to the artifact root at the top
    folder = service.artifacts / "jobs" / job["id"]
    (folder / "attempt-9").mkdir(parents=True)
    (folder / "attempt-9" / "results.json").write_text('{"map50": 0.1}')
    (folder / "attempt-9" / "model.onnx").write_bytes(b"onnx")
    secret = service.artifacts / "secret.txt"
    secret.write_text("not yours")
    (folder / "attempt-9" / "escape.txt").symlink_to(secret)
    (folder / "link").symlink_to(service.artifacts)

    listed = [f["path"] for f in cli.json("jobs", "files", job["id"])["items"]]
    mine = [p for p in listed if not p.startswith("attempt-1/")]
    assert mine == ["attempt-9/model.onnx", "attempt-9/results.json"]  # no symlink, nothing outside
    got = cli.json("jobs", "download", job["id"], "--what", "onnx", "-o", str(tmp_path / "o"))
    assert [g["path"] for g in got] == [str(tmp_path / "o" / "model.onnx")]
    assert (tmp_path / "o" / "model.onnx").read_bytes() == b"onnx"

    headers = {"Authorization": f"Bearer {service.token}"}
    paths = httpx.get(f"{service.url}/openapi.json").json()["paths"]
    assert {"/jobs/{job_id}/files", "/jobs/{job_id}/files/{file_path}", "/jobs/{job_id}/logs"} <= set(paths)
    base = f"{service.url}/jobs/{job['id']}/files"
    assert httpx.get(f"{base}/attempt-9/results.json", headers=headers).json() == {"map50": 0.1}
    for bad in (
        "..%2F..%2Fsecret.txt",
        "attempt-9%2F..%2F..%2F..%2Fsecret.txt",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "attempt-9/escape.txt",
        "link/secret.txt",
        "attempt-9/missing.json",
        "attempt-9",
        "attempt-9%5C..%5Cresults.json",
        "attempt-9%2F.%2Fresults.json",
    ):
        r = httpx.get(f"{base}/{bad}", headers=headers)
        assert r.status_code == 404, (bad, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), bad
        assert "not yours" not in r.text and "root:" not in r.text
    assert httpx.get(f"{base}/attempt-9/results.json").status_code == 401  # a token is needed

    rc, _, err = cli("jobs", "download", job["id"], "--path", "../secret.txt", "-o", str(tmp_path / "o"))
    assert rc == 1 and err.strip().startswith(f"daik: error: job {job['id']} has no file '../secret.txt'")
    assert not (tmp_path / "o" / "secret.txt").exists()
    logs = cli.json("jobs", "logs", job["id"], "--attempt", "9")  # a folder without a log
    assert logs == {"job_id": job["id"], "attempt": 9, "path": None, "lines": []}
    rc, _, err = cli("jobs", "logs", job["id"], "--attempt", "50")
    assert rc == 1 and err == f"daik: error: Not Found (404): job {job['id']} has no attempt 50\n"


def test_errors_are_one_line_with_a_nonzero_exit(service: Service, tmp_path: Path) -> None:
    env = {"DAIK_SERVER": service.url, "DAIK_TOKEN": service.token}
    bad = _spec(tmp_path, "client-bad", epochs=0)
    proc = _daik("jobs", "submit", str(bad), **env)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = [x for x in proc.stderr.splitlines() if not x.startswith("daik: note:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("daik: error: Request validation failed (422): hparams.epochs: ")

    port = free_port()  # nothing listens there
    proc = _daik("jobs", "ls", "--server", f"http://127.0.0.1:{port}", DAIK_TOKEN=service.token)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(
        f"daik: error: cannot connect to the DAIK server at http://127.0.0.1:{port}"
    )

    proc = _daik("jobs", "ls", DAIK_SERVER=service.url)  # no token
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("daik: error: Unauthorized (401): missing bearer token")
    assert "set DAIK_TOKEN" in proc.stderr

    proc = _daik("jobs", "get", "00000000-0000-0000-0000-000000000000", **env)
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "daik: error: Not Found (404): no job 00000000-0000-0000-0000-000000000000"
    )
    proc = _daik("jobs", "submit", str(tmp_path / "nope.yaml"), **env)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"daik: error: {tmp_path / 'nope.yaml'}: no such file"


def test_batches(cli: Cli, service: Service, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    cells = [{"name": "baseline", "losses": {}}, {"name": "+AAL", "losses": {"aal": {"enabled": True}}}]
    grid.write_text(yaml.safe_dump(cells))
    rc, out, err = cli(
        "batches", "submit", str(_spec(tmp_path, "client-abl", seed=5)), "--grid", str(grid), "--seeds", "2"
    )
    assert rc == 0, err
    assert out.startswith("submitted batch ") and out.rstrip().endswith("(client-abl): 4 jobs, active")
    batch_id = out.split()[2]
    batch = cli.json("batches", "get", batch_id)
    assert batch["grid"] == ["baseline", "+AAL"] and batch["seeds"] == [5, 6] and batch["jobs"] == 4
    assert sorted((c["config"], c["seed"]) for c in batch["cells"]) == [
        ("+AAL", 5), ("+AAL", 6), ("baseline", 5), ("baseline", 6),
    ]  # fmt: skip
    assert [b["id"] for b in cli.json("batches", "ls")["items"]] == [batch_id]

    assert cli.json("batches", "pause", batch_id)["status"] == "paused"
    rc, out, _ = cli("batches", "resume", batch_id)
    assert rc == 0 and out.strip() == f"batch {batch_id}: active"
    cancelled = cli.json("batches", "cancel", batch_id)
    assert cancelled["status"] == "cancelled"
    rc, _, err = cli("batches", "resume", batch_id)  # cancelled is final: 409 as one line
    assert rc == 1 and err.startswith("daik: error: ") and "(409)" in err and len(err.splitlines()) == 1

    rc, out, _ = cli("batches", "results", batch_id, "--format", "csv")
    assert rc == 0 and out.splitlines()[0].startswith("config")
    table = cli.json("batches", "results", batch_id)
    assert isinstance(table, dict)
    rc, out, _ = cli("batches", "get", batch_id)
    fields = {line.split()[0]: line.split()[1:] for line in out.splitlines()[:7]}
    assert fields["id"] == [batch_id] and fields["name"] == ["client-abl"]
    assert fields["status"][0] == "cancelled" and fields["grid"] == ["baseline,", "+AAL"]
