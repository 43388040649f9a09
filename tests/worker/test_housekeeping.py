"""The re-dispatcher and the reaper on crafted rows (PostgreSQL, sends into Redis db 12)."""

from __future__ import annotations

import uuid

import redis
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Attempt, Job
from service.db.session import session_scope
from service.queue import message_taken, send_train
from service.settings import Settings
from tests.worker.conftest import add_job, ago, get_job, job_events, sent_jobs
from worker.housekeeping import reap, redispatch
from worker.pipelines import claim_job


def test_redispatch_resends_queued_jobs_whose_send_is_missing_or_stale(
    db: sessionmaker[Session], settings: Settings, broker: redis.Redis
) -> None:
    old = ago(settings.redispatch_after_seconds + 5)
    never_sent = add_job(db, created_at=old)  # the API crashed between its commit and its send
    stale = add_job(db, created_at=old, dispatched_at=old)
    gpu = add_job(db, created_at=old, dispatched_at=old, resources={"gpus": 2})
    add_job(db)  # just created, the API's send may be on its way
    add_job(db, created_at=old, dispatched_at=ago(1))  # sent recently
    add_job(db, created_at=old, status="running")
    add_job(db, created_at=old, status="cancelled")
    sent = redispatch(db, settings)
    assert set(sent) == {never_sent, stale, gpu}
    assert sorted(sent_jobs(broker)) == sorted([str(never_sent), str(stale)])
    assert sent_jobs(broker, "daik.gpus.2") == [str(gpu)]
    for job_id in sent:
        dispatched = get_job(db, job_id).dispatched_at
        assert dispatched is not None and dispatched > ago(10)
    assert redispatch(db, settings) == []  # just re-sent: not again


def test_reap_requeues_fails_or_cancels_jobs_whose_lease_expired(
    db: sessionmaker[Session], settings: Settings, broker: redis.Redis
) -> None:
    def running(**fields: object) -> uuid.UUID:
        """A job claimed by a worker that then died (its lease expired 5 s ago), with ``fields`` set."""
        job_id = add_job(db)
        assert claim_job(db, settings, job_id, owner="dead:1") is not None
        with session_scope(db) as s:
            s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=ago(5), **fields))
        return job_id

    requeue = running(max_restarts=3)
    exhausted = running(max_restarts=1, restarts=1)
    cancelling = running(status="cancelling")
    live = add_job(db)
    assert claim_job(db, settings, live) is not None  # a fresh lease: untouched
    report = reap(db, settings)
    assert (report.requeued, report.failed, report.cancelled) == ([requeue], [exhausted], [cancelling])

    job = get_job(db, requeue)
    assert (job.status, job.restarts, job.failure_kind, job.lease_expires_at) == ("queued", 1, "lost", None)
    assert job.error is not None and job.error.startswith("lost: the worker dead:1 stopped heartbeating")
    assert job.dispatched_at is not None and sent_jobs(broker) == [str(requeue)]
    attempt: Attempt = job.attempts[0]
    assert (attempt.status, attempt.failure_kind, attempt.reason) == ("failed", "lost", job.error)
    assert job_events(db, requeue)[-1] == ("status", {"status": "queued", "attempt": 1, "error": job.error})

    job = get_job(db, exhausted)
    assert (job.status, job.restarts, job.failure_kind) == ("failed", 1, "lost")
    assert job.error is not None and "no restarts left (1 of 1 used)" in job.error and job.finished_at
    job = get_job(db, cancelling)
    assert (job.status, job.error, job.attempts[0].failure_kind) == ("cancelled", None, "lost")
    assert get_job(db, live).status == "running"

    assert reap(db, settings).requeued == []  # nothing left to reap
    retaken = claim_job(db, settings, requeue)  # the re-sent message finds it queued: attempt 2
    assert retaken is not None and retaken.attempt == 2


def test_redispatch_sends_only_jobs_whose_message_is_lost(
    db: sessionmaker[Session], settings: Settings, broker: redis.Redis
) -> None:
    """Each send marks the job in flight in the broker's Redis (``daik:sent:<id>``, with an expiry); a
    worker taking a message clears it. The re-dispatcher sends a stale queued job only when it can set the
    marker anew: not while its message waits in the broker, again once a worker took it (and the job is
    still queued) or the broker lost its data."""
    waiting, taken = add_job(db), add_job(db)
    for job_id in (waiting, taken):
        send_train(settings, job_id, gpus=0)
    assert 0 < broker.ttl(f"daik:sent:{waiting}") <= 3600
    message_taken(settings, taken)  # a worker took it, the job is still queued (e.g. its batch is paused)

    def all_stale() -> None:
        old = ago(settings.redispatch_after_seconds + 5)
        with session_scope(db) as s:
            s.execute(update(Job).values(created_at=old, dispatched_at=old))

    all_stale()
    assert redispatch(db, settings) == [taken]
    assert sorted(sent_jobs(broker)) == sorted([str(waiting), str(taken), str(taken)])
    all_stale()
    assert redispatch(db, settings) == []  # both in flight now
    assert get_job(db, waiting).dispatched_at > ago(10)  # looked at: the next run takes the next jobs

    broker.flushdb()  # the broker lost its messages, and the markers with them
    all_stale()
    assert sorted(redispatch(db, settings)) == sorted([waiting, taken])
    assert sorted(sent_jobs(broker)) == sorted([str(waiting), str(taken)])
