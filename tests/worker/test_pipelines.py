"""The pipeline functions against PostgreSQL, without Celery: the claim, the fencing of every write, the
metric upsert, the trainer's command line and the classification of its exits."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from daik_core.events import Checkpoint as CheckpointEvent
from daik_core.events import End, Epoch, Eval, Failure, Progress, RankExit, Start
from service.db.base import utcnow
from service.db.models import (
    Attempt,
    Batch,
    BatchCell,
    EvalResult,
    FailureKind,
    Job,
    JobStatus,
    Metric,
    MetricArchive,
)
from service.db.session import session_scope
from service.settings import Settings
from tests.worker.conftest import add_job, ago, get_job, job_events
from worker.pipelines import (
    ClaimedJob,
    Outcome,
    Stop,
    claim_job,
    heartbeat,
    judge,
    last_error_line,
    prepare_run,
    resume_point,
    tail_lines,
    tracking_environ,
    trainer_command,
)
from worker.reporting import EventTailer, Fence, FencedOut, Reporter, upsert_metrics


def test_claim_takes_a_queued_job_once(db: sessionmaker[Session], settings: Settings) -> None:
    job_id = add_job(db)
    before = utcnow()
    first = claim_job(db, settings, job_id, owner="host:1")
    assert first is not None and first.attempt == 1 and first.spec["name"] == "t"
    assert claim_job(db, settings, job_id, owner="host:2") is None  # a duplicate delivery: nothing
    job = get_job(db, job_id)
    assert (job.status, job.attempt, job.restarts, job.lease_owner) == ("running", 1, 0, "host:1")
    assert job.started_at is not None and job.started_at >= before
    assert job.lease_expires_at is not None
    assert job.lease_expires_at - job.started_at == dt.timedelta(seconds=settings.lease_seconds)
    assert [(a.number, a.worker, a.status) for a in job.attempts] == [(1, "host:1", "running")]
    assert job_events(db, job_id) == [("status", {"status": "running", "attempt": 1, "error": None})]


def test_tracking_environ_names_the_job_and_its_batch(db: sessionmaker[Session], settings: Settings) -> None:
    """What the trainer's MLflow run is tagged with: the job (and attempt); a job of a batch also names the
    batch, whose parent run its run nests under."""
    job_id = add_job(db)
    claimed = claim_job(db, settings, job_id)
    assert claimed is not None
    assert tracking_environ(db, claimed) == {"DAIK_JOB_ID": str(job_id), "DAIK_JOB_ATTEMPT": "1"}
    in_batch = add_job(db)
    with session_scope(db) as s:
        batch = Batch(name="nightly", spec={}, cells=[])
        s.add(batch)
        s.flush()
        s.add(BatchCell(batch_id=batch.id, config="+AD", seed=0, config_hash="h", job_id=in_batch))
        batch_id = batch.id
    claimed = claim_job(db, settings, in_batch)
    assert claimed is not None
    assert tracking_environ(db, claimed) == {
        "DAIK_JOB_ID": str(in_batch),
        "DAIK_JOB_ATTEMPT": "1",
        "DAIK_BATCH_ID": str(batch_id),
        "DAIK_BATCH_NAME": "nightly",
        "DAIK_BATCH_CONFIG": "+AD",
    }


@pytest.mark.parametrize("status", ["cancelled", "succeeded", "failed", "cancelling"])
def test_claim_ignores_jobs_that_are_not_queued(
    db: sessionmaker[Session], settings: Settings, status: str
) -> None:
    job_id = add_job(db, status=status, lease_expires_at=ago(100))
    assert claim_job(db, settings, job_id) is None
    assert get_job(db, job_id).attempt == 0


def test_a_stale_lease_is_taken_over_as_a_restart(db: sessionmaker[Session], settings: Settings) -> None:
    job_id = add_job(db)
    first = claim_job(db, settings, job_id, owner="dead:1")
    assert first is not None
    assert claim_job(db, settings, job_id, owner="host:2") is None  # the lease is live
    with session_scope(db) as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=ago(1), started_at=ago(50)))
    second = claim_job(db, settings, job_id, owner="host:2")
    assert second is not None and second.attempt == 2
    job = get_job(db, job_id)
    assert (job.status, job.attempt, job.restarts, job.lease_owner) == ("running", 2, 1, "host:2")
    assert job.started_at is not None and job.started_at < ago(40)  # kept from the first claim
    old, new = job.attempts
    assert (old.status, old.failure_kind, new.status) == ("failed", "lost", "running")
    # the old attempt is fenced out of every write
    with pytest.raises(FencedOut):
        heartbeat(db, settings, first.fence)
    with pytest.raises(FencedOut):
        Reporter(db, first.fence, artifact_root=settings.artifact_dir).write(
            [{"event": "start", "epochs": 2}]
        )
    assert heartbeat(db, settings, second.fence).cancel is False


def test_a_stale_lease_is_not_taken_over_past_max_restarts(
    db: sessionmaker[Session], settings: Settings
) -> None:
    job_id = add_job(db, status="running", attempt=3, restarts=2, max_restarts=2, lease_expires_at=ago(5))
    assert claim_job(db, settings, job_id) is None  # the reaper fails it
    assert get_job(db, job_id).attempt == 3


def test_heartbeat_extends_the_lease_and_reads_the_cancel_flags(
    db: sessionmaker[Session], settings: Settings
) -> None:
    job_id = add_job(db)
    claimed = claim_job(db, settings, job_id)
    assert claimed is not None
    with session_scope(db) as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=ago(1)))
    control = heartbeat(db, settings, claimed.fence)
    assert (control.cancel, control.force) == (False, False)
    job = get_job(db, job_id)
    assert job.lease_expires_at is not None and job.lease_expires_at > utcnow()
    assert job.attempts[0].heartbeat_at is not None
    with session_scope(db) as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="cancelling", cancel_requested=True, force_cancel=True)
        )
    control = heartbeat(db, settings, claimed.fence)  # still the attempt's job while cancelling
    assert (control.cancel, control.force) == (True, True)
    with session_scope(db) as s:  # the reaper re-queued it: same attempt number, but no longer running
        s.execute(update(Job).where(Job.id == job_id).values(status="queued"))
    with pytest.raises(FencedOut):
        heartbeat(db, settings, claimed.fence)


def _metrics(db: sessionmaker[Session], job_id: object) -> dict[tuple[str, int], tuple[float | None, int]]:
    with db() as s:
        rows = s.scalars(select(Metric).where(Metric.job_id == job_id)).all()
        return {(m.key, m.step): (m.value, m.attempt) for m in rows}


def test_metric_upsert_never_lets_an_older_attempt_overwrite(db: sessionmaker[Session]) -> None:
    job_id = add_job(db)

    def put(attempt: int, value: float, key: str = "loss") -> None:
        with session_scope(db) as s:
            upsert_metrics(
                s,
                [{"job_id": job_id, "key": key, "step": 10, "value": value, "epoch": 1, "attempt": attempt}],
            )

    put(2, 1.0)
    put(1, 9.0)  # older: ignored
    assert _metrics(db, job_id) == {("loss", 10): (1.0, 2)}
    put(2, 2.0)  # same attempt: replaces (a re-sent batch)
    put(3, 3.0)  # newer: replaces
    put(1, 9.0, key="lr")  # another key: a row of its own
    assert _metrics(db, job_id) == {("loss", 10): (3.0, 3), ("lr", 10): (9.0, 1)}


def test_every_reporter_write_moves_the_job_row_s_version(
    db: sessionmaker[Session], settings: Settings
) -> None:
    """The API caches a job's metric reads per job-row version (``service.jobs.cache``): a batch that only
    writes an evaluation (no progress, no epoch) must still update the job row's ``updated_at``."""
    job_id = add_job(db, artifact_root=settings.artifact_dir)
    claimed = claim_job(db, settings, job_id)
    assert claimed is not None
    rep = Reporter(db, claimed.fence, artifact_root=settings.artifact_dir)
    before = get_job(db, job_id).updated_at
    rep.write([Eval(epoch=1, step=5, map50=0.5, map50_95=0.2, ap50={"a": 0.5})])
    after = get_job(db, job_id).updated_at
    assert after > before
    assert _metrics(db, job_id)[("map50", 5)] == (0.5, 1)


def test_reporter_writes_rows_and_events_and_a_resume_archives_what_follows_its_step(
    db: sessionmaker[Session], settings: Settings
) -> None:
    job_id = add_job(db, artifact_root=settings.artifact_dir)
    claimed = claim_job(db, settings, job_id)
    assert claimed is not None
    ckpt = settings.artifact_dir / "jobs" / str(job_id) / "attempt-1" / "weights" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"12345")
    rep = Reporter(db, claimed.fence, artifact_root=settings.artifact_dir)
    rep.write(
        [
            Start(epochs=4, iters_per_epoch=5, epoch=0, step=0),
            Progress(epoch=1, iteration=2, iters_per_epoch=5, step=2, loss=1.0),
            Progress(epoch=1, iteration=4, iters_per_epoch=5, step=4, loss=1.0),
            Eval(epoch=1, step=5, map50=0.25, map50_95=None, ap50={"a": 0.25}),
            Epoch(epoch=1, step=5, metrics={"loss_cls": 2.0, "loss": float("nan")}),
            CheckpointEvent(epoch=1, step=5, path=str(ckpt), is_best=False),
            Epoch(epoch=2, step=10, metrics={"loss_cls": 1.0, "loss": 1.5}),
        ]
    )
    job = get_job(db, job_id)
    assert (job.total_epochs, job.epoch, job.step, job.progress) == (4, 2, 10, 0.5)
    assert _metrics(db, job_id) == {
        ("loss_cls", 5): (2.0, 1),
        ("loss", 5): (None, 1),
        ("map50", 5): (0.25, 1),
        ("map50_95", 5): (None, 1),
        ("loss_cls", 10): (1.0, 1),
        ("loss", 10): (1.5, 1),
    }
    with db() as s:
        ev = s.scalars(select(EvalResult).where(EvalResult.job_id == job_id)).one()
        assert (ev.epoch, ev.step, ev.map50, ev.per_class) == (
            1,
            5,
            0.25,
            {"ap50": {"a": 0.25}, "ap50_95": {}},
        )
    events = job_events(db, job_id)
    # one progress event (the second came within 5 s), then eval, epoch, checkpoint, epoch
    assert [t for t, _ in events] == ["status", "progress", "eval", "epoch", "checkpoint", "epoch"]
    assert events[1][1] == {"epoch": 1, "iteration": 2, "iters_per_epoch": 5, "progress": 0.1}
    assert events[3][1]["metrics"] == {"loss_cls": 2.0, "loss": None}
    path = f"jobs/{job_id}/attempt-1/weights/last.pt"
    assert events[4][1] == {"epoch": 1, "step": 5, "path": path, "is_best": False}
    assert rep.written == 7

    # attempt 2 resumes from step 5 (after epoch 1): attempt 1's rows past step 5 are archived
    with session_scope(db) as s:
        s.execute(update(Job).where(Job.id == job_id).values(status="queued"))
    second = claim_job(db, settings, job_id)
    assert second is not None and second.attempt == 2
    Reporter(db, second.fence, artifact_root=settings.artifact_dir).write(
        [Start(epochs=4, iters_per_epoch=5, epoch=1, step=5)]
    )
    assert set(_metrics(db, job_id)) == {("loss_cls", 5), ("loss", 5), ("map50", 5), ("map50_95", 5)}
    with db() as s:
        archived = s.scalars(select(MetricArchive).where(MetricArchive.job_id == job_id)).all()
        assert sorted((a.key, a.step, a.value, a.attempt) for a in archived) == [
            ("loss", 10, 1.5, 1),
            ("loss_cls", 10, 1.0, 1),
        ]
    job = get_job(db, job_id)
    assert (job.epoch, job.step, job.progress) == (1, 5, 0.25)


def test_event_tailer_reads_complete_lines_only_as_typed_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = EventTailer(path)
    assert tail.read() == []  # no file yet
    path.write_text('{"event": "start", "epochs": 2, "iters_per_epoch": 3}\n{"event": "prog')
    assert tail.read() == [Start(epochs=2, iters_per_epoch=3)]
    with path.open("a") as f:
        f.write('ress", "epoch": 1, "iteration": 1, "iters_per_epoch": 3, "step": 1}\nnot json\n[1]\n')
        f.write('{"event": "epoch", "epoch": "one", "step": 3}\n{"event": "end", "status": "stopped"}\n')
    assert tail.read() == [
        Progress(epoch=1, iteration=1, iters_per_epoch=3, step=1),
        End(status="stopped"),
    ]
    assert tail.read() == []


def _claimed(job_id: object, attempt: int, output: Path | None) -> ClaimedJob:
    spec = {"name": "t", "output": str(output)} if output else {"name": "t"}
    return ClaimedJob(job_id, attempt, spec, {"gpus": 0}, "h:1")  # type: ignore[arg-type]


def test_prepare_run_gives_each_attempt_its_own_folder(settings: Settings) -> None:
    import uuid

    job_id = uuid.uuid4()
    out = settings.artifact_dir / "jobs" / str(job_id)
    files = prepare_run(settings, _claimed(job_id, 1, None))  # no output in the spec: the default folder
    assert (files.output, files.folder) == (out, out / "attempt-1")
    assert yaml.safe_load(files.spec.read_text())["output"] == str(out / "attempt-1")
    assert (files.spec.parent, files.events.name, files.log.name) == (
        files.folder,
        "events.jsonl",
        "trainer.log",
    )
    cmd = trainer_command(files, gpus=0)
    assert cmd == [
        sys.executable, "-m", "daik_core.cli", "train", str(files.spec), "--events", str(files.events), "-q"
    ]  # fmt: skip
    (files.folder / "weights").mkdir()
    (files.folder / "weights" / "last.pt").write_bytes(b"x")  # not this attempt's: never resumed by accident
    assert trainer_command(prepare_run(settings, _claimed(job_id, 1, out)), 0)[-1] == "--overwrite"
    last = files.folder / "weights" / "last.pt"
    again = prepare_run(settings, _claimed(job_id, 2, out), resume_from=last)
    assert again.folder == out / "attempt-2" and trainer_command(again, 0)[-2:] == ["--resume", str(last)]
    assert trainer_command(again, 2)[1:9] == [
        "-m",
        "daik_core.engine.launch",
        "--events",
        str(again.events),
        "--standalone",
        "--nproc-per-node=2",
        f"--log-dir={again.folder / 'torchrun'}",
        "-m",
    ]


def test_resume_point_is_the_newest_recorded_last_checkpoint_of_an_earlier_attempt(
    db: sessionmaker[Session], settings: Settings
) -> None:
    job_id = add_job(db, artifact_root=settings.artifact_dir, max_restarts=5)
    out = settings.artifact_dir / "jobs" / str(job_id)

    def claim() -> ClaimedJob:
        claimed = claim_job(db, settings, job_id)
        assert claimed is not None
        return claimed

    def run(claimed: ClaimedJob, *checkpoints: tuple[str, int, bool]) -> None:
        """The attempt records ``checkpoints`` (name, epoch, is_best) in its folder, then is re-queued."""
        events = []
        for name, epoch, best in checkpoints:
            path = out / f"attempt-{claimed.attempt}" / "weights" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            events.append(CheckpointEvent(epoch=epoch, step=10 * epoch, path=str(path), is_best=best))
        Reporter(db, claimed.fence, artifact_root=settings.artifact_dir).write(events)
        with session_scope(db) as s:
            s.execute(update(Job).where(Job.id == job_id).values(status="queued"))

    first = claim()
    assert resume_point(db, settings, first) is None  # a first attempt starts afresh
    run(first, ("last.pt", 2, False), ("best.pt", 3, True))
    second = claim()
    run(second, ("last.pt", 1, False))  # attempt 2 started over (say) and recorded less
    third = claim()
    assert resume_point(db, settings, third) == out / "attempt-1" / "weights" / "last.pt"
    (out / "attempt-1" / "weights" / "last.pt").unlink()  # a recorded file that is gone is skipped
    assert resume_point(db, settings, third) == out / "attempt-2" / "weights" / "last.pt"


def test_the_log_s_last_lines_and_the_reason_line(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("epoch 1\r 50%\r100%\nTraceback...\ndaik: error: data/x: no images\n\n")
    lines = tail_lines(log)
    assert lines[0] == "100%" and last_error_line(lines) == "daik: error: data/x: no images"
    assert last_error_line(["Traceback", "  File x", "RuntimeError: boom", ""]) == "RuntimeError: boom"
    assert last_error_line([]) is None


def test_judge_from_typed_events() -> None:
    completed = End(status="completed", results={"map50": 0.5, "map50_95": 0.25})
    ok = judge(Outcome(0), events=[completed], lines=[])
    assert ok.status == JobStatus.succeeded and ok.job_values["final_map50"] == 0.5
    no_map = judge(Outcome(0), events=[End(status="completed", results={"map50": None})], lines=[])
    assert (no_map.status, no_map.kind) == (JobStatus.failed, FailureKind.user_error)
    assert judge(Outcome(0), events=[], lines=[]).kind == FailureKind.infra
    assert judge(Outcome(143, Stop.cancel), events=[], lines=[]).status == JobStatus.cancelled
    pre = judge(Outcome(143, Stop.shutdown), events=[], lines=[])
    assert pre.retryable and pre.reason == "preempted: the worker shut down (exit code 143)"
    stopped = End(status="stopped")

    def kind(outcome: Outcome, *events: Any) -> tuple[FailureKind | None, bool]:
        v = judge(outcome, events=events, lines=["last line"])
        return v.kind, v.retryable

    # torchrun stopped by SIGTERM exits 1, but rank 0 reported a stop with a checkpoint: a preemption
    assert kind(Outcome(1), stopped) == (FailureKind.preempted, True)
    assert kind(Outcome(143)) == kind(Outcome(-9)) == kind(Outcome(130)) == (FailureKind.preempted, True)
    # a rank killed by SIGKILL: the OOM killer when the cgroup's count went up, else a preemption
    killed = RankExit(rank=1, exitcode=-9, first=True)
    gloo = Failure(kind="error", message="RuntimeError: Connection closed by peer", rank=0)
    assert kind(Outcome(1, oom_kills=1), killed, gloo) == (FailureKind.oom, False)
    assert kind(Outcome(1, oom_kills=0), killed, gloo) == (FailureKind.preempted, True)
    assert kind(Outcome(1), killed, gloo) == (FailureKind.preempted, True)  # the count is unknown
    assert kind(Outcome(-9, oom_kills=2)) == (FailureKind.oom, False)  # a one-process trainer
    assert kind(Outcome(-15, oom_kills=2)) == (FailureKind.preempted, True)  # not SIGKILL: not the OOM killer
    # the trainer's own failure events
    assert kind(Outcome(1), Failure(kind="oom", message="CUDA out of memory", rank=1)) == (
        FailureKind.oom,
        False,
    )
    # the rank that failed first decides, not the peers torchrun then stopped (SIGTERM) or that saw it go
    ranks = [
        RankExit(rank=0, exitcode=-15),
        RankExit(rank=1, exitcode=1, message="ValueError: x", first=True),
    ]
    v = judge(Outcome(1), events=[*ranks, Failure(kind="error", message="bad", rank=1), stopped], lines=[])
    assert (v.kind, v.retryable, v.reason) == (FailureKind.user_error, False, "rank 1: bad")
    assert (
        judge(Outcome(1), events=ranks, lines=[]).reason == "rank 1: ValueError: x"
    )  # its error file's message
    killed_first = [RankExit(rank=0, exitcode=-15, first=True), killed]  # a tie torchrun broke the wrong way
    v = judge(Outcome(1), events=[*killed_first, gloo], lines=[])
    assert (v.kind, v.reason) == (
        FailureKind.preempted,
        "preempted: rank 1 was killed by SIGKILL (exit code 1)",
    )
    assert (
        judge(Outcome(2), events=[], lines=["daik: error: x", ""]).reason == "daik: error: x"
    )  # no event: the log
    # the supervisor's own stops
    assert kind(Outcome(143, Stop.deadline), stopped) == (FailureKind.timeout, False)
    assert kind(Outcome(143, Stop.stalled), stopped) == (FailureKind.timeout, True)
    assert kind(Outcome(-9, Stop.lease, oom_kills=1)) == (FailureKind.lost, True)


def test_the_attempt_table_keeps_one_row_per_claim(db: sessionmaker[Session], settings: Settings) -> None:
    job_id = add_job(db)
    for _ in range(3):
        claimed = claim_job(db, settings, job_id)
        assert claimed is not None
        with session_scope(db) as s:
            s.execute(update(Job).where(Job.id == job_id).values(status="queued"))
    with db() as s:
        numbers = s.scalars(select(Attempt.number).where(Attempt.job_id == job_id).order_by(Attempt.number))
        assert list(numbers) == [1, 2, 3]
    assert Fence(job_id, 3) == claimed.fence


def test_the_worker_process_never_imports_torch() -> None:
    """The Celery parent forks pool processes; CUDA initialised before a fork fails (SERVICE.md): the worker
    code, the app and the CLI leave torch to the trainer's own process."""
    import subprocess

    code = (
        "import sys, worker.app, worker.tasks, worker.cli, worker.housekeeping;"
        "from worker.app import make_worker_app; from service.settings import Settings;"
        "make_worker_app(Settings(broker_url='memory://'));"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
