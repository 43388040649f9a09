"""``/schedules``: cron schedules that make a batch from a template (the worker's dispatcher fires them).
``PATCH`` and ``DELETE`` need ``If-Match`` with the schedule's ETag (428 without, 412 when stale)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response, status
from sqlalchemy.orm import Session

from service.auth.dependencies import require
from service.auth.service import require_owner
from service.db.models import ApiToken, Schedule
from service.dependencies import SessionDep, SettingsDep
from service.problems import problem_responses
from service.schedules import service
from service.schedules.dependencies import ValidSchedule
from service.schedules.schemas import ScheduleCreate, ScheduleList, ScheduleOut, ScheduleUpdate

__all__ = ["router"]

router = APIRouter(prefix="/schedules", tags=["schedules"], responses=problem_responses(401, 403))

JobsRead = Depends(require("jobs:read"))
JobsWrite = Depends(require("jobs:write"))
IfMatch = Annotated[
    str | None, Header(alias="If-Match", max_length=500, description="the schedule's ETag (required)")
]


def _out(session: Session, schedule: Schedule, response: Response) -> ScheduleOut:
    response.headers["ETag"] = service.schedule_etag(schedule)
    return service.schedule_out(session, schedule)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
    responses=problem_responses(400, 409, 413, 422),
)
def create_schedule(
    body: ScheduleCreate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[ApiToken, JobsWrite],
) -> ScheduleOut:
    schedule = service.create_schedule(session, body, token, max_cells=settings.max_batch_cells)
    response.headers["Location"] = f"/schedules/{schedule.id}"
    return _out(session, schedule, response)


@router.get("", response_model=ScheduleList, dependencies=[JobsRead])
def list_schedules(session: SessionDep) -> ScheduleList:
    """Every schedule, by name."""
    return ScheduleList(items=[service.schedule_out(session, s) for s in service.list_schedules(session)])


@router.get(
    "/{schedule_id}", response_model=ScheduleOut, dependencies=[JobsRead], responses=problem_responses(404)
)
def get_schedule(schedule: ValidSchedule, session: SessionDep, response: Response) -> ScheduleOut:
    return _out(session, schedule, response)


@router.patch(
    "/{schedule_id}",
    response_model=ScheduleOut,
    responses=problem_responses(404, 409, 412, 422, 428),
)
def update_schedule(
    token: Annotated[ApiToken, JobsWrite],
    schedule: ValidSchedule,
    body: ScheduleUpdate,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    if_match: IfMatch = None,
) -> ScheduleOut:
    """Only the token that made the schedule, or one with ``admin``, may change it (403)."""
    require_owner(token, owner_id=schedule.created_by, what=f"schedule {schedule.id}")
    schedule = service.update_schedule(session, schedule, body, if_match, max_cells=settings.max_batch_cells)
    return _out(session, schedule, response)


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404, 412, 428),
)
def delete_schedule(
    token: Annotated[ApiToken, JobsWrite],
    schedule: ValidSchedule,
    session: SessionDep,
    if_match: IfMatch = None,
) -> Response:
    """Only the token that made the schedule, or one with ``admin``, may delete it (403)."""
    require_owner(token, owner_id=schedule.created_by, what=f"schedule {schedule.id}")
    service.delete_schedule(session, schedule, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
