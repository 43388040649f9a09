"""Reads of what the worker writes: ``GET /jobs/{id}/metrics`` (series, server-side downsampling, per-class
AP), ``latest_metrics`` in the job, and the Server-Sent Events stream (resume by ``Last-Event-ID``, live
events, keep-alive comments, the end after a terminal status)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import EvalResult, Job, JobEvent, Metric
from tests.service.helpers import assert_problem, set_job

Submit = Callable[..., dict[str, Any]]

KEYS = ("loss_cls", "loss_box", "loss_dfl", "loss_angle", "loss", "lr", "images_per_s")
ITERS = 50  # steps per epoch


def _insert_epochs(db: sessionmaker[Session], job_id: str, epochs: int, keys: tuple[str, ...] = KEYS) -> None:
    """What the worker writes per epoch: one row per key at the epoch's last step (value = key index +
    epoch / 1000, so every point can be checked)."""
    rows = [
        {
            "job_id": uuid.UUID(job_id),
            "key": key,
            "step": (e + 1) * ITERS,
            "epoch": e,
            "value": k + e / 1000,
            "attempt": 1,
        }
        for e in range(epochs)
        for k, key in enumerate(keys)
    ]
    with db() as session:
        session.execute(insert(Metric), rows)
        session.commit()


def _insert_eval(db: sessionmaker[Session], job_id: str, epoch: int, map50: float) -> None:
    per_class = {"ap50": {"plane": map50, "ship": None}, "ap50_95": {"plane": map50 / 2, "ship": None}}
    with db() as session:
        session.add(
            EvalResult(
                job_id=uuid.UUID(job_id),
                attempt=1,
                epoch=epoch,
                step=(epoch + 1) * ITERS,
                map50=map50,
                map50_95=map50 / 2,
                per_class=per_class,
            )
        )
        session.add(
            Metric(
                job_id=uuid.UUID(job_id),
                key="map50",
                step=(epoch + 1) * ITERS,
                epoch=epoch,
                value=map50,
                attempt=1,
            )
        )
        session.commit()


def test_full_series_and_per_class_ap(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    job = submit()
    _insert_epochs(db, job["id"], epochs=20)
    _insert_eval(db, job["id"], epoch=9, map50=0.25)
    _insert_eval(db, job["id"], epoch=19, map50=0.5)

    r = client.get(f"/jobs/{job['id']}/metrics", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["job_id"] == job["id"]
    assert set(body["series"]) == {*KEYS, "map50"}
    loss = body["series"]["loss"]
    assert [p["step"] for p in loss] == [(e + 1) * ITERS for e in range(20)]
    assert [p["epoch"] for p in loss] == list(range(20))
    assert loss[7]["value"] == pytest.approx(4 + 7 / 1000)
    assert [p["value"] for p in body["series"]["map50"]] == [0.25, 0.5]
    assert body["per_class_ap"] == {
        "epoch": 19,
        "map50": 0.5,
        "map50_95": 0.25,
        "ap50": {"plane": 0.5, "ship": None},
        "ap50_95": {"plane": 0.25, "ship": None},
    }


def test_keys_from_step_and_downsampling(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    job = submit()
    _insert_epochs(db, job["id"], epochs=300)
    url = f"/jobs/{job['id']}/metrics"

    only = client.get(url, params={"keys": "loss,lr"}, headers=admin).json()
    assert set(only["series"]) == {"loss", "lr"} and len(only["series"]["loss"]) == 300
    assert only["per_class_ap"] is None

    later = client.get(url, params={"keys": "loss", "from_step": 100 * ITERS}, headers=admin).json()
    steps = [p["step"] for p in later["series"]["loss"]]
    assert steps[0] == 100 * ITERS and steps[-1] == 300 * ITERS and len(steps) == 201

    n, m = 300, 50
    down = client.get(url, params={"keys": "loss,lr", "max_points": m}, headers=admin).json()
    for key in ("loss", "lr"):
        points = down["series"][key]
        assert len(points) == m
        steps = [p["step"] for p in points]
        assert steps[0] == ITERS and steps[-1] == n * ITERS  # first and last kept
        # evenly spaced: point i is the original one at round(i * (n - 1) / (m - 1))
        assert steps == [(round(i * (n - 1) / (m - 1)) + 1) * ITERS for i in range(m)]
        assert all(
            p["value"] == pytest.approx(KEYS.index(key) + (p["step"] // ITERS - 1) / 1000) for p in points
        )

    # fewer points than max_points: every point
    assert (
        len(
            client.get(url, params={"keys": "loss", "max_points": 1000}, headers=admin).json()["series"][
                "loss"
            ]
        )
        == n
    )
    assert client.get(url, params={"keys": "nothing"}, headers=admin).json()["series"] == {}


@pytest.mark.parametrize(
    ("params", "field"), [({"max_points": 1}, "max_points"), ({"from_step": -1}, "from_step")]
)
def test_bad_metrics_parameters_are_422(
    client: TestClient, admin: dict[str, str], submit: Submit, params: dict[str, Any], field: str
) -> None:
    job = submit()
    assert_problem(client.get(f"/jobs/{job['id']}/metrics", params=params, headers=admin), 422, field=field)


def _statements_of(read: Callable[[], Any]) -> tuple[Any, int]:
    """What ``read`` returns and how many SQL statements the service ran for it (every engine's cursor)."""
    count = 0

    def counted(*_: Any) -> None:
        nonlocal count
        count += 1

    event.listen(Engine, "before_cursor_execute", counted)
    try:
        result = read()
    finally:
        event.remove(Engine, "before_cursor_execute", counted)
    return result, count


def test_metrics_of_a_long_job_cost_the_same_queries_as_a_short_one(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    """300 epochs x 10 keys (3000 rows) are read with as many statements as 5 epochs: the series come from
    one query, not one per key or epoch. (Latency under load is measured by bench/bench_api_latency.py.)"""
    keys = (*KEYS, "map50", "map50_95", "extra")
    counts = {}
    for epochs in (5, 300):
        job = submit()
        _insert_epochs(db, job["id"], epochs=epochs, keys=keys)
        url = f"/jobs/{job['id']}/metrics"
        r, counts[epochs] = _statements_of(
            lambda url=url: client.get(url, params={"max_points": 500}, headers=admin)
        )
        assert r.status_code == 200 and len(r.json()["series"]) == 10
        assert {len(points) for points in r.json()["series"].values()} == {epochs}
    assert counts[5] >= 1 and counts[300] == counts[5], counts


def test_latest_metrics_in_the_job(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    job = submit()
    _insert_epochs(db, job["id"], epochs=5)
    with db() as session:  # a NaN stored as NULL, at a later step than the rest
        session.add(
            Metric(job_id=uuid.UUID(job["id"]), key="loss", step=10_000, epoch=5, value=None, attempt=1)
        )
        session.commit()
    latest = client.get(f"/jobs/{job['id']}", headers=admin).json()["latest_metrics"]
    assert latest["lr"] == pytest.approx(KEYS.index("lr") + 4 / 1000)
    assert latest["loss"] is None
    assert set(latest) == set(KEYS)
    listed = client.get("/jobs", headers=admin).json()["items"]
    assert listed[0]["latest_metrics"] == latest


def test_cached_reads_follow_every_write_that_updates_the_job_row(
    app: FastAPI, client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    """The metrics read and the job's latest metrics are cached per job version (``service.jobs.cache``):
    a second read of an unchanged job is a hit and returns the same bytes; a write made as the worker makes
    it (metric rows + the job row's ``updated_at`` in one transaction, ``worker.reporting.lock_job``) is seen
    by the next read; rows written behind the job row's back are not (which is why the worker must bump
    it)."""
    cache = app.state.read_cache
    job = submit()
    _insert_epochs(db, job["id"], epochs=3)
    set_job(db, job["id"], step=3 * ITERS)
    url = f"/jobs/{job['id']}/metrics"
    first = client.get(url, headers=admin)
    hits = cache.hits
    again = client.get(url, headers=admin)
    assert cache.hits == hits + 1 and again.content == first.content
    assert len(first.json()["series"]["loss"]) == 3
    assert client.get(f"/jobs/{job['id']}", headers=admin).json()["latest_metrics"]["lr"] == pytest.approx(
        KEYS.index("lr") + 2 / 1000
    )

    with db() as session:  # behind the job row's back: still the cached answer
        session.add(Metric(job_id=uuid.UUID(job["id"]), key="loss", step=999, epoch=3, value=7.0, attempt=1))
        session.commit()
    assert len(client.get(url, headers=admin).json()["series"]["loss"]) == 3

    with db() as session:  # as the worker writes: rows and the job row together
        session.add(Metric(job_id=uuid.UUID(job["id"]), key="lr", step=1000, epoch=4, value=9.5, attempt=1))
        session.execute(update(Job).where(Job.id == uuid.UUID(job["id"])).values(updated_at=utcnow()))
        session.commit()
    body = client.get(url, headers=admin).json()
    assert body["series"]["loss"][-1]["value"] == 7.0 and body["series"]["lr"][-1]["value"] == 9.5
    assert client.get(f"/jobs/{job['id']}", headers=admin).json()["latest_metrics"]["lr"] == 9.5
    # other parameters are other entries
    assert len(client.get(url, headers=admin, params={"keys": "lr"}).json()["series"]) == 1


# --- Server-Sent Events ---------------------------------------------------------------------------------


def _add_events(db: sessionmaker[Session], job_id: str, *events: tuple[str, dict[str, Any]]) -> list[int]:
    with db() as session:
        rows = [JobEvent(job_id=uuid.UUID(job_id), type=t, data=d, attempt=1) for t, d in events]
        session.add_all(rows)
        session.commit()
        return [r.id for r in rows]


def _event_ids(db: sessionmaker[Session], job_id: str) -> list[int]:
    with db() as session:
        return list(
            session.scalars(
                select(JobEvent.id).where(JobEvent.job_id == uuid.UUID(job_id)).order_by(JobEvent.id)
            )
        )


def _read_stream(
    client: TestClient,
    url: str,
    headers: dict[str, str],
    timeout: float = 15.0,
    on_open: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Read the whole stream (it must end by itself within ``timeout``): its events (id, event, data) and
    its comment lines."""
    events: list[dict[str, Any]] = []
    comments: list[str] = []
    failure: list[BaseException] = []

    def read() -> None:
        try:
            with client.stream("GET", url, headers=headers) as r:
                assert r.status_code == 200, r.read()
                assert r.headers["content-type"].startswith("text/event-stream")
                if on_open is not None:
                    on_open()
                current: dict[str, Any] = {}
                for line in r.iter_lines():
                    if line.startswith(":"):
                        comments.append(line)
                    elif line == "":
                        if "data" in current:
                            events.append(current)
                        current = {}
                    else:
                        field, _, value = line.partition(":")
                        current[field] = value.removeprefix(" ")
                if "data" in current:
                    events.append(current)
        except BaseException as err:
            failure.append(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert not reader.is_alive(), "the stream did not end"
    if failure:
        raise failure[0]
    for e in events:
        e["data"] = json.loads(e["data"])
        e["id"] = int(e["id"])
    return events, comments


def test_stream_resumes_after_last_event_id_and_ends_on_terminal_status(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    job = submit()
    (queued_id,) = _event_ids(db, job["id"])
    epoch = {"epoch": 0, "total_epochs": 2, "step": 50, "progress": 0.5, "metrics": {"loss": 1.5}}
    ids = _add_events(
        db,
        job["id"],
        ("status", {"status": "running", "attempt": 1, "error": None}),
        ("epoch", epoch),
        ("eval", {"epoch": 0, "step": 50, "map50": 0.1, "map50_95": 0.05}),
        ("status", {"status": "succeeded", "attempt": 1, "error": None}),
        ("progress", {"epoch": 9, "iteration": 0, "iters_per_epoch": 1, "progress": 1.0}),  # after the end
    )
    set_job(db, job["id"], status="succeeded")
    url = f"/jobs/{job['id']}/events"

    events, _ = _read_stream(client, url, {**admin, "Last-Event-ID": str(queued_id)})
    assert [e["id"] for e in events] == ids[:4]
    assert [e["event"] for e in events] == ["status", "epoch", "eval", "status"]
    assert events[1]["data"] == epoch
    assert events[-1]["data"]["status"] == "succeeded"

    # the query parameter does the same for clients that cannot set headers
    events, _ = _read_stream(client, f"{url}?last_event_id={ids[1]}", admin)
    assert [e["id"] for e in events] == ids[2:4]

    # from the start: the API's own queued event comes first
    events, _ = _read_stream(client, url, admin)
    assert [e["id"] for e in events] == [queued_id, *ids[:4]]
    assert events[0]["data"] == {"status": "queued", "attempt": 0, "error": None}

    # resuming after the terminal event of a finished job: nothing left, the stream ends at once
    events, _ = _read_stream(client, url, {**admin, "Last-Event-ID": str(ids[3])}, timeout=5)
    assert [e["id"] for e in events] == [ids[4]]


def test_stream_delivers_live_events(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    job = submit()
    (queued_id,) = _event_ids(db, job["id"])
    written: list[int] = []

    def worker() -> None:  # writes while the stream is open, as the worker would
        # the pauses are the scenario: events arriving one by one across the stream's polls, not a wait
        time.sleep(0.3)
        written.extend(
            _add_events(
                db,
                job["id"],
                ("progress", {"epoch": 0, "iteration": 3, "iters_per_epoch": 10, "progress": 0.15}),
            )
        )
        time.sleep(0.3)
        # the event before the status, as the worker commits them (one transaction): a stream that sees the
        # terminal status must find the terminal event (two commits the other way round made this test race)
        written.extend(
            _add_events(db, job["id"], ("status", {"status": "cancelled", "attempt": 1, "error": None}))
        )
        set_job(db, job["id"], status="cancelled")

    thread = threading.Thread(target=worker)
    events, _ = _read_stream(
        client, f"/jobs/{job['id']}/events", {**admin, "Last-Event-ID": str(queued_id)}, on_open=thread.start
    )
    thread.join()
    assert [e["id"] for e in events] == written
    assert [e["event"] for e in events] == ["progress", "status"]


def test_stream_sends_keepalive_comments(
    client: TestClient,
    admin: dict[str, str],
    submit: Submit,
    db: sessionmaker[Session],
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app.state, "sse_keepalive_seconds", 0.1)
    job = submit()
    (queued_id,) = _event_ids(db, job["id"])

    def finish() -> None:
        time.sleep(0.6)  # the scenario itself: 0.6 s of silence, in which the keep-alive comments come
        _add_events(db, job["id"], ("status", {"status": "cancelled", "attempt": 0, "error": None}))
        set_job(db, job["id"], status="cancelled")

    thread = threading.Thread(target=finish)
    events, comments = _read_stream(
        client, f"/jobs/{job['id']}/events", {**admin, "Last-Event-ID": str(queued_id)}, on_open=thread.start
    )
    thread.join()
    assert len(comments) >= 2  # silence of 0.6 s with a 0.1 s keep-alive
    assert [e["data"]["status"] for e in events] == ["cancelled"]


def test_stream_of_an_unknown_job_is_404(client: TestClient, admin: dict[str, str]) -> None:
    assert_problem(client.get(f"/jobs/{uuid.uuid4()}/events", headers=admin), 404)
    assert_problem(client.get("/jobs/nope/events", headers=admin), 404)


def test_stream_rejects_a_bad_last_event_id(
    client: TestClient, admin: dict[str, str], submit: Submit
) -> None:
    job = submit()
    r = client.get(f"/jobs/{job['id']}/events", headers={**admin, "Last-Event-ID": "abc"})
    assert_problem(r, 422, field="Last-Event-ID")


def _latest_metrics_case(session: Session) -> None:
    """Two jobs, keys written out of step order, a NaN (NULL) last: the newest step of each key wins."""
    from service.jobs.queries import latest_metrics

    a, b, none = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for jid in (a, b):
        session.add(Job(id=jid, name="m", kind="train", status="running", spec={}, resources={}))
    session.flush()
    rows = [
        (a, "loss", 300, 0.3), (a, "loss", 100, 0.1), (a, "loss", 200, 0.2),
        (a, "lr", 50, 5.0), (a, "lr", 400, None), (a, "map50", 7, 0.7),
        (b, "loss", 100, 1.0), (b, "loss", 900, 9.0), (b, "lr", 10, 0.01),
    ]  # fmt: skip
    session.execute(
        insert(Metric),
        [{"job_id": j, "key": k, "step": s, "epoch": 0, "value": v, "attempt": 1} for j, k, s, v in rows],
    )
    got = latest_metrics(session, [a, b, none])
    assert got == {a: {"loss": 0.3, "lr": None, "map50": 0.7}, b: {"loss": 9.0, "lr": 0.01}, none: {}}
    assert latest_metrics(session, []) == {}


def test_latest_metrics_distinct_on_postgresql(db: sessionmaker[Session]) -> None:
    with db() as session:
        assert session.get_bind().dialect.name == "postgresql"
        _latest_metrics_case(session)


def test_latest_metrics_portable_on_sqlite(tmp_path: Any) -> None:
    from service.db.base import Base
    from service.db.session import make_engine, make_sessionmaker

    engine = make_engine(f"sqlite:///{tmp_path / 'm.sqlite'}")
    try:
        Base.metadata.create_all(engine)
        with make_sessionmaker(engine)() as session:
            _latest_metrics_case(session)
    finally:
        engine.dispose()
