"""The PostgreSQL and Redis servers the service, worker, migration and end-to-end tests use (loopback,
trust auth; ``DAIK_TEST_PG_URL`` / ``DAIK_TEST_REDIS_URL`` point them elsewhere). Each test package has
its own database and Redis db number, so packages never see each other's rows or messages."""

from __future__ import annotations

import os

from service import migrate

PG_SERVER_URL = os.environ.get("DAIK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_SERVER_URL = os.environ.get("DAIK_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def recreate_database(name: str, *, migrated: bool = False) -> str:
    """DROP and CREATE the test database ``name`` (migrated to head when ``migrated``); returns its URL.
    Fails (never skips) when the server is down: CI starts it, and a skip would hide every test."""
    return migrate.recreate_database(PG_SERVER_URL, name, migrated=migrated)


def redis_url(db: int) -> str:
    return f"{REDIS_SERVER_URL}/{db}"
