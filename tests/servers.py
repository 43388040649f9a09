"""The PostgreSQL and Redis servers the service, worker, migration and end-to-end tests use (loopback,
trust auth; ``DAIK_TEST_PG_URL`` / ``DAIK_TEST_REDIS_URL`` point them elsewhere). Each test package has
its own database and Redis db number, so packages never see each other's rows or messages."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service import migrate
from service.db.session import make_engine

PG_SERVER_URL = os.environ.get("DAIK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_SERVER_URL = os.environ.get("DAIK_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def recreate_database(name: str, *, migrated: bool = False) -> str:
    """DROP and CREATE the database ``name`` (migrated to head when ``migrated``); returns its URL. Fails
    (never skips) when the server is down: CI starts it, and a skip would hide every test that needs it."""
    admin = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    url = make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    if migrated:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
    return url


def redis_url(db: int) -> str:
    return f"{REDIS_SERVER_URL}/{db}"
