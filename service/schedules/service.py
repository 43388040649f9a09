"""Schedules: validate (cron, time zone, batch template), store, compute fire times, and fire one.

Fire times come from ``cronsim`` evaluated in the schedule's IANA time zone, so a daily 02:30 in
Europe/Berlin fires once on the autumn day that has two 02:30s and at 03:00 on the spring day that has
none (cron's rule), and ``next_fire_at`` is stored in UTC. :func:`fire` makes the batch of one fire time
(the worker's dispatcher, :mod:`worker.schedules`, calls it with the schedule row locked); the batch row's
unique (schedule_id, fire_time) makes a second fire of the same time a no-op.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
import zoneinfo
from collections.abc import Sequence
from typing import Any

from cronsim import CronSim, CronSimError
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.batches.schemas import BatchCreate
from service.batches.service import check_size, insert_batch, parse_cells, plan_jobs
from service.db.base import utcnow
from service.db.models import ApiToken, Batch, Job, JobStatus, Schedule
from service.errors import Problem, invalid, reject_nul, validation_problem
from service.etags import check_if_match, etag
from service.schedules.schemas import ScheduleCreate, ScheduleOut, ScheduleUpdate
from service.settings import Settings

__all__ = [
    "LATEST_SUCCEEDED",
    "create_schedule",
    "delete_schedule",
    "fire",
    "latest_due",
    "list_schedules",
    "next_fire",
    "owner_refusal",
    "resolve_template",
    "schedule_etag",
    "schedule_out",
    "update_schedule",
]

LATEST_SUCCEEDED = "latest_succeeded"
_PLACEHOLDER_JOB = str(uuid.UUID(int=0))


def _zone(name: str, field: str = "timezone") -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise invalid(field, f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)") from None


def _check_cron(expr: str, field: str = "cron") -> None:
    try:
        CronSim(expr, dt.datetime(2000, 1, 1))
    except CronSimError as err:
        raise invalid(field, f"{expr!r} is not a cron expression: {err}") from None


def next_fire(expr: str, *, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first fire time strictly after ``after``, in UTC (evaluated in ``timezone``: DST-safe)."""
    return next(CronSim(expr, after.astimezone(_zone(timezone)))).astimezone(dt.timezone.utc)


def latest_due(expr: str, *, timezone: str, first_due: dt.datetime, now: dt.datetime) -> dt.datetime:
    """The latest fire time in ``[first_due, now]`` (missed fire times coalesce into it); ``first_due``
    when it is the only one."""
    # cron times fall on whole minutes: "at most now" is "before the minute after now's"
    ceiling = now.astimezone(_zone(timezone)).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    latest = next(CronSim(expr, ceiling, reverse=True)).astimezone(dt.timezone.utc)
    return max(latest, first_due)


def _template_body(
    template: dict[str, Any], *, field: str = "template", max_cells: int | None = None
) -> tuple[BatchCreate, str | None]:
    """The template as a ``POST /batches`` body (a ``latest_succeeded`` teacher stands in as a placeholder
    job id) and the teacher job name to resolve at fire time; 422 naming ``template.…`` fields, also when
    it has more than ``max_cells`` configurations x seeds."""
    data = copy.deepcopy(template)
    base = data.get("base")
    if not isinstance(base, dict):
        base = {}
    teacher = base.get("teacher")
    name: str | None = None
    if isinstance(teacher, dict) and LATEST_SUCCEEDED in teacher:
        name = teacher[LATEST_SUCCEEDED]
        if set(teacher) != {LATEST_SUCCEEDED} or not isinstance(name, str) or not name:
            raise invalid(f"{field}.base.teacher", '{"latest_succeeded": "<job name>"} and nothing else')
        base["teacher"] = {"job": _PLACEHOLDER_JOB}
    try:
        body = BatchCreate.model_validate(data)
    except ValidationError as err:
        raise validation_problem(err, field) from None
    if max_cells is not None:
        check_size(body, max_cells=max_cells, prefix=f"{field}.")
    plan_jobs(body, parse_cells(body.grid, f"{field}.grid"), field=f"{field}.grid")
    return body, name


def resolve_template(session: Session, template: dict[str, Any]) -> BatchCreate:
    """The batch body of a fire: a ``latest_succeeded`` teacher becomes the newest succeeded job of that
    name (:class:`~service.errors.Problem` 422 when there is none)."""
    body, name = _template_body(template)
    if name is None:
        return body
    job_id = session.scalar(
        select(Job.id)
        .where(Job.name == name, Job.status == JobStatus.succeeded.value)
        .order_by(Job.finished_at.desc().nulls_last(), Job.created_at.desc())
        .limit(1)
    )
    if job_id is None:
        raise invalid("template.base.teacher", f"no succeeded job named {name!r} to use as the teacher")
    data = body.model_dump(mode="json")
    data["base"]["teacher"] = {"job": str(job_id)}
    return BatchCreate.model_validate(data)


def schedule_etag(schedule: Schedule) -> str:
    return etag(schedule.id, schedule.version)


def _last_batch_ids(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    out: dict[uuid.UUID, uuid.UUID] = {}
    if not ids:
        return out
    rows = session.execute(
        select(Batch.schedule_id, Batch.id)
        .where(Batch.schedule_id.in_(ids))
        .order_by(Batch.schedule_id, Batch.fire_time)
    )
    for schedule_id, batch_id in rows:
        if schedule_id is not None:
            out[schedule_id] = batch_id  # the latest fire time wins
    return out


def schedule_out(session: Session, schedule: Schedule) -> ScheduleOut:
    last = _last_batch_ids(session, [schedule.id]).get(schedule.id)
    return ScheduleOut(
        id=schedule.id,
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        enabled=schedule.enabled,
        template=schedule.template,
        next_fire_at=schedule.next_fire_at,
        last_fire_at=schedule.last_fire_at,
        last_fire_status=schedule.last_fire_status,
        last_fire_error=schedule.last_fire_error,
        last_batch_id=last,
        owner_token_id=schedule.created_by,
        etag=schedule_etag(schedule),
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


def list_schedules(session: Session) -> list[Schedule]:
    return list(session.scalars(select(Schedule).order_by(Schedule.name)))


def _validate(cron: str, *, timezone: str, template: dict[str, Any], max_cells: int | None) -> None:
    _check_cron(cron)
    _zone(timezone)
    reject_nul(template, "template")
    _template_body(template, max_cells=max_cells)


def _name_taken(name: str) -> Problem:
    return invalid("name", f"a schedule named {name!r} exists", status=409)


def create_schedule(
    session: Session,
    body: ScheduleCreate,
    token: ApiToken | None = None,
    now: dt.datetime | None = None,
    *,
    max_cells: int | None = None,
) -> Schedule:
    """Store a schedule owned by ``token`` (its fires make batches and jobs owned by it too); a template of
    more than ``max_cells`` configurations x seeds is a 422."""
    _validate(body.cron, timezone=body.timezone, template=body.template, max_cells=max_cells)
    now = now or utcnow()
    schedule = Schedule(
        id=uuid.uuid4(),
        name=body.name,
        cron=body.cron,
        timezone=body.timezone,
        enabled=body.enabled,
        template=body.template,
        version=1,
        next_fire_at=next_fire(body.cron, timezone=body.timezone, after=now) if body.enabled else None,
        created_by=token.id if token is not None else None,
    )
    session.add(schedule)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise _name_taken(body.name) from None
    return schedule


def update_schedule(
    session: Session,
    schedule: Schedule,
    body: ScheduleUpdate,
    if_match: str | None,
    now: dt.datetime | None = None,
    *,
    max_cells: int | None = None,
) -> Schedule:
    """Apply the given fields (``If-Match`` required: 428 / 412); a changed cron, time zone or enabled flag
    recomputes ``next_fire_at`` from now (missed fire times of a disabled schedule are not made up)."""
    session.refresh(schedule, with_for_update=True)
    check_if_match(if_match, schedule_etag(schedule), required=True)
    changes = body.model_dump(exclude_unset=True)
    for key in ("name", "cron", "timezone", "enabled", "template"):
        if key in changes and changes[key] is None:
            raise invalid(key, "cannot be null")
    cron = changes.get("cron", schedule.cron)
    timezone = changes.get("timezone", schedule.timezone)
    template = changes.get("template", schedule.template)
    _validate(cron, timezone=timezone, template=template, max_cells=max_cells)
    timing = {"cron", "timezone", "enabled"} & set(changes)
    for key, value in changes.items():
        setattr(schedule, key, value)
    if timing:
        schedule.next_fire_at = (
            next_fire(cron, timezone=timezone, after=now or utcnow()) if schedule.enabled else None
        )
    schedule.version += 1
    schedule.updated_at = utcnow()
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise _name_taken(str(changes.get("name"))) from None
    return schedule


def delete_schedule(session: Session, schedule: Schedule, if_match: str | None) -> None:
    """Delete (``If-Match`` required); its batches stay, without their schedule."""
    session.refresh(schedule, with_for_update=True)
    check_if_match(if_match, schedule_etag(schedule), required=True)
    session.delete(schedule)
    session.commit()


def owner_refusal(session: Session, schedule: Schedule, now: dt.datetime) -> str | None:
    """Why the schedule may fire no more: its owner's token was revoked or has expired (the dispatcher
    records that as the fire's outcome and disables the schedule); None when it may fire. A schedule
    without an owner is admin-owned and fires."""
    if schedule.created_by is None:
        return None
    token = session.get(ApiToken, schedule.created_by)
    if token is None:  # deleted rows set created_by to null; a dangling id cannot happen, but say so
        return f"the schedule's owner token (id {schedule.created_by}) no longer exists"
    if token.revoked_at is not None:
        what = f"was revoked at {token.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
    elif token.expires_at is not None and token.expires_at <= now:
        what = f"expired at {token.expires_at:%Y-%m-%d %H:%M:%S} UTC"
    else:
        return None
    return (
        f"the schedule's owner token {token.name!r} (id {token.id}) {what}: the schedule is disabled and "
        "makes no batch; create it again with a valid token"
    )


def fire(
    session: Session, settings: Settings, schedule: Schedule, *, fire_time: dt.datetime
) -> tuple[Batch | None, list[Job], str | None]:
    """Make the batch of ``schedule`` at ``fire_time`` inside a savepoint of the caller's transaction:
    ``(batch, its new jobs, None)``; ``(existing batch, [], None)`` when that fire time already has one
    (another dispatcher won); ``(None, [], reason)`` when the template cannot be made into a batch now
    (no succeeded teacher, a dataset gone): the fire is recorded as failed, nothing raises. The batch and
    its jobs belong to the schedule's owner (check :func:`owner_refusal` first)."""
    existing = session.scalar(
        select(Batch).where(Batch.schedule_id == schedule.id, Batch.fire_time == fire_time)
    )
    if existing is not None:
        return existing, [], None
    savepoint = session.begin_nested()
    try:
        body = resolve_template(session, schedule.template)
        owner = session.get(ApiToken, schedule.created_by) if schedule.created_by is not None else None
        batch, jobs = insert_batch(
            session, settings, body, token=owner, schedule_id=schedule.id, fire_time=fire_time
        )
        savepoint.commit()
    except Problem as err:
        savepoint.rollback()
        return None, [], err.detail or err.title
    except IntegrityError:
        savepoint.rollback()
        won = session.scalar(
            select(Batch).where(Batch.schedule_id == schedule.id, Batch.fire_time == fire_time)
        )
        return won, [], None if won is not None else "the batch could not be stored"
    return batch, jobs, None
