"""Fixtures of the migration tests: an empty PostgreSQL database (``daik_test_ops``), dropped and created
anew for each test, so every test starts from nothing, as a first deployment does."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from service.db.session import make_engine

# the server the tests use (trust auth); DAIK_TEST_PG_URL points them at another one
PG_SERVER_URL = os.environ.get("DAIK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
OPS_DATABASE = "daik_test_ops"


def recreate_database(name: str) -> str:
    """DROP and CREATE the database ``name`` on the test server; returns its URL. Fails the test (not
    skips it) when the server is down: CI starts it, and a silent skip would hide every migration test."""
    admin = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def pg_url() -> str:
    """The URL of ``daik_test_ops``, freshly created and empty."""
    return recreate_database(OPS_DATABASE)


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()
