"""``Idempotency-Key`` on ``POST /jobs``: the same key and body replay the first job (one row, one task
message), another body is a 422 problem, and concurrent duplicates still create a single job."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Job
from service.jobs import submit as jobs_submit
from tests.service.helpers import assert_problem, job_body, queued_messages


def _count_jobs(db: sessionmaker[Session]) -> int:
    with db() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def test_same_key_and_body_replays_the_job(
    client: TestClient,
    admin: dict[str, str],
    dota: dict[str, str],
    db: sessionmaker[Session],
    broker: redis.Redis,
) -> None:
    headers = {**admin, "Idempotency-Key": "submit-1"}
    first = client.post("/jobs", json=job_body(dota), headers=headers)
    second = client.post("/jobs", json=job_body(dota), headers=headers)
    assert first.status_code == 201 and second.status_code == 201, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["location"] == first.headers["location"] == f"/jobs/{first.json()['id']}"
    assert second.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert _count_jobs(db) == 1
    sent = [m for m in queued_messages(broker, "daik.gpus.0") if m[1] == [first.json()["id"]]]
    assert len(sent) == 1  # a replay sends nothing

    # the same body spelled differently (defaults written out, keys reordered) is the same request
    spelled = job_body(dota, max_restarts=3, resources={"gpus": 0})
    third = client.post("/jobs", json=dict(reversed(list(spelled.items()))), headers=headers)
    assert third.status_code == 201 and third.json()["id"] == first.json()["id"]

    # without a key, the same body is a new job
    assert client.post("/jobs", json=job_body(dota), headers=admin).json()["id"] != first.json()["id"]
    assert _count_jobs(db) == 2


def test_same_key_other_body_is_422(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], db: sessionmaker[Session]
) -> None:
    headers = {**admin, "Idempotency-Key": "submit-2"}
    assert client.post("/jobs", json=job_body(dota), headers=headers).status_code == 201
    other = job_body(dota, hparams={"epochs": 3, "batch": 2, "imgsz": 64})
    assert_problem(client.post("/jobs", json=other, headers=headers), 422, field="Idempotency-Key")
    assert _count_jobs(db) == 1


def test_bad_key_is_422(client: TestClient, admin: dict[str, str], dota: dict[str, str]) -> None:
    r = client.post("/jobs", json=job_body(dota), headers={**admin, "Idempotency-Key": "k" * 201})
    assert_problem(r, 422, field="Idempotency-Key")


def test_racing_duplicates_create_one_job(
    client: TestClient,
    admin: dict[str, str],
    dota: dict[str, str],
    db: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight requests with one key and body, held (by a barrier in spec resolution) until every one has
    looked the key up and found nothing: all eight try to insert, the unique constraint lets one through,
    and the other seven replay it. Exactly one row; every answer names it."""
    n = 8
    gate = threading.Barrier(n, timeout=30)
    resolve = jobs_submit.resolve_spec

    def resolve_after_everyone_looked(*args: Any, **kwargs: Any) -> Any:
        gate.wait()
        return resolve(*args, **kwargs)

    monkeypatch.setattr(jobs_submit, "resolve_spec", resolve_after_everyone_looked)
    responses: list[httpx.Response] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    body: dict[str, Any] = job_body(dota)

    def post() -> None:
        try:
            r = client.post("/jobs", json=body, headers={**admin, "Idempotency-Key": "race"})
            with lock:
                responses.append(r)
        except BaseException as err:  # surfaced below: a thread's failure must fail the test
            with lock:
                errors.append(err)

    threads = [threading.Thread(target=post) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(responses) == n
    assert _count_jobs(db) == 1
    with db() as session:
        job_id = str(session.scalars(select(Job.id)).one())
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    assert {r.json()["id"] for r in responses} == {job_id}
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == n - 1
