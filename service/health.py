"""``/healthz`` (the process answers) and ``/readyz`` (database reachable, schema at the migration head,
broker reachable): open, no token. A failing check gets a 503 problem with the state of each check;
the reasons stay generic (the exception goes to the log).

``/readyz`` also says whether the housekeeping runs (``maintenance``: re-dispatch, reaping, schedule
firing, which ``daik beat`` runs and records in the ``maintenance`` table) and lists an alert for each task
that has not run for three of its periods, or not since this API process started three periods ago. Late
housekeeping does not make the API unready (it still serves), so the answer stays 200: watch ``alerts``."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import Engine, create_engine, select, text

from service import migrate
from service.db.base import utcnow
from service.db.models import Maintenance
from service.problems import Problem, problem_response, problem_responses
from service.queue import maintenance_periods
from service.settings import Settings, redact_url

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2.0


class Health(BaseModel):
    status: Literal["ok"]


LATE_AFTER_PERIODS = 3  # a housekeeping task this many periods late is an alert


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]
    maintenance: dict[str, str] = Field(
        description='each housekeeping task: "ok", "waiting for its first run", "late: ..." or "unknown"'
    )
    alerts: list[str] = Field(description="what an operator should look at (late housekeeping); empty: none")


def check_database(engine: Engine) -> dict[str, str]:
    """``{"database": ..., "migrations": ...}``: "ok" or a short reason."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = migrate.current_revision(conn)
    except Exception as err:
        log.warning("readiness: database check failed (%s: %s)", type(err).__name__, redact_url(str(err)))
        return {"database": "unreachable", "migrations": "unknown"}
    head = migrate.head_revision()
    if current is None:
        state = "not migrated (run `daik db upgrade`)"
    elif current != head:
        state = f"at revision {current}, head is {head} (run `daik db upgrade`)"
    else:
        state = "ok"
    return {"database": "ok", "migrations": state}


def check_broker(settings: Settings) -> str:
    """ "ok" when the broker answers within ``BROKER_TIMEOUT_S``."""
    url = settings.broker
    try:
        if url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(
                url, socket_connect_timeout=BROKER_TIMEOUT_S, socket_timeout=BROKER_TIMEOUT_S
            )
            try:
                client.ping()
            finally:
                client.close()
        elif url.startswith("sqla+"):  # kombu's SQLAlchemy transport: the broker is a database
            engine = create_engine(url.removeprefix("sqla+"))
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            finally:
                engine.dispose()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=BROKER_TIMEOUT_S) as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_S)
    except Exception as err:
        log.warning("readiness: broker check failed (%s: %s)", type(err).__name__, redact_url(str(err)))
        return "unreachable"
    return "ok"


def check_maintenance(
    engine: Engine, settings: Settings, started_at: dt.datetime, now: dt.datetime | None = None
) -> tuple[dict[str, str], list[str]]:
    """The state of each housekeeping task (module docstring) and the alerts of the late ones."""
    now = now or utcnow()
    periods = maintenance_periods(settings)
    try:
        with engine.connect() as conn:
            rows = {r.task: r for r in conn.execute(select(Maintenance)).all()}
    except Exception as err:
        log.warning("readiness: maintenance check failed (%s: %s)", type(err).__name__, redact_url(str(err)))
        return dict.fromkeys(periods, "unknown"), []
    states: dict[str, str] = {}
    alerts: list[str] = []
    for task, every in periods.items():
        row = rows.get(task)
        if row is not None:
            every = row.every_seconds
            age = (now - row.last_run_at).total_seconds()
            state = f"late: last ran {age:.0f} s ago on {row.node} (every {every:g} s)"
        else:
            age = (now - started_at).total_seconds()
            state = f"late: has not run since the API started {age:.0f} s ago (every {every:g} s)"
        if age <= LATE_AFTER_PERIODS * every:
            state = "ok" if row is not None else "waiting for its first run"
        else:
            alerts.append(f"{task} is {state}: is `daik beat` running?")
        states[task] = state
    return states, alerts


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up (no dependency is checked)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses=problem_responses(503))
def readyz(request: Request) -> Any:
    """Ready to serve: the database answers and is at the migration head, and the broker answers; with the
    state of the housekeeping and its alerts (which do not fail readiness)."""
    settings: Settings = request.app.state.settings
    checks = check_database(request.app.state.engine)
    checks["broker"] = check_broker(settings)
    maintenance, alerts = check_maintenance(request.app.state.engine, settings, request.app.state.started_at)
    if all(v == "ok" for v in checks.values()):
        return Readiness(status="ready", checks=checks, maintenance=maintenance, alerts=alerts)
    failing = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
    extra = {"checks": checks, "maintenance": maintenance, "alerts": alerts}
    problem = Problem(503, f"not ready ({failing})", title="Service Unavailable", extra=extra)
    return problem_response(problem, request.url.path)
