"""``POST /jobs/{id}/cancel``: a queued job is cancelled at once, a running one asks its worker
(cancelling + cancel_requested, force_cancel with ``?force=true``), repeats are idempotent 202s, and a
finished job is a 409 problem."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Job, JobEvent
from tests.service.helpers import assert_problem, set_job

Submit = Callable[..., dict[str, Any]]


def _status_events(db: sessionmaker[Session], job_id: str) -> list[dict[str, Any]]:
    with db() as session:
        rows = session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == uuid.UUID(job_id), JobEvent.type == "status")
            .order_by(JobEvent.id)
        ).all()
    return [r.data for r in rows]


def test_cancel_a_queued_job(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    job = submit()
    r = client.post(f"/jobs/{job['id']}/cancel", headers=admin)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "cancelled" and r.json()["finished_at"] is not None
    assert client.get(f"/jobs/{job['id']}", headers=admin).json()["status"] == "cancelled"
    assert [e["status"] for e in _status_events(db, job["id"])] == ["queued", "cancelled"]
    assert _status_events(db, job["id"])[-1] == {"status": "cancelled", "attempt": 0, "error": None}

    again = client.post(f"/jobs/{job['id']}/cancel", headers=admin)
    assert again.status_code == 202 and again.json()["status"] == "cancelled"
    assert len(_status_events(db, job["id"])) == 2  # no second event


def test_cancel_a_running_job_asks_the_worker(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    job = submit()
    set_job(db, job["id"], status="running", attempt=1)
    r = client.post(f"/jobs/{job['id']}/cancel", headers=admin)
    assert r.status_code == 202 and r.json()["status"] == "cancelling"
    with db() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None and row.cancel_requested and not row.force_cancel
    assert _status_events(db, job["id"])[-1] == {"status": "cancelling", "attempt": 1, "error": None}

    forced = client.post(f"/jobs/{job['id']}/cancel", params={"force": "true"}, headers=admin)
    assert forced.status_code == 202 and forced.json()["status"] == "cancelling"
    with db() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None and row.force_cancel
    assert [e["status"] for e in _status_events(db, job["id"])] == ["queued", "cancelling"]


def test_force_cancel_of_a_running_job(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    job = submit()
    set_job(db, job["id"], status="running", attempt=1)
    assert client.post(f"/jobs/{job['id']}/cancel?force=true", headers=admin).status_code == 202
    with db() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None and row.status == "cancelling" and row.cancel_requested and row.force_cancel


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_cancel_a_finished_job_is_409(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session], status: str
) -> None:
    job = submit()
    set_job(db, job["id"], status=status)
    assert_problem(client.post(f"/jobs/{job['id']}/cancel", headers=admin), 409)
    assert client.get(f"/jobs/{job['id']}", headers=admin).json()["status"] == status


def test_cancel_needs_jobs_write(client: TestClient, submit: Submit, make_token: Callable[..., str]) -> None:
    job = submit()
    reader = {"Authorization": f"Bearer {make_token('jobs:read')}"}
    assert_problem(client.post(f"/jobs/{job['id']}/cancel", headers=reader), 403)
