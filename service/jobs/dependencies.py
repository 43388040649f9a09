"""The job named in the path, looked up once: an unknown id, or one that is not a UUID, is a 404 problem
(never a 422 or a 500)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path

from service.db.models import Job
from service.dependencies import SessionDep
from service.jobs.service import get_job
from service.problems import Problem

__all__ = ["ValidJob", "valid_job"]


def valid_job(job_id: Annotated[str, Path(description="the job's id (a UUID)")], session: SessionDep) -> Job:
    try:
        uid = uuid.UUID(job_id)
    except ValueError:
        raise Problem(404, f"no job {job_id!r}") from None
    job = get_job(session, uid)
    if job is None:
        raise Problem(404, f"no job {uid}")
    return job


ValidJob = Annotated[Job, Depends(valid_job)]
