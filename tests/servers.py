"""The PostgreSQL and Redis servers the service, worker, migration and end-to-end tests use (loopback,
trust auth; ``DAIK_TEST_PG_URL`` / ``DAIK_TEST_REDIS_URL`` point them elsewhere). Each test package has
its own database and Redis db number, so packages never see each other's rows or messages.

``DAIK_TEST_NS=N`` (1 or 2) runs a second or third copy of the suite next to the first, e.g. from two
checkouts at once: database names get a ``_nsN`` suffix and Redis db numbers move down by 4 x N."""

from __future__ import annotations

import os

from service import migrate

PG_SERVER_URL = os.environ.get("DAIK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_SERVER_URL = os.environ.get("DAIK_TEST_REDIS_URL", "redis://127.0.0.1:6379")
TEST_NS = int(os.environ.get("DAIK_TEST_NS", "0") or 0)


def recreate_database(name: str, *, migrated: bool = False) -> str:
    """DROP and CREATE the test database ``name`` (migrated to head when ``migrated``); returns its URL.
    Fails (never skips) when the server is down: CI starts it, and a skip would hide every test."""
    return migrate.recreate_database(PG_SERVER_URL, database_name(name), migrated=migrated)


def database_name(name: str) -> str:
    """``name`` in this copy of the suite (see ``DAIK_TEST_NS``)."""
    return f"{name}_ns{TEST_NS}" if TEST_NS else name


def redis_db(db: int) -> int:
    """Redis db number ``db`` in this copy of the suite (see ``DAIK_TEST_NS``)."""
    return db - 4 * TEST_NS


def redis_url(db: int) -> str:
    return f"{REDIS_SERVER_URL}/{redis_db(db)}"
