"""The schedule named in the path, looked up once: an unknown id, or one that is not a UUID, is a 404."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path

from service.db.models import Schedule
from service.dependencies import SessionDep
from service.errors import Problem

__all__ = ["ValidSchedule", "valid_schedule"]


def valid_schedule(
    schedule_id: Annotated[str, Path(description="the schedule's id (a UUID)")], session: SessionDep
) -> Schedule:
    try:
        uid = uuid.UUID(schedule_id)
    except ValueError:
        raise Problem(404, f"no schedule {schedule_id!r}") from None
    schedule = session.get(Schedule, uid)
    if schedule is None:
        raise Problem(404, f"no schedule {uid}")
    return schedule


ValidSchedule = Annotated[Schedule, Depends(valid_schedule)]
