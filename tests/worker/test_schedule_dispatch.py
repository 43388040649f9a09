"""The schedule dispatcher (:func:`worker.schedules.dispatch_schedules`) on a real PostgreSQL database with
an explicit ``now``: two dispatchers at one fire time make one batch, missed fire times coalesce into the
latest, fire times are DST-safe in Europe/Berlin, a fire that cannot resolve its teacher is recorded, and a
schedule whose owner's token was revoked (or expired) stops firing, saying why."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.auth.service import create_token, revoke_token
from service.db.models import ApiToken, Batch, Job, Schedule
from service.schedules.schemas import ScheduleCreate
from service.schedules.service import create_schedule, fire, next_fire
from service.settings import Settings
from tests.service.helpers import job_body, write_dota
from worker.schedules import dispatch_schedules

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _template(settings: Settings, **base: Any) -> dict[str, Any]:
    folder = settings.data_dir / f"t-{uuid.uuid4().hex[:8]}"
    write_dota(folder / "train")
    write_dota(folder / "val")
    dota = {"train": f"{folder.name}/train", "val": f"{folder.name}/val"}
    return {"base": job_body(dota, name="nightly", **base), "grid": [{"name": "baseline"}], "seeds": 1}


def _schedule(
    db: sessionmaker[Session],
    template: dict[str, Any],
    cron: str = "*/5 * * * *",
    owner: int | None = None,
) -> uuid.UUID:
    with db() as s:
        body = ScheduleCreate(name=f"s-{uuid.uuid4().hex[:6]}", cron=cron, timezone="UTC", template=template)
        token = s.get_one(ApiToken, owner) if owner is not None else None
        return create_schedule(s, body, token, now=T0).id


def _token(db: sessionmaker[Session], name: str, expires_in: dt.timedelta | None = None) -> int:
    with db() as s:
        row, _plain = create_token(s, name, scopes=["jobs:read", "jobs:write"], expires_in=expires_in)
        s.commit()
        return row.id


def test_two_dispatchers_at_one_fire_time_make_one_batch(
    db: sessionmaker[Session], settings: Settings, broker: redis.Redis
) -> None:
    sid = _schedule(db, _template(settings))
    now = T0 + dt.timedelta(minutes=5, seconds=3)
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        results.append(dispatch_schedules(db, settings, now=now))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2
    assert sorted(len(r) for r in results) == [
        0,
        1,
    ]  # the second skipped the locked row, then found it not due
    with db() as s:
        batches = s.scalars(select(Batch).where(Batch.schedule_id == sid)).all()
        assert [b.fire_time for b in batches] == [T0 + dt.timedelta(minutes=5)]
        assert s.scalar(select(func.count()).select_from(Job)) == 1
        sched = s.get_one(Schedule, sid)
        assert sched.next_fire_at == T0 + dt.timedelta(minutes=10)
        assert sched.last_fire_status == "created" and sched.last_fire_at == T0 + dt.timedelta(minutes=5)
    # firing the same time again (a dispatcher with a stale view): the unique (schedule, fire time) holds
    with db() as s:
        sched = s.get_one(Schedule, sid)
        batch, jobs, error = fire(s, settings, sched, fire_time=T0 + dt.timedelta(minutes=5))
        s.commit()
        assert batch is not None and jobs == [] and error is None
        assert s.scalar(select(func.count()).select_from(Batch).where(Batch.schedule_id == sid)) == 1


def test_missed_fire_times_coalesce_into_the_latest(
    db: sessionmaker[Session], settings: Settings, broker: redis.Redis
) -> None:
    sid = _schedule(db, _template(settings))
    fired = dispatch_schedules(db, settings, now=T0 + dt.timedelta(minutes=32))  # 10:05 .. 10:30 missed
    assert [(f.fire_time, f.error) for f in fired] == [(T0 + dt.timedelta(minutes=30), None)]
    assert dispatch_schedules(db, settings, now=T0 + dt.timedelta(minutes=34)) == []
    with db() as s:
        assert s.get_one(Schedule, sid).next_fire_at == T0 + dt.timedelta(minutes=35)
        assert s.scalar(select(func.count()).select_from(Batch)) == 1


def test_next_fire_is_dst_safe_in_berlin() -> None:
    berlin = "Europe/Berlin"
    # spring forward (29 March 2026): 02:30 does not exist, cron fires at 03:00 CEST = 01:00 UTC
    assert next_fire(
        "30 2 * * *", timezone=berlin, after=dt.datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    ) == dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    # fall back (25 October 2026): 02:30 happens twice; it fires once, at the first (00:30 UTC) ...
    first = next_fire("30 2 * * *", timezone=berlin, after=dt.datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    assert first == dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # ... and next on the 26th at 02:30 CET = 01:30 UTC, not again an hour later
    assert next_fire("30 2 * * *", timezone=berlin, after=first) == dt.datetime(
        2026, 10, 26, 1, 30, tzinfo=UTC
    )
    # a summer day: 02:30 CEST = 00:30 UTC
    assert next_fire(
        "30 2 * * *", timezone=berlin, after=dt.datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    ) == dt.datetime(2026, 7, 2, 0, 30, tzinfo=UTC)


def test_a_missing_latest_succeeded_teacher_records_a_failed_fire(
    db: sessionmaker[Session], settings: Settings, broker: redis.Redis
) -> None:
    template = _template(settings, kind="distill", teacher={"latest_succeeded": "no-such-job"})
    template["grid"] = "daik"
    sid = _schedule(db, template)
    fired = dispatch_schedules(db, settings, now=T0 + dt.timedelta(minutes=5))
    assert len(fired) == 1 and fired[0].batch_id is None
    assert fired[0].error is not None and "no-such-job" in fired[0].error
    with db() as s:
        sched = s.get_one(Schedule, sid)
        assert sched.last_fire_status == "failed" and "no-such-job" in (sched.last_fire_error or "")
        assert sched.next_fire_at == T0 + dt.timedelta(minutes=10)
        assert s.scalar(select(func.count()).select_from(Batch)) == 0


def test_a_schedule_fires_as_its_owner_and_stops_when_the_owner_token_is_revoked(
    db: sessionmaker[Session], settings: Settings, broker: redis.Redis
) -> None:
    owner = _token(db, "nightly-owner")
    sid = _schedule(db, _template(settings), owner=owner)
    fired = dispatch_schedules(db, settings, now=T0 + dt.timedelta(minutes=5))
    assert len(fired) == 1 and fired[0].batch_id is not None and fired[0].error is None
    with db() as s:  # the batch and its job belong to the schedule's owner
        batch = s.get_one(Batch, fired[0].batch_id)
        assert batch.created_by == owner
        assert [j.created_by for j in s.scalars(select(Job))] == [owner]

    with db() as s:
        assert revoke_token(s, owner) is not None
        s.commit()
    fired = dispatch_schedules(db, settings, now=T0 + dt.timedelta(minutes=10))
    assert len(fired) == 1 and fired[0].batch_id is None and not fired[0].created
    assert fired[0].error is not None and "'nightly-owner'" in fired[0].error and "revoked" in fired[0].error
    with db() as s:
        sched = s.get_one(Schedule, sid)
        assert sched.last_fire_status == "failed" and sched.last_fire_at == T0 + dt.timedelta(minutes=10)
        assert sched.last_fire_error == fired[0].error
        assert sched.enabled is False and sched.next_fire_at is None and sched.version == 2
        assert s.scalar(select(func.count()).select_from(Batch)) == 1  # no batch for the refused fire
        assert s.scalar(select(func.count()).select_from(Job)) == 1
    assert dispatch_schedules(db, settings, now=T0 + dt.timedelta(hours=1)) == []  # it fires no more


def test_a_schedule_whose_owner_token_expired_stops_firing(
    db: sessionmaker[Session], settings: Settings, broker: redis.Redis
) -> None:
    owner = _token(db, "short-lived", expires_in=dt.timedelta(hours=1))
    _schedule(db, _template(settings), owner=owner)
    later = dt.datetime.now(UTC) + dt.timedelta(hours=2)  # past the token's expiry, a fire time long due
    fired = dispatch_schedules(db, settings, now=later)
    assert len(fired) == 1 and fired[0].batch_id is None
    assert fired[0].error is not None and "'short-lived'" in fired[0].error and "expired" in fired[0].error
    with db() as s:
        assert s.scalar(select(func.count()).select_from(Batch)) == 0


def test_a_schedule_without_an_owner_is_admin_owned_and_fires(
    db: sessionmaker[Session], settings: Settings, broker: redis.Redis
) -> None:
    _schedule(db, _template(settings))  # owner null: rows from before owners were recorded
    fired = dispatch_schedules(db, settings, now=T0 + dt.timedelta(minutes=5))
    assert len(fired) == 1 and fired[0].batch_id is not None and fired[0].error is None
