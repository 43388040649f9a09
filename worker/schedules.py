"""The work behind ``daik.schedules.dispatch`` (beat sends it every minute): fire the due schedules.

:func:`dispatch_schedules` takes one due schedule at a time ``FOR UPDATE SKIP LOCKED`` (a second dispatcher
running at the same moment skips it, and finds it no longer due once the first commits), coalesces every
missed fire time into one, the latest due (a dispatcher that was down for an hour makes one batch, not
sixty), makes its batch (:func:`service.schedules.service.fire`; the batch's unique (schedule_id,
fire_time) is the backstop where row locks are not enough, e.g. SQLite), records the outcome, advances
``next_fire_at`` past ``now``, commits, and only then sends the new jobs. A fire that cannot make its batch
(no succeeded teacher of the named job, a dataset gone) is recorded as failed with its reason. A schedule
whose owner's token was revoked or has expired makes no batch: its fire is recorded as failed, saying so,
and the schedule is disabled.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.batches.service import dispatch_jobs
from service.db.base import utcnow
from service.db.models import Schedule
from service.schedules.service import fire, latest_due, next_fire, owner_refusal
from service.settings import Settings

__all__ = ["MAX_PER_RUN", "Fired", "dispatch_schedules"]

log = logging.getLogger(__name__)

MAX_PER_RUN = 100  # schedules per run; the next run (a minute later) takes the rest


@dataclass(frozen=True)
class Fired:
    schedule_id: uuid.UUID
    fire_time: dt.datetime
    batch_id: uuid.UUID | None  # None: the fire failed (``error``)
    created: bool  # False: the batch of this fire time existed already
    error: str | None


def dispatch_schedules(
    db: sessionmaker[Session], settings: Settings, *, now: dt.datetime | None = None
) -> list[Fired]:
    """Fire every schedule due at ``now`` (default: the current time), one transaction each."""
    now = now or utcnow()
    fired: list[Fired] = []
    for _ in range(MAX_PER_RUN):
        with db() as session:
            schedule = session.scalars(
                select(Schedule)
                .where(Schedule.enabled.is_(True), Schedule.next_fire_at <= now)
                .order_by(Schedule.next_fire_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if schedule is None:
                break
            assert schedule.next_fire_at is not None
            fire_time = latest_due(
                schedule.cron, timezone=schedule.timezone, first_due=schedule.next_fire_at, now=now
            )
            refusal = owner_refusal(session, schedule, now)
            if refusal is None:
                batch, jobs, error = fire(session, settings, schedule, fire_time=fire_time)
            else:
                batch, jobs, error = None, [], refusal
            schedule.last_fire_at = fire_time
            schedule.last_fire_status = "failed" if batch is None else "created"
            schedule.last_fire_error = error
            if refusal is None:
                schedule.next_fire_at = next_fire(
                    schedule.cron, timezone=schedule.timezone, after=max(now, fire_time)
                )
            else:  # stops firing: its owner can no longer act
                schedule.enabled = False
                schedule.next_fire_at = None
                schedule.version += 1
            session.commit()
            fired.append(Fired(schedule.id, fire_time, batch.id if batch else None, bool(jobs), error))
            if error is not None:
                log.warning("schedule %s: the fire of %s failed: %s", schedule.name, fire_time, error)
            dispatch_jobs(session, settings, jobs)
    return fired
