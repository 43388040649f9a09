"""Engine and session factories (no import-time globals: tests and processes build their own)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow

__all__ = ["db_now", "make_engine", "make_sessionmaker", "session_scope"]


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``. SQLite (the embedded default, shared by the API and a worker process) runs
    in WAL mode with a busy timeout and foreign keys on; PostgreSQL gets pre-ping and a small pool."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def db_now(session: Session) -> dt.datetime:
    """The database's clock, in UTC: PostgreSQL's ``now()`` (the start of the session's transaction), so
    that a lease written by a worker on one host and judged by the reaper on another depends on neither
    host's clock; SQLite (the embedded database, one machine) has no clock of its own: this machine's."""
    if session.get_bind().dialect.name != "postgresql":
        return utcnow()
    now = session.scalar(select(func.now()))
    if not isinstance(now, dt.datetime):
        raise TypeError(f"SELECT now() returned {now!r}")
    return now.astimezone(dt.timezone.utc)
