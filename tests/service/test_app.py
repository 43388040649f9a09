"""The app as a whole: health and readiness (503 on an unmigrated database or an unreachable broker), the
OpenAPI document (problem+json error responses), problem details for 404/405/500 without internals, and
CORS closed by default."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Maintenance
from service.main import create_app
from service.queue import TASK_REAP, TASK_REDISPATCH, TASK_SCHEDULES, maintenance_periods
from service.settings import Settings
from tests.service.conftest import make_settings
from tests.service.helpers import PROBLEM, assert_problem


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_on_a_migrated_database(settings: Settings) -> None:
    with TestClient(create_app(settings)) as c:  # just started: no housekeeping due yet
        r = c.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "broker": "ok"},
        "maintenance": dict.fromkeys(maintenance_periods(settings), "waiting for its first run"),
        "alerts": [],
    }


def test_readyz_alerts_when_housekeeping_has_not_run_for_three_periods(
    settings: Settings, db: sessionmaker[Session]
) -> None:
    """``daik beat`` records each housekeeping run; a task three of its periods late (or never run since
    the API started three periods ago) is an alert in ``/readyz``, which still answers 200 (the API
    serves)."""
    periods = maintenance_periods(settings)

    def ran(task: str, every: float, ago_s: float, node: str = "h:1") -> Maintenance:
        return Maintenance(
            task=task, every_seconds=every, last_run_at=utcnow() - dt.timedelta(seconds=ago_s), node=node
        )

    with db() as s:
        s.add_all([ran(TASK_REDISPATCH, 30.0, 80), ran(TASK_REAP, 30.0, 95)])
        s.commit()
    app = create_app(settings)
    with TestClient(app) as c:
        body = c.get("/readyz").json()
        assert body["status"] == "ready"
        assert body["maintenance"][TASK_REDISPATCH] == "ok"  # 80 s: not yet 3 x 30 s late
        assert re.fullmatch(r"late: last ran 9\d s ago on h:1 \(every 30 s\)", body["maintenance"][TASK_REAP])
        assert body["maintenance"][TASK_SCHEDULES] == "waiting for its first run"
        assert body["alerts"] == [f"{TASK_REAP} is {body['maintenance'][TASK_REAP]}: is `daik beat` running?"]

        every = periods[TASK_SCHEDULES]
        app.state.started_at = utcnow() - dt.timedelta(seconds=3 * every + 5)  # the API has run a while
        body = c.get("/readyz").json()
        assert body["maintenance"][TASK_SCHEDULES].startswith("late: has not run since the API started")
        assert len(body["alerts"]) == 2

        with db() as s:  # beat runs again: no alert
            s.execute(update(Maintenance).values(last_run_at=utcnow()))
            s.add(ran(TASK_SCHEDULES, every, 0, node="h:2"))
            s.commit()
        body = c.get("/readyz").json()
        assert (body["maintenance"], body["alerts"]) == (dict.fromkeys(periods, "ok"), [])


def test_readyz_on_an_unmigrated_database_is_503(empty_pg_url: str, roots: Path) -> None:
    with TestClient(create_app(make_settings(empty_pg_url, roots))) as c:
        body = assert_problem(c.get("/readyz"), 503)
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] == "ok"
    assert body["checks"]["migrations"] != "ok"


def test_readyz_with_the_broker_down_is_503(pg_url: str, roots: Path) -> None:
    settings = make_settings(pg_url, roots, broker_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    with TestClient(create_app(settings)) as c:
        body = assert_problem(c.get("/readyz"), 503)
        assert c.get("/healthz").status_code == 200  # the process itself is fine
    assert body["checks"] == {"database": "ok", "migrations": "ok", "broker": body["checks"]["broker"]}
    assert body["checks"]["broker"] != "ok"


def test_readyz_with_the_database_down_is_503(roots: Path) -> None:
    url = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/nothing"
    with TestClient(create_app(make_settings(url, roots))) as c:
        r = c.get("/readyz")
    body = assert_problem(r, 503)
    assert body["checks"]["database"] != "ok"
    assert "hunter2" not in r.text


def test_openapi_documents_problems(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/metrics",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/events",
        "/jobs/{job_id}/checkpoints",
        "/jobs/{job_id}/checkpoints/{checkpoint_id}/download",
        "/datasets",
        "/datasets/{name}",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    post = paths["/jobs"]["post"]
    assert set(post["responses"]) >= {"201", "401", "403", "422"}
    assert post["responses"]["422"]["content"] == {
        PROBLEM: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
    }
    body_schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["$ref"].endswith("/JobCreate")
    job_create = doc["components"]["schemas"]["JobCreate"]
    assert {"dataset", "hparams", "resources", "max_restarts"} <= set(job_create["properties"])
    job_out = doc["components"]["schemas"]["JobOut"]
    assert {"latest_metrics", "spec", "progress", "final_map50"} <= set(job_out["properties"])
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert "text/event-stream" in paths["/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    assert doc["components"]["securitySchemes"]


def test_unknown_route_and_method_are_problems(client: TestClient, admin: dict[str, str]) -> None:
    assert_problem(client.get("/nowhere", headers=admin), 404)
    assert_problem(client.delete("/jobs", headers=admin), 405)


def test_unexpected_error_is_a_500_problem_without_internals(roots: Path, pg_url: str) -> None:
    app = create_app(make_settings(pg_url, roots))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    body = assert_problem(r, 500)
    assert "hunter2" not in r.text and "RuntimeError" not in r.text and "Traceback" not in r.text
    assert body["title"]


def test_cors_is_closed_by_default(client: TestClient) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    r = client.options("/jobs", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_allows_configured_origins(pg_url: str, roots: Path) -> None:
    settings = make_settings(pg_url, roots, cors_origins=("https://dash.example",))
    with TestClient(create_app(settings)) as c:
        ok = c.options(
            "/jobs", headers={"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"}
        )
        assert ok.headers.get("access-control-allow-origin") == "https://dash.example"
        other = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
