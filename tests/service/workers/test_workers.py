"""Workers as the API sees them: a job of a GPU count that no live worker takes is refused at submission
(422 on ``resources.gpus``), one that fits waits visibly (``waiting`` on ``GET /jobs/{id}``), stale and
stopped workers do not count, and ``GET /workers`` lists the live ones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Worker
from tests.service.helpers import assert_problem, job_body, set_job

Submit = Callable[..., dict[str, Any]]


def _worker(db: sessionmaker[Session], name: str, gpus: int, *, age_s: float = 0.0, stopped: bool = False,
            concurrency: int = 1) -> None:  # fmt: skip
    beat = utcnow() - dt.timedelta(seconds=age_s)
    with db() as s:
        s.add(
            Worker(
                name=name,
                gpus=gpus,
                concurrency=concurrency,
                queues=[f"daik.gpus.{gpus}"],
                started_at=beat,
                heartbeat_at=beat,
                stopped_at=beat if stopped else None,
            )
        )
        s.commit()


def test_with_no_live_worker_a_job_is_accepted_and_says_why_it_waits(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    _worker(db, "old@h", 4, age_s=3600)  # stale: not live
    job = submit(resources={"gpus": 4})
    got = client.get(f"/jobs/{job['id']}", headers=admin).json()
    assert (
        got["status"] == "queued"
        and got["waiting"] == "no live worker: the job starts when a worker comes up"
    )
    assert client.get("/workers", headers=admin).json() == {"items": []}


def test_a_gpu_count_no_live_worker_takes_is_refused(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], db: sessionmaker[Session]
) -> None:
    _worker(db, "cpu@h", 0)
    _worker(db, "g1@h", 1)
    _worker(db, "g8@h", 8, stopped=True)  # stopped: does not count
    r = client.post("/jobs", json=job_body(dota, resources={"gpus": 8}), headers=admin)
    problem = assert_problem(r, 422, "resources.gpus")
    assert "no worker takes jobs of 8 GPUs: the live workers take jobs of 0, 1 GPUs" in r.text, problem
    assert "daik worker --gpus 8" in r.text
    assert client.get("/jobs", headers=admin).json()["items"] == []  # nothing was created
    r = client.post("/jobs", json=job_body(dota, resources={"gpus": 1}), headers=admin)
    assert r.status_code == 201, r.text


def test_a_fitting_job_waits_visibly_when_the_workers_are_busy(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    _worker(db, "g1-a@h", 1)
    _worker(db, "g1-b@h", 1)
    _worker(db, "cpu@h", 0, concurrency=2)
    running = [submit(resources={"gpus": 1}) for _ in range(2)]
    for job in running:
        set_job(db, job["id"], status="running", attempt=1)
    ahead = submit(resources={"gpus": 1})
    mine = submit(resources={"gpus": 1})
    cpu = submit(resources={"gpus": 0})
    got = client.get(f"/jobs/{mine['id']}", headers=admin).json()
    assert (
        got["waiting"]
        == "waiting for a worker of 1 GPUs: 2 live workers with 2 slots, 2 running, 1 queued ahead"
    )
    assert client.get(f"/jobs/{ahead['id']}", headers=admin).json()["waiting"].endswith("0 queued ahead")
    cpu_wait = client.get(f"/jobs/{cpu['id']}", headers=admin).json()["waiting"]
    assert cpu_wait == "waiting for a worker of 0 GPUs: 1 live worker with 2 slots, 0 running, 0 queued ahead"
    assert client.get(f"/jobs/{running[0]['id']}", headers=admin).json()["waiting"] is None
    assert all(
        j["waiting"] is None for j in client.get("/jobs", headers=admin).json()["items"]
    )  # lists: none
    names = [w["name"] for w in client.get("/workers", headers=admin).json()["items"]]
    assert names == ["cpu@h", "g1-a@h", "g1-b@h"]


def test_workers_route_needs_a_token(client: TestClient) -> None:
    assert_problem(client.get("/workers"), 401)


def test_the_registry_shows_each_worker_s_devices_and_those_in_use(
    client: TestClient, admin: dict[str, str], db: sessionmaker[Session]
) -> None:
    now = utcnow()
    with db() as s:
        s.add(Worker(name="g1@h", gpus=1, concurrency=2, queues=["daik.gpus.1"], started_at=now,
                     heartbeat_at=now, devices=["0", "1"], devices_in_use=["1"], cpus=8))  # fmt: skip
        s.commit()
    (w,) = client.get("/workers", headers=admin).json()["items"]
    assert (w["gpus"], w["concurrency"], w["devices"], w["devices_in_use"], w["cpus"]) == (
        1,
        2,
        ["0", "1"],
        ["1"],
        8,
    )
