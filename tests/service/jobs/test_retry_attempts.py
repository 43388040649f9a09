"""``POST /jobs/{id}/retry`` (from the last checkpoint or from scratch) and ``GET /jobs/{id}/attempts``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Attempt, Checkpoint, EvalResult, Job, JobEvent, Metric, MetricArchive
from tests.service.helpers import assert_problem, queued_messages, set_job

Submit = Callable[..., dict[str, Any]]


def _history(db: sessionmaker[Session], job_id: str, output: Path) -> None:
    """What two failed attempts leave: attempt rows, metrics, an evaluation, a checkpoint file and row."""
    jid = uuid.UUID(job_id)
    (output / "weights").mkdir(parents=True, exist_ok=True)
    (output / "weights" / "last.pt").write_bytes(b"weights of attempt 2")
    now = utcnow()
    with db() as s:
        s.add_all(
            [
                Attempt(
                    job_id=jid,
                    number=1,
                    worker="w1:1",
                    status="failed",
                    exit_code=-9,
                    failure_kind="preempted",
                    reason="killed by SIGKILL",
                    started_at=now,
                    finished_at=now,
                ),
                Attempt(
                    job_id=jid,
                    number=2,
                    worker="w2:7",
                    status="failed",
                    exit_code=1,
                    failure_kind="user_error",
                    reason="RuntimeError: boom",
                    resumed_from=str(output / "weights" / "last.pt"),
                    log_tail="Traceback ...\nRuntimeError: boom",
                    started_at=now,
                    finished_at=now,
                ),
                Metric(job_id=jid, key="loss", step=10, value=2.0, epoch=1, attempt=1),
                Metric(job_id=jid, key="loss", step=20, value=1.5, epoch=2, attempt=2),
                EvalResult(job_id=jid, attempt=2, epoch=2, step=20, map50=0.3, map50_95=0.1, per_class={}),
                Checkpoint(job_id=jid, attempt=2, epoch=2, step=20, path=f"jobs/{job_id}/weights/last.pt"),
            ]
        )
        s.commit()
    set_job(
        db,
        job_id,
        status="failed",
        attempt=2,
        restarts=1,
        epoch=2,
        step=20,
        progress=1.0,
        error="RuntimeError: boom",
        failure_kind="user_error",
        finished_at=now,
        final_map50=0.3,
    )


def _job(db: sessionmaker[Session], job_id: str) -> Job:
    with db() as s:
        job = s.get(Job, uuid.UUID(job_id))
        assert job is not None
        s.expunge(job)
        return job


def test_attempts_are_listed_oldest_first(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session], tmp_path: Path
) -> None:
    job = submit()
    assert client.get(f"/jobs/{job['id']}/attempts", headers=admin).json() == {"items": []}
    _history(db, job["id"], tmp_path)
    r = client.get(f"/jobs/{job['id']}/attempts", headers=admin)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [a["number"] for a in items] == [1, 2]
    assert (
        items[0]["failure_kind"] == "preempted"
        and items[0]["exit_code"] == -9
        and items[0]["resumed_from"] is None
    )
    assert items[1]["reason"] == "RuntimeError: boom" and items[1]["log_tail"].endswith("boom")
    assert items[1]["resumed_from"].endswith("last.pt") and items[1]["worker"] == "w2:7"
    assert client.get(f"/jobs/{uuid.uuid4()}/attempts", headers=admin).status_code == 404


def test_retry_from_the_checkpoint_keeps_the_history(
    client: TestClient,
    admin: dict[str, str],
    submit: Submit,
    db: sessionmaker[Session],
    broker: redis.Redis,
    tmp_path: Path,
) -> None:
    job = submit()
    set_job(db, job["id"], output_dir=str(tmp_path))
    _history(db, job["id"], tmp_path)
    broker.delete("daik.gpus.0")
    r = client.post(f"/jobs/{job['id']}/retry", headers=admin)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["restarts"] == 0 and body["error"] is None
    assert body["attempt"] == 2 and body["epoch"] == 2 and body["final_map50"] == 0.3  # kept for the resume
    assert (tmp_path / "weights" / "last.pt").is_file()
    assert ("daik.train", [job["id"]]) in queued_messages(broker, "daik.gpus.0")
    row = _job(db, job["id"])
    assert row.dispatched_at is not None and row.failure_kind is None and row.finished_at is None
    with db() as s:
        assert s.scalar(select(func.count()).select_from(Metric).where(Metric.job_id == row.id)) == 2
        last = s.scalars(
            select(JobEvent).where(JobEvent.job_id == row.id).order_by(JobEvent.id.desc())
        ).first()
        assert last is not None and last.data == {
            "status": "queued",
            "attempt": 2,
            "error": None,
            "retry": "checkpoint",
        }


def test_retry_from_scratch_sets_the_earlier_run_aside(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session], tmp_path: Path
) -> None:
    job = submit()
    set_job(db, job["id"], output_dir=str(tmp_path))
    _history(db, job["id"], tmp_path)
    r = client.post(f"/jobs/{job['id']}/retry", json={"start": "scratch"}, headers=admin)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["epoch"] == 0 and body["progress"] == 0.0
    assert body["final_map50"] is None and body["latest_metrics"] == {}
    assert not (tmp_path / "weights").exists()  # the worker will start afresh
    assert (tmp_path / "weights.retired-2" / "last.pt").read_bytes() == b"weights of attempt 2"
    jid = uuid.UUID(job["id"])
    with db() as s:
        assert s.scalar(select(func.count()).select_from(Metric).where(Metric.job_id == jid)) == 0
        archived = s.execute(
            select(MetricArchive.step, MetricArchive.attempt)
            .where(MetricArchive.job_id == jid)
            .order_by(MetricArchive.step)
        ).all()
        assert [tuple(a) for a in archived] == [(10, 1), (20, 2)]
        assert s.scalar(select(func.count()).select_from(EvalResult).where(EvalResult.job_id == jid)) == 0
        assert s.scalar(select(func.count()).select_from(Checkpoint).where(Checkpoint.job_id == jid)) == 0
        assert (
            s.scalar(select(func.count()).select_from(Attempt).where(Attempt.job_id == jid)) == 2
        )  # history stays
    # a second scratch retry of the same attempt number does not overwrite the first retired folder
    set_job(db, job["id"], status="cancelled")
    (tmp_path / "weights").mkdir()
    assert (
        client.post(f"/jobs/{job['id']}/retry", json={"start": "scratch"}, headers=admin).status_code == 202
    )
    assert (tmp_path / "weights.retired-2").is_dir() and (tmp_path / "weights.retired-2-2").is_dir()


def test_retry_of_a_queued_job_changes_nothing(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    job = submit()
    r = client.post(f"/jobs/{job['id']}/retry", headers=admin)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    with db() as s:
        n = s.scalar(
            select(func.count()).select_from(JobEvent).where(JobEvent.job_id == uuid.UUID(job["id"]))
        )
    assert n == 1  # only the submission's event


@pytest.mark.parametrize("status", ["running", "cancelling", "succeeded"])
def test_retry_of_a_running_or_succeeded_job_is_409(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session], status: str
) -> None:
    job = submit()
    set_job(db, job["id"], status=status, attempt=1)
    assert_problem(client.post(f"/jobs/{job['id']}/retry", headers=admin), 409)
    assert _job(db, job["id"]).status == status


def test_retry_input_and_scopes(
    client: TestClient,
    admin: dict[str, str],
    submit: Submit,
    make_token: Callable[..., str],
    db: sessionmaker[Session],
) -> None:
    job = submit()
    set_job(db, job["id"], status="failed", attempt=1)
    assert_problem(
        client.post(f"/jobs/{job['id']}/retry", json={"start": "yesterday"}, headers=admin), 422, "start"
    )
    assert_problem(
        client.post(f"/jobs/{job['id']}/retry", json={"from": "scratch"}, headers=admin), 422, "from"
    )
    reader = {"Authorization": f"Bearer {make_token('jobs:read')}"}
    assert_problem(client.post(f"/jobs/{job['id']}/retry", headers=reader), 403)
    assert client.get(f"/jobs/{job['id']}/attempts", headers=reader).status_code == 200
    assert _job(db, job["id"]).status == "failed"
