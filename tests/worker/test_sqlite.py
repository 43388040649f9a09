"""The embedded setup (``daik up``): the same claim, fenced upserts and outcome on a migrated SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from daik_core.events import Epoch, Start
from service import migrate
from service.db.models import Job, JobStatus, Metric, MetricArchive
from service.db.session import make_engine, make_sessionmaker, session_scope
from service.settings import Settings
from tests.worker.conftest import add_job, get_job
from worker.pipelines import Verdict, claim_job, end_attempt, heartbeat
from worker.reporting import FencedOut, Reporter, upsert_metrics


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[tuple[sessionmaker[Session], Settings]]:
    settings = Settings(home=tmp_path, database_url=None, broker_url=None, heartbeat_seconds=0.2)
    assert settings.embedded
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine)
    yield make_sessionmaker(engine), settings
    engine.dispose()


def test_claim_report_and_finish_on_sqlite(lite: tuple[sessionmaker[Session], Settings]) -> None:
    db, settings = lite
    job_id = add_job(db)
    first = claim_job(db, settings, job_id)
    assert first is not None and first.attempt == 1 and claim_job(db, settings, job_id) is None
    epoch = Epoch(epoch=1, step=4, metrics={"loss": 2.0})
    Reporter(db, first.fence, artifact_root=settings.artifact_dir).write(
        [Start(epochs=2, iters_per_epoch=4), epoch]
    )
    with session_scope(db) as s:  # the worker died and the job went back to the queue
        s.execute(update(Job).where(Job.id == job_id).values(status="queued"))
    second = claim_job(db, settings, job_id)
    assert second is not None and second.attempt == 2
    with pytest.raises(FencedOut):
        heartbeat(db, settings, first.fence)
    with session_scope(db) as s:  # ON CONFLICT .. WHERE: a newer attempt overwrites, an older one cannot

        def put(key: str, step: int, value: float, attempt: int) -> None:
            row = {"job_id": job_id, "key": key, "step": step, "value": value, "epoch": 1, "attempt": attempt}
            upsert_metrics(s, [row])

        put("loss", 4, 3.0, 2)
        put("loss", 4, 9.0, 1)
        put("lr", 8, 0.1, 1)
    Reporter(db, second.fence, artifact_root=settings.artifact_dir).write(
        [Start(epochs=2, iters_per_epoch=4, epoch=1, step=4)]  # resumed at step 4
    )
    with db() as s:
        assert [(m.key, m.value, m.attempt) for m in s.scalars(select(Metric))] == [("loss", 3.0, 2)]
        assert [(a.key, a.step, a.attempt) for a in s.scalars(select(MetricArchive))] == [("lr", 8, 1)]
    verdict = Verdict(JobStatus.succeeded, "succeeded", job_values={"final_map50": 0.5, "results": {"a": 1}})
    assert (
        end_attempt(db, settings, second, verdict=verdict, exit_code=0, log_tail="ok") == JobStatus.succeeded
    )
    job = get_job(db, job_id)
    assert (job.status, job.final_map50, job.results) == ("succeeded", 0.5, {"a": 1})
    # the second claim closed the first attempt as lost
    assert [(a.status, a.failure_kind) for a in job.attempts] == [("failed", "lost"), ("succeeded", None)]
