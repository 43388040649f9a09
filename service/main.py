"""The FastAPI application: :func:`create_app` builds it from a :class:`Settings` (no import-time globals:
each test builds its own app, engine and settings); :func:`serve` runs it with uvicorn (``daik api``).

Routes (all JSON; errors are RFC 9457 problem details, see :mod:`service.problems`): ``/jobs`` (submit,
list, read, metrics, cancel, events), ``/jobs/{id}/checkpoints``, ``/datasets``, ``/tokens``, and the open
``/healthz`` / ``/readyz``. Everything but the health routes needs ``Authorization: Bearer <token>``, or the
dashboard's cookie session (``/ui``, :mod:`service.auth.session`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from sqlalchemy.exc import SQLAlchemyError

from service.artifacts.router import router as artifacts_router
from service.auth.router import router as tokens_router
from service.auth.service import TokenCache, ensure_bootstrap_token
from service.auth.session import SessionSigner, load_session_secret
from service.batches.router import router as batches_router
from service.dashboard.router import install_dashboard
from service.datasets.router import router as datasets_router
from service.db.base import utcnow
from service.db.session import make_engine, make_sessionmaker
from service.health import router as health_router
from service.jobs.cache import ReadCache
from service.jobs.feed import router as jobs_feed_router
from service.jobs.router import router as jobs_router
from service.problems import PROBLEM_MEDIA_TYPE, BodySizeLimit, install
from service.schedules.router import router as schedules_router
from service.settings import Settings
from service.sse import SSE_KEEPALIVE_SECONDS, SSE_POLL_SECONDS
from service.workers.router import router as workers_router

__all__ = ["app_from_env", "create_app", "serve"]

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"


def _register_bootstrap(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    if settings.bootstrap_token is None:
        return
    try:
        with app.state.sessionmaker() as session:
            row = ensure_bootstrap_token(session, settings)
        log.info("bootstrap token registered (id %s, scope admin)", row.id if row else None)
    except SQLAlchemyError as err:  # not migrated yet: the first request with it registers it
        log.warning("bootstrap token not registered at start (%s); retried on first use", type(err).__name__)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with every error response as ``application/problem+json`` (ProblemDetails),
    which is what the API answers (FastAPI would document its own 422 body as application/json)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    problem = {"$ref": "#/components/schemas/ProblemDetails"}
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                if code.isdigit() and int(code) >= 400:
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem}}
    schemas = doc.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = doc
    return doc


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API bound to ``settings`` (default: from the environment). The engine is created here and
    disposed of at shutdown; the bootstrap token (if set) is registered at startup."""
    settings = settings if settings is not None else Settings()
    if settings.embedded:
        settings.ensure_dirs()  # the SQLite file's folder
    engine = make_engine(settings.db_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(_register_bootstrap, app)
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="DAIK job service",
        version=API_VERSION,
        description="Submit and follow DAIK training and distillation jobs. Errors: RFC 9457 problems.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.started_at = utcnow()  # /readyz: housekeeping that has not run since is late after 3 periods
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.token_cache = TokenCache()
    app.state.read_cache = ReadCache(settings.read_cache_entries)  # job reads, keyed by the row version
    app.state.session_signer = SessionSigner(load_session_secret(settings), settings.session_hours * 3600)
    app.state.sse_poll_seconds = SSE_POLL_SECONDS
    app.state.sse_keepalive_seconds = SSE_KEEPALIVE_SECONDS

    install(app)
    app.include_router(health_router)
    app.include_router(jobs_feed_router)  # before the jobs router, whose /jobs/{job_id} would take "events"
    app.include_router(jobs_router)
    app.include_router(artifacts_router)
    app.include_router(datasets_router)
    app.include_router(tokens_router)
    app.include_router(workers_router)
    app.include_router(batches_router)
    app.include_router(schedules_router)
    install_dashboard(app)  # /ui: the dashboard's pages and static files

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:  # closed unless origins are configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Location", "Idempotent-Replayed"],
        )

    def openapi() -> dict[str, Any]:
        return _openapi(app)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """The app with :class:`Settings` from the environment: the factory each uvicorn worker process calls
    (``uvicorn.run("service.main:app_from_env", factory=True, workers=N)``)."""
    return create_app(Settings())


def serve(
    settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, access_log: bool = False
) -> int:
    """``daik api``: serve the app with uvicorn until interrupted. ``workers`` > 1 runs that many server
    processes on the one port (each with its own engine and token cache; the bootstrap token's
    registration is idempotent); one per core is the setting for throughput. The worker processes read
    their settings from the environment (``DAIK_*``), as ``settings`` was. The per-request access log is
    off unless ``access_log`` (it costs a noticeable share of a cheap request)."""
    import uvicorn

    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # /readyz reads the revision on every probe
    log.info("settings: %s (%d API process%s)", settings.redacted(), workers, "es" if workers > 1 else "")
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "access_log": access_log,
        "proxy_headers": False,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **common)
    else:
        uvicorn.run("service.main:app_from_env", factory=True, workers=workers, **common)
    return 0
