"""``/healthz`` (the process answers) and ``/readyz`` (database reachable, schema at the migration head,
broker reachable): open, no token. A failing check gets a 503 problem with the state of each check;
the reasons stay generic (the exception goes to the log)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import Engine, create_engine, text

from service import migrate
from service.problems import Problem, problem_response, problem_responses
from service.settings import Settings, redact_url

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2.0


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


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


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up (no dependency is checked)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses=problem_responses(503))
def readyz(request: Request) -> Any:
    """Ready to serve: the database answers and is at the migration head, and the broker answers."""
    settings: Settings = request.app.state.settings
    checks = check_database(request.app.state.engine)
    checks["broker"] = check_broker(settings)
    if all(v == "ok" for v in checks.values()):
        return Readiness(status="ready", checks=checks)
    failing = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
    problem = Problem(503, f"not ready ({failing})", title="Service Unavailable", extra={"checks": checks})
    return problem_response(problem, request.url.path)
