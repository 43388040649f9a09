"""Fixtures of the migration tests: an empty PostgreSQL database (``daik_test_ops``), dropped and created
anew for each test, so every test starts from nothing, as a first deployment does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from service.db.session import make_engine
from tests.servers import recreate_database

OPS_DATABASE = "daik_test_ops"


@pytest.fixture
def pg_url() -> str:
    """The URL of ``daik_test_ops``, freshly created and empty."""
    return recreate_database(OPS_DATABASE)


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()
