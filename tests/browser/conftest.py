"""Fixtures of the browser tests: the end-to-end fixtures (real ``daik api`` and ``daik worker`` on the test
PostgreSQL and Redis), reused as they are."""

from tests.e2e.conftest import log_dir, pg_e2e, redis_e2e, supervisor, token

__all__ = ["log_dir", "pg_e2e", "redis_e2e", "supervisor", "token"]
