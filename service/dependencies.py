"""Dependencies shared by every domain: the settings, the session factory, a per-request session and the
job named in a path (the jobs and the artifacts routes both look it up).

They read ``request.app.state`` (filled by :func:`service.main.create_app`), so each app built in a test
has its own settings and engine; nothing is a module-level global.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Job
from service.errors import Problem
from service.settings import Settings

__all__ = [
    "IdempotencyKeyHeader",
    "SessionDep",
    "SessionmakerDep",
    "SettingsDep",
    "ValidJob",
    "get_session",
    "get_sessionmaker",
    "get_settings",
    "valid_job",
]


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    return factory


def get_session(factory: Annotated[sessionmaker[Session], Depends(get_sessionmaker)]) -> Iterator[Session]:
    """One session per request, closed (and so rolled back when not committed) after the response.
    Service functions commit explicitly where the contract needs it (e.g. commit, then send)."""
    with factory() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionmakerDep = Annotated[sessionmaker[Session], Depends(get_sessionmaker)]
SessionDep = Annotated[Session, Depends(get_session)]

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="same key + same body replays the first response; same key + another body: 422",
    ),
]


def valid_job(job_id: Annotated[str, Path(description="the job's id (a UUID)")], session: SessionDep) -> Job:
    """The job named in the path, looked up once: an unknown id, or one that is not a UUID, is a 404 problem
    (never a 422 or a 500)."""
    try:
        uid = uuid.UUID(job_id)
    except ValueError:
        raise Problem(404, f"no job {job_id!r}") from None
    job = session.get(Job, uid)
    if job is None:
        raise Problem(404, f"no job {uid}")
    return job


ValidJob = Annotated[Job, Depends(valid_job)]
