"""The work behind ``daik.train``: plain functions over a sessionmaker and the Settings, testable without
Celery. :func:`train` runs them in order::

    claim_job    one UPDATE .. RETURNING takes the job (queued, or running with an expired lease) and bumps
                 the attempt, the fencing token; the attempt row and a ``status`` event in the same
                 transaction; lease and deadline in the database's time (``now()``). No row: a duplicate
                 delivery or a cancelled job, nothing to do.
    prepare_run  this attempt's own folder ``<output>/attempt-<n>``: the trainer's output (its weights,
                 metrics, results), the spec, the event file and the log; the newest ``last.pt`` an earlier
                 attempt recorded is resumed (:func:`resume_point`)
    launch       ``python -m daik_core.cli train SPEC --events FILE -q [--resume PATH]`` (for several GPUs
                 under :mod:`daik_core.engine.launch`, torchrun) in its own session / process group, stdout
                 and stderr to the log, with only the environment it needs, its own devices and CPU threads
                 (:mod:`worker.resources`) plus what experiment tracking tags its run with
                 (:func:`tracking_environ`); the trainer gets SIGTERM if this process dies
                 (PR_SET_PDEATHSIG), so it never trains unsupervised
    supervise    tails the event file into the database and heartbeats (extends the lease, reads the cancel
                 flag) from a thread of its own (:class:`DatabaseLink`), and stops the trainer (:class:`Stop`)
    finish       judges how the trainer ended from its typed events (:func:`judge`) and ends the attempt,
                 fenced, in one transaction that first writes whatever events a database outage held back

Why the supervisor stops a trainer, and how (:class:`Stop`):

    cancel       the client cancelled: SIGTERM (a forced cancel: SIGKILL); the job ends ``cancelled``
    shutdown     the worker is shutting down: SIGTERM; ``preempted``, re-queued
    deadline     ``resources.timeout`` after the job's first start: SIGTERM; ``timeout``, not retried
    stalled      no event for ``progress_timeout_seconds``: SIGTERM; ``timeout``, retried
    fenced       a write found that the job moved on (another attempt holds it): SIGKILL, nothing recorded
    lease        no heartbeat succeeded for the lease period less one heartbeat interval (the database is
                 unreachable, so the reaper may hand the job to another worker): SIGKILL before the lease
                 expires, so that two attempts never train at once; ``lost``, retried

SIGTERM goes to the trainer process only (it checkpoints ``last.pt``, writes an ``end`` event with status
``stopped`` and exits; torchrun forwards it to its ranks). Sent to the whole group, it would also kill the
DataLoader's worker processes, whose death the trainer reports as an error instead of checkpointing.
SIGKILL, after ``cancel_grace_seconds`` (at once where said above), goes to the whole group, and so does a
last SIGKILL once the trainer has exited, so that no process of the job outlives it.

How an attempt ended (:func:`judge`), from what the trainer reported (:mod:`daik_core.events`), never from
its log's text: ``succeeded`` needs exit 0, an ``end`` event ``completed`` and the final mAP; then, in
order: the supervisor's own stop (above); the trainer, or the rank whose failure ended a torchrun run (a
``rank_exit`` event not killed by torchrun's own SIGTERM), killed by SIGKILL while the kernel's OOM kill
count of its cgroup went up (:mod:`worker.oom`): ``oom``; a ``failure`` event ``oom``: ``oom``; that rank's
``failure`` event ``error``: ``user_error``; that rank killed by a signal: ``preempted``; that rank's exit
without an event: ``user_error``; an ``end`` event ``stopped`` (someone asked the trainer to stop and it
checkpointed, e.g. SIGTERM to torchrun, which then exits 1): ``preempted``; the trainer killed by a signal
(exit -N, 130, 137, 143): ``preempted``; a ``failure`` event ``error``: ``user_error`` with its message;
anything else: ``user_error`` with the log's last line as the reason. ``preempted``, ``lost``, ``infra``
and a stalled trainer's ``timeout`` are retried while ``restarts < max_restarts``.

The Celery parent never imports torch: the trainer is a separate ``python`` process. (How a worker's own
shutdown reaches :func:`supervise` as ``stop``: :mod:`worker.app`.)
"""

from __future__ import annotations

import ctypes
import datetime as dt
import enum
import logging
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Row, case, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from daik_core.events import End, Event, Failure, RankExit
from service.db.holds import held_by_batch
from service.db.models import Attempt, Batch, BatchCell, Checkpoint, FailureKind, Job, JobStatus
from service.db.session import db_now, session_scope
from service.queue import send_train
from service.settings import Settings
from worker.oom import OomKills
from worker.reporting import (
    EventTailer,
    Fence,
    FencedOut,
    Reporter,
    add_job_events,
    lock_job,
    read_events,
    require_transition,
)
from worker.resources import DeviceError, Grant, trainer_environ

__all__ = [
    "LOG_TAIL_LINES",
    "ClaimedJob",
    "Control",
    "DatabaseLink",
    "Outcome",
    "RunFiles",
    "Stop",
    "Verdict",
    "claim_job",
    "end_attempt",
    "finish",
    "heartbeat",
    "judge",
    "last_error_line",
    "launch",
    "prepare_run",
    "resume_point",
    "supervise",
    "train",
    "trainer_command",
    "worker_id",
]

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 50
RETRYABLE_EXIT_CODES = frozenset({130, 137, 143})  # 128 + SIGINT / SIGKILL / SIGTERM
_WRITE_TRIES = 5  # writes during the run are retried a few times (the database may be restarting)
_MAX_BACKOFF_S = 5.0


def worker_id() -> str:
    """``<hostname>:<pid>``: the lease owner and the attempt's worker."""
    return f"{socket.gethostname()}:{os.getpid()}"


def gpus_of(resources: Mapping[str, Any] | None) -> int:
    return int((resources or {}).get("gpus", 0) or 0)


@dataclass(frozen=True)
class ClaimedJob:
    """What a successful claim returns: the attempt number (the fencing token), what the run needs, and
    how long the job may still run (``remaining_s``: to its deadline, ``resources.timeout``; ``None``: no
    deadline) as of ``claimed_at`` (``time.monotonic()`` just before the claim, when its lease began)."""

    job_id: uuid.UUID
    attempt: int
    spec: dict[str, Any]
    resources: dict[str, Any]
    owner: str
    remaining_s: float | None = None
    claimed_at: float = field(default_factory=time.monotonic)

    @property
    def fence(self) -> Fence:
        return Fence(self.job_id, self.attempt)

    @property
    def gpus(self) -> int:
        return gpus_of(self.resources)


# --------------------------------------------------------------------------------------------- claim
def claim_job(
    db: sessionmaker[Session], settings: Settings, job_id: uuid.UUID, *, owner: str | None = None
) -> ClaimedJob | None:
    """Take the job atomically (SERVICE.md): a queued job, or a running one whose lease expired (its open
    attempt is closed as ``lost``; taking it over counts as a restart and is allowed while ``restarts <
    max_restarts``, past that the reaper fails the job). ``None``: nothing to take (a duplicate delivery, a
    cancelled or finished job, a live lease, an unknown id). Times are the database's (:func:`db_now`): the
    lease, and the deadline that the first claim of a job with ``resources.timeout`` sets."""
    owner = owner or worker_id()
    claimed_at = time.monotonic()
    with session_scope(db) as s:
        now = db_now(s)
        row = _take_job(s, job_id, owner, now, lease_seconds=settings.lease_seconds)
        if row is None:
            log.info("job %s: nothing to claim (a duplicate delivery, or the job is not queued)", job_id)
            return None
        attempt = int(row.attempt)
        resources = dict(row.resources or {})
        deadline = _first_deadline(s, job_id, now, row.deadline_at, resources)
        _open_attempt(s, job_id, attempt, owner, now)
    remaining = (deadline - now).total_seconds() if deadline is not None else None
    log.info("job %s: claimed as attempt %d by %s", job_id, attempt, owner)
    return ClaimedJob(job_id, attempt, dict(row.spec), resources, owner, remaining, claimed_at)


def _take_job(
    s: Session, job_id: uuid.UUID, owner: str, now: dt.datetime, *, lease_seconds: float
) -> Row[Any] | None:
    """The claim's ``UPDATE .. RETURNING attempt, spec, resources, deadline_at``: the job becomes
    ``running`` under ``owner``'s lease with the next attempt number; ``None``: nothing to take."""
    running = JobStatus.running.value
    stale = (Job.status == running) & (Job.lease_expires_at < now) & (Job.restarts < Job.max_restarts)
    stmt = (
        update(Job)
        # a queued job of a paused / stopped / cancelled batch is held: not started (service.batches)
        .where(Job.id == job_id, ((Job.status == JobStatus.queued.value) & ~held_by_batch(Job.id)) | stale)
        .values(
            status=running,
            attempt=Job.attempt + 1,
            # SET expressions see the row before the update: taking over a running job is a restart
            restarts=Job.restarts + case((Job.status == running, 1), else_=0),
            lease_owner=owner,
            lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Job.started_at, now),
            error=None,
            failure_kind=None,
            finished_at=None,
            updated_at=now,
        )
        .returning(Job.attempt, Job.spec, Job.resources, Job.deadline_at)
        .execution_options(synchronize_session=False)
    )
    return s.execute(stmt).one_or_none()


def _first_deadline(
    s: Session,
    job_id: uuid.UUID,
    now: dt.datetime,
    deadline: dt.datetime | None,
    resources: Mapping[str, Any],
) -> dt.datetime | None:
    """The job's deadline: the stored one, else (the first claim) ``now + resources.timeout``, stored."""
    timeout = resources.get("timeout")
    if deadline is None and timeout:
        deadline = now + dt.timedelta(seconds=float(timeout))
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(deadline_at=deadline)
            .execution_options(synchronize_session=False)
        )
    return deadline


def _open_attempt(s: Session, job_id: uuid.UUID, attempt: int, owner: str, now: dt.datetime) -> None:
    """Close an earlier attempt still open (``lost``: its lease expired), open attempt ``attempt``, and
    add a ``status`` event."""
    running = JobStatus.running.value
    s.execute(
        update(Attempt)
        .where(Attempt.job_id == job_id, Attempt.number < attempt, Attempt.status == running)
        .values(
            status=JobStatus.failed.value,
            failure_kind=FailureKind.lost.value,
            reason=f"the lease expired (no heartbeat); taken over by attempt {attempt}",
            finished_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    s.execute(
        insert(Attempt).values(
            job_id=job_id, number=attempt, worker=owner, status=running, started_at=now, heartbeat_at=now
        )
    )
    event = {"status": running, "attempt": attempt, "error": None}
    add_job_events(s, job_id, attempt=attempt, events=[("status", event)])


# ----------------------------------------------------------------------------------------------- run
@dataclass(frozen=True)
class RunFiles:
    """The files of one attempt: the job's output folder (``spec.output``), this attempt's folder in it
    (``attempt-<n>``: the trainer's output, where it writes its weights, metrics and results, so that two
    attempts never write the same file), the spec written there, the event file, the log, and the
    checkpoint the trainer resumes from (``--resume PATH``; ``None``: it starts afresh)."""

    output: Path
    folder: Path
    spec: Path
    events: Path
    log: Path
    resume_from: Path | None = None

    @property
    def torchrun_logs(self) -> Path:
        """torchrun's ``--log-dir`` (its ranks' error files) and its own error file."""
        return self.folder / "torchrun"


def job_output(settings: Settings, job_id: uuid.UUID, *, spec: Mapping[str, Any]) -> Path:
    """``spec.output``; when absent or relative, under ``<artifact_root>/jobs/<job_id>``."""
    output = Path(spec["output"]) if spec.get("output") else settings.artifact_dir / "jobs" / str(job_id)
    return output if output.is_absolute() else settings.artifact_dir / output


def resume_point(db: sessionmaker[Session], settings: Settings, claimed: ClaimedJob) -> Path | None:
    """The checkpoint a new attempt resumes from: the ``last.pt`` (not best) that an earlier attempt
    recorded last (the most steps; between equals, the later attempt), whose file exists. ``None`` for a
    first attempt, and after a retry from scratch (which drops the job's checkpoint rows)."""
    with db() as s:
        rows = s.execute(
            select(Checkpoint.path)
            .where(
                Checkpoint.job_id == claimed.job_id,
                Checkpoint.attempt < claimed.attempt,
                Checkpoint.is_best.is_(False),
                Checkpoint.valid.is_(True),
            )
            .order_by(Checkpoint.step.desc(), Checkpoint.attempt.desc(), Checkpoint.id.desc())
        ).all()
    for (stored,) in rows:
        path = Path(stored) if Path(stored).is_absolute() else settings.artifact_dir / stored
        if path.is_file():
            return path
        log.warning(
            "job %s: checkpoint %s is recorded but missing; not resuming from it", claimed.job_id, path
        )
    return None


def prepare_run(settings: Settings, claimed: ClaimedJob, *, resume_from: Path | None = None) -> RunFiles:
    """Make this attempt's folder ``<output>/attempt-<n>`` and write ``job.spec`` there as YAML, its
    ``output`` set to that folder; name the attempt's event file (``events.jsonl``) and log
    (``trainer.log``). The trainer resumes from ``resume_from`` (see :func:`resume_point`)."""
    output = job_output(settings, claimed.job_id, spec=claimed.spec)
    folder = output / f"attempt-{claimed.attempt}"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**claimed.spec, "output": str(folder)}
    spec_path = folder / "job_spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    events = folder / "events.jsonl"
    events.unlink(missing_ok=True)
    return RunFiles(output, folder, spec_path, events, folder / "trainer.log", resume_from)


def tracking_environ(db: sessionmaker[Session], claimed: ClaimedJob) -> dict[str, str]:
    """What the trainer's experiment tracking (``daik_core.engine.tracking``, whose names these are; the
    worker does not import it, it loads torch) tags its run with: the job's id and attempt, and for a job
    of a batch the batch's id and name and the job's configuration (MLflow nests the job's run under the
    batch's parent run)."""
    env = {"DAIK_JOB_ID": str(claimed.job_id), "DAIK_JOB_ATTEMPT": str(claimed.attempt)}
    with db() as s:
        row = s.execute(
            select(BatchCell.batch_id, BatchCell.config, Batch.name)
            .join(Batch, Batch.id == BatchCell.batch_id)
            .where(BatchCell.job_id == claimed.job_id)
        ).one_or_none()
    if row is not None:
        env.update(DAIK_BATCH_ID=str(row.batch_id), DAIK_BATCH_NAME=row.name, DAIK_BATCH_CONFIG=row.config)
    return env


def trainer_command(files: RunFiles, gpus: int, *, prefix: str | None = None) -> list[str]:
    """``python -m daik_core.cli train SPEC --events FILE -q [--resume PATH] [--overwrite]``; for several
    GPUs the same under :mod:`daik_core.engine.launch` (torchrun ``--standalone --nproc-per-node=N``, its
    logs and the ranks' error files in the attempt's ``torchrun`` folder). ``prefix``
    (``settings.trainer_command``) replaces ``python -m daik_core.cli`` of a one-process run."""
    args = ["-m", "daik_core.cli", "train", str(files.spec), "--events", str(files.events), "-q"]
    if files.resume_from is not None:
        args += ["--resume", str(files.resume_from)]
    elif (
        files.folder / "weights" / "last.pt"
    ).is_file():  # not this attempt's run: never resumed by accident
        args.append("--overwrite")
    if prefix and gpus <= 1:
        return [*shlex.split(prefix), *args[2:]]
    if gpus > 1:
        return [
            sys.executable,
            "-m",
            "daik_core.engine.launch",
            "--events",
            str(files.events),
            "--standalone",
            f"--nproc-per-node={gpus}",
            f"--log-dir={files.torchrun_logs}",
            *args,
        ]
    return [sys.executable, *args]


# PR_SET_PDEATHSIG from <linux/prctl.h>; libc is loaded here, in the parent, so that the forked child only
# makes the call (no dynamic loading between fork and exec)
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _term_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent (this worker process) dies."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def launch(
    command: list[str], files: RunFiles, *, env: Mapping[str, str], pass_fds: tuple[int, ...] = ()
) -> subprocess.Popen[bytes]:
    """Start the trainer in its own session (so its process group is its own, and a terminal's signals do
    not reach it) with the environment ``env`` (:func:`worker.resources.trainer_environ`: its devices and
    threads, no secrets), stdout and stderr appended to ``files.log``; ``pass_fds``: the locks of its
    devices, held for as long as it runs."""
    with files.log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=files.folder,
            env=dict(env),
            pass_fds=pass_fds,
            start_new_session=True,
            preexec_fn=_term_with_parent,  # one prctl call: safe between fork and exec
        )


def _record_launch(db: sessionmaker[Session], claimed: ClaimedJob, pid: int, files: RunFiles) -> None:
    with session_scope(db) as s:
        lock_job(s, claimed.fence)
        s.execute(
            update(Attempt)
            .where(Attempt.job_id == claimed.job_id, Attempt.number == claimed.attempt)
            .values(pid=pid, resumed_from=str(files.resume_from) if files.resume_from else None)
            .execution_options(synchronize_session=False)
        )


# ------------------------------------------------------------------------------------------ supervise
@dataclass(frozen=True)
class Control:
    """What a heartbeat reads back: the client's cancel request."""

    cancel: bool
    force: bool


def heartbeat(db: sessionmaker[Session], settings: Settings, fence: Fence) -> Control:
    """Extend the lease to the database's ``now()`` + ``lease_seconds`` (fenced) and read the cancel flags;
    raises :class:`FencedOut` when the job has moved on."""
    with session_scope(db) as s:
        now = db_now(s)
        stmt = (
            update(Job)
            .where(*fence.where())
            .values(lease_expires_at=now + dt.timedelta(seconds=settings.lease_seconds), updated_at=now)
            .returning(Job.status, Job.cancel_requested, Job.force_cancel)
            .execution_options(synchronize_session=False)
        )
        row = s.execute(stmt).one_or_none()
        if row is None:
            raise FencedOut(f"job {fence.job_id}: attempt {fence.attempt} no longer holds the job")
        s.execute(
            update(Attempt)
            .where(Attempt.job_id == fence.job_id, Attempt.number == fence.attempt)
            .values(heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )
    cancel = bool(row.cancel_requested) or row.status == JobStatus.cancelling.value
    return Control(cancel=cancel, force=cancel and bool(row.force_cancel))


class DatabaseLink(threading.Thread):
    """The supervisor's link to the database, in a thread of its own so that a database that is down or
    hangs never keeps the supervisor from stopping its trainer: every ``poll_s`` it writes the events it was
    given (:meth:`put`; a batch that fails is kept and written again), every ``heartbeat_seconds`` it
    heartbeats, and it publishes what it learns: the cancel flags (:attr:`control`), whether the job moved
    on (:attr:`fenced`) and when the last successful heartbeat was sent (:attr:`beat_ok_at`, monotonic; the
    claim's time at first)."""

    def __init__(
        self,
        db: sessionmaker[Session],
        settings: Settings,
        claimed: ClaimedJob,
        *,
        reporter: Reporter,
        poll_s: float,
    ) -> None:
        super().__init__(name=f"daik-link-{claimed.job_id}", daemon=True)
        self.db = db
        self.settings = settings
        self.claimed = claimed
        self.reporter = reporter
        self.poll_s = poll_s
        self.control = Control(cancel=False, force=False)
        self.fenced = False
        self.beat_ok_at = claimed.claimed_at
        self._pending: list[Event] = []
        self._lock = threading.Lock()
        self._done = threading.Event()

    def put(self, events: Sequence[Event]) -> None:
        with self._lock:
            self._pending += events

    def close(self, timeout: float) -> None:
        """Write what is pending (a last try) and end the thread; wait at most ``timeout`` seconds."""
        self._done.set()
        self.join(timeout)
        if self.is_alive():
            log.warning("job %s: the database link is still busy after %.0f s", self.claimed.job_id, timeout)

    def run(self) -> None:
        next_beat = time.monotonic() + self.settings.heartbeat_seconds
        while True:
            done = self._done.is_set()
            self._flush()
            if done or self.fenced:
                return
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.settings.heartbeat_seconds
                self._beat()
            self._done.wait(self.poll_s)

    def _flush(self) -> None:
        with self._lock:
            batch = list(self._pending)
        if not batch or self.fenced:
            return
        try:
            self.reporter.write(batch)
        except FencedOut:
            self.fenced = True
            log.warning("job %s: attempt %d lost the job", self.claimed.job_id, self.claimed.attempt)
        except SQLAlchemyError as err:
            log.warning(
                "job %s: writing %d events failed (will retry): %s", self.claimed.job_id, len(batch), err
            )
            return
        with self._lock:
            del self._pending[: len(batch)]

    def _beat(self) -> None:
        sent = time.monotonic()
        try:
            self.control = heartbeat(self.db, self.settings, self.claimed.fence)
        except FencedOut:
            self.fenced = True
            log.warning("job %s: attempt %d lost the job", self.claimed.job_id, self.claimed.attempt)
        except SQLAlchemyError as err:
            log.warning("job %s: heartbeat failed (will retry): %s", self.claimed.job_id, err)
        else:
            self.beat_ok_at = sent


class Stop(str, enum.Enum):
    """Why the supervisor stopped the trainer (see the module docstring)."""

    cancel = "cancel"
    shutdown = "shutdown"
    deadline = "deadline"
    stalled = "stalled"
    fenced = "fenced"
    lease = "lease"


@dataclass(frozen=True)
class Outcome:
    """How the trainer ended under supervision: its exit code, why the supervisor stopped it (``None``: it
    ended by itself), and how many processes the kernel's OOM killer killed in its cgroup meanwhile
    (``None``: unknown, see :mod:`worker.oom`)."""

    returncode: int
    stop: Stop | None = None
    oom_kills: int | None = None


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _signal_process(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            proc.send_signal(sig)


class _Supervisor:
    """:func:`supervise`'s state: the trainer, the link to the database, why and when it was stopped."""

    def __init__(
        self,
        settings: Settings,
        claimed: ClaimedJob,
        proc: subprocess.Popen[bytes],
        link: DatabaseLink,
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.claimed = claimed
        self.proc = proc
        self.link = link
        self.stop_event = stop
        remaining = claimed.remaining_s
        self.deadline = claimed.claimed_at + remaining if remaining is not None else None
        self.last_event = time.monotonic()  # for the watchdog: the trainer's start counts as progress
        # SIGKILL before the lease expires: the database's expiry is at least the lease after the send
        self.lease_kill_s = max(
            settings.lease_seconds - settings.heartbeat_seconds, settings.lease_seconds / 2
        )
        self.stop: Stop | None = None
        self.term_at: float | None = None
        self.killed = False

    def step(self, now: float, events: Sequence[Event]) -> None:
        """React to what happened since the last step (``events``: the trainer's new events) while the
        trainer runs: hand the events on, stop the trainer when needed, SIGKILL it when it ignores SIGTERM
        past the grace period."""
        if events:
            self.last_event = now
            self.link.put(events)
        if self.proc.poll() is not None:
            return
        self._check(now)
        self._escalate(now)

    def _check(self, now: float) -> None:
        """Stop the trainer for the first reason that applies (see :class:`Stop`), if any."""
        control = self.link.control
        if self.link.fenced:
            self.kill(Stop.fenced, "the job moved on (another attempt holds it)")
        elif now - self.link.beat_ok_at >= self.lease_kill_s:
            self.kill(Stop.lease, f"no heartbeat for {now - self.link.beat_ok_at:.0f} s: the lease runs out")
        elif control.force:
            self.kill(Stop.cancel, "forced cancel")
        elif control.cancel:
            self.terminate(Stop.cancel, "cancel requested")
        elif self.stop_event.is_set():
            self.terminate(Stop.shutdown, "the worker is shutting down")
        elif self.deadline is not None and now >= self.deadline:
            self.terminate(Stop.deadline, "the job's deadline passed (resources.timeout)")
        elif 0 < self.settings.progress_timeout_seconds <= now - self.last_event:
            self.terminate(Stop.stalled, f"no event from the trainer for {now - self.last_event:.0f} s")

    def _escalate(self, now: float) -> None:
        """SIGKILL to the group once the trainer has ignored SIGTERM for ``cancel_grace_seconds``."""
        if self.term_at is None or self.killed or now - self.term_at < self.settings.cancel_grace_seconds:
            return
        log.warning(
            "job %s: the trainer ignored SIGTERM for %.0f s; SIGKILL", self.claimed.job_id, now - self.term_at
        )
        self.killed = True
        _signal_group(self.proc.pid, signal.SIGKILL)

    def terminate(self, why: Stop, text: str) -> None:
        """SIGTERM to the trainer (once; the first reason is kept)."""
        if self.term_at is None and not self.killed:
            log.info("job %s: %s; stopping the trainer (SIGTERM)", self.claimed.job_id, text)
            self.stop = self.stop or why
            self.term_at = time.monotonic()
            _signal_process(self.proc, signal.SIGTERM)

    def kill(self, why: Stop, text: str) -> None:
        """SIGKILL to the trainer's group (once); losing the job or the lease overrides an earlier reason."""
        if not self.killed:
            log.warning("job %s: %s; SIGKILL to the trainer", self.claimed.job_id, text)
            self.killed = True
            _signal_group(self.proc.pid, signal.SIGKILL)
        if why in (Stop.fenced, Stop.lease) or self.stop is None:
            self.stop = why


def supervise(
    db: sessionmaker[Session],
    settings: Settings,
    claimed: ClaimedJob,
    *,
    proc: subprocess.Popen[bytes],
    files: RunFiles,
    stop: threading.Event | None = None,
    poll_s: float = 0.5,
    reporter: Reporter | None = None,
) -> Outcome:
    """Watch the trainer until it exits: every ``poll_s`` read its new events and hand them to the
    :class:`DatabaseLink` (which writes them and heartbeats), and stop it when needed (:class:`Stop`).
    Returns once the trainer has exited and no process of its group is left."""
    reporter = reporter or Reporter(db, claimed.fence, artifact_root=settings.artifact_dir)
    link = DatabaseLink(db, settings, claimed, reporter=reporter, poll_s=poll_s)
    sup = _Supervisor(settings, claimed, proc, link, stop or threading.Event())
    tailer = EventTailer(files.events)
    link.start()
    try:
        while True:
            returncode = proc.poll()
            events = tailer.read()  # after poll(): everything the trainer wrote before exiting
            sup.step(time.monotonic(), events)
            if returncode is not None:
                break
            time.sleep(poll_s)
    finally:
        if proc.poll() is None:  # an unexpected error here: never leave the trainer unsupervised
            _signal_process(proc, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=settings.cancel_grace_seconds)
        _signal_group(proc.pid, signal.SIGKILL)  # whatever of the group is left (loader workers, children)
        proc.wait()
        link.close(timeout=_WRITE_TRIES * poll_s + 5.0)
    return Outcome(returncode=int(proc.returncode), stop=sup.stop)


# --------------------------------------------------------------------------------------------- finish
def tail_lines(path: Path, *, n: int = LOG_TAIL_LINES, max_bytes: int = 256 * 1024) -> list[str]:
    """The last ``n`` lines of a text file (reading at most its last ``max_bytes``); a progress bar's
    carriage-return updates count as their last state."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(size - max_bytes, 0))
            data = f.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", "replace").rstrip("\n")
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")] if text else []
    return list(deque(lines, maxlen=n))


def last_error_line(lines: list[str]) -> str | None:
    """A reason for a trainer that failed without saying why (no ``failure`` event): its last ``daik: error:
    ...`` line, else the last non-blank line (a traceback's exception line), or ``None`` for an empty log."""
    for line in reversed(lines):
        if line.startswith("daik: error:"):
            return line.strip()
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return None


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _retry_db(what: str, fn: Callable[[], Any], for_seconds: float) -> Any:
    """``fn()``, tried again on a database error (1, 2, 4, 5, 5 ... s apart) for up to ``for_seconds``."""
    deadline = time.monotonic() + for_seconds
    wait = 1.0
    tries = 0
    while True:
        tries += 1
        try:
            return fn()
        except SQLAlchemyError as err:
            if time.monotonic() + wait > deadline:
                raise
            log.warning("%s failed (try %d; again in %.0f s): %s", what, tries, wait, err)
            time.sleep(wait)
            wait = min(wait * 2, _MAX_BACKOFF_S)


Replay = Callable[[Session], None]


def _end_target(verdict: Verdict, current: JobStatus, job: Job) -> JobStatus:
    """Where the job goes: the verdict's status; a ``retryable`` failure back to the queue while restarts
    are left; a job being cancelled ``cancelled`` unless it succeeded."""
    target = verdict.status
    if verdict.retryable and job.restarts < job.max_restarts and current == JobStatus.running:
        target = JobStatus.queued
    if current == JobStatus.cancelling and target != JobStatus.succeeded:
        target = JobStatus.cancelled  # the client asked to cancel: that is how it ends
    return target


def _end_values(verdict: Verdict, target: JobStatus, job: Job, now: dt.datetime) -> dict[str, Any]:
    """The job row's new values (``status`` included) for ``target``."""
    kind_value = verdict.kind.value if verdict.kind else None
    values: dict[str, Any] = dict(verdict.job_values)
    if target == JobStatus.queued:
        values.update(
            restarts=job.restarts + 1, dispatched_at=now, error=verdict.reason, failure_kind=kind_value
        )
    elif target == JobStatus.cancelled:
        values.update(finished_at=now)
    else:
        values.update(finished_at=now, error=verdict.reason, failure_kind=kind_value)
    values["status"] = target.value
    return values


def _record_end(
    s: Session,
    claimed: ClaimedJob,
    verdict: Verdict,
    *,
    exit_code: int | None,
    log_tail: str | None,
    replay: Replay | None,
) -> JobStatus:
    """:func:`end_attempt`'s transaction, in ``s``: replay, the job row, the attempt row, a ``status``
    event. Returns the job's new status; raises :class:`FencedOut`."""
    now = db_now(s)
    current = lock_job(s, claimed.fence)
    if replay is not None:
        replay(s)
    job = s.get_one(Job, claimed.job_id)
    target = _end_target(verdict, current, job)
    values = _end_values(verdict, target, job, now)
    require_transition(current, target)
    lock_job(s, claimed.fence, lease_expires_at=None, **values)
    s.execute(
        update(Attempt)
        .where(Attempt.job_id == claimed.job_id, Attempt.number == claimed.attempt)
        .values(
            status=verdict.attempt_status,
            exit_code=exit_code,
            failure_kind=verdict.kind.value if verdict.kind else None,
            reason=verdict.reason,
            log_tail=log_tail,
            finished_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    error = verdict.reason if target in (JobStatus.failed, JobStatus.queued) else None
    event = {"status": target.value, "attempt": claimed.attempt, "error": error}
    add_job_events(s, claimed.job_id, attempt=claimed.attempt, events=[("status", event)])
    return target


def end_attempt(
    db: sessionmaker[Session],
    settings: Settings,
    claimed: ClaimedJob,
    *,
    verdict: Verdict,
    exit_code: int | None,
    log_tail: str | None,
    replay: Replay | None = None,
) -> JobStatus | None:
    """End the attempt and move the job, fenced, in one transaction: first ``replay`` (the trainer's events
    that are not written yet, :meth:`Reporter.catch_up`), then the attempt row, the job row (through the
    state machine) and a ``status`` event. A ``retryable`` verdict re-queues the job (``restarts + 1``) while
    ``restarts < max_restarts`` and sends it again after the commit. A database that is down is waited for
    up to the lease period (beyond it the reaper has taken the job back). Returns the job's new status, or
    ``None`` when the fence was lost (nothing written)."""

    def write() -> JobStatus:
        with session_scope(db) as s:
            return _record_end(s, claimed, verdict, exit_code=exit_code, log_tail=log_tail, replay=replay)

    what = f"job {claimed.job_id}: ending attempt {claimed.attempt}"
    try:
        target: JobStatus = _retry_db(what, write, for_seconds=settings.lease_seconds)
    except FencedOut:
        log.warning(
            "job %s: attempt %d no longer holds the job; its end is not recorded",
            claimed.job_id,
            claimed.attempt,
        )
        return None
    why = verdict.reason or "ok"
    log.info("job %s: attempt %d ended: job %s (%s)", claimed.job_id, claimed.attempt, target.value, why)
    if target == JobStatus.queued:
        send_train(settings, claimed.job_id, claimed.gpus)
    return target


@dataclass(frozen=True)
class Verdict:
    """How an attempt ends: the job's target status (a ``retryable`` failure goes back to the queue instead
    while restarts are left; a job being cancelled ends ``cancelled`` unless it succeeded), the attempt's
    status, failure kind and reason, and what else the job row gets."""

    status: JobStatus
    attempt_status: str
    kind: FailureKind | None = None
    reason: str | None = None
    job_values: Mapping[str, Any] = field(default_factory=dict)
    retryable: bool = False

    @classmethod
    def failed(cls, kind: FailureKind, reason: str, *, retryable: bool) -> Verdict:
        return cls(JobStatus.failed, "failed", kind, reason, retryable=retryable)


@dataclass(frozen=True)
class _Run:
    """What :func:`judge` looks at: the outcome, the events it needs (the last ``end`` event, the
    ``failure`` events, the rank whose failure ended a torchrun run) and the last lines of the log."""

    outcome: Outcome
    end: End | None
    failures: Sequence[Failure]
    root: RankExit | None
    lines: list[str]

    @classmethod
    def of(cls, outcome: Outcome, events: Sequence[Event], lines: list[str]) -> _Run:
        end = next((e for e in reversed(events) if isinstance(e, End)), None)
        failures = [e for e in events if isinstance(e, Failure)]
        root = _root_cause([e for e in events if isinstance(e, RankExit)])
        return cls(outcome, end, failures, root, lines)

    @property
    def rc(self) -> int:
        return self.outcome.returncode

    @property
    def how(self) -> str:
        return describe_exit(self.rc)

    def ended(self, status: str) -> bool:
        return self.end is not None and self.end.status == status

    def failure(self, kind: str, *, of: RankExit | None = None) -> Failure | None:
        """The first ``failure`` event of ``kind`` (only that rank's, given ``of``)."""
        return next((f for f in self.failures if f.kind == kind and (of is None or f.rank == of.rank)), None)


def _completed(run: _Run) -> Verdict | None:
    """Exit 0 and an ``end`` event ``completed``: ``succeeded`` with the final mAP (without one: failed)."""
    if run.rc != 0 or run.end is None or not run.ended("completed"):
        return None
    results = run.end.results
    map50, map50_95 = _number(results.get("map50")), _number(results.get("map50_95"))
    if map50 is None:
        reason = "training completed without a final mAP (the validation set has no ground truth)"
        return Verdict(JobStatus.failed, "failed", FailureKind.user_error, reason, {"results": results})
    values = {"final_map50": map50, "final_map50_95": map50_95, "results": results, "progress": 1.0}
    return Verdict(JobStatus.succeeded, "succeeded", job_values=values)


def _stopped_by_supervisor(run: _Run) -> Verdict | None:
    """The supervisor's own stop (:class:`Stop`)."""
    stop, how = run.outcome.stop, run.how
    if stop is None:
        return None
    if stop == Stop.cancel:
        return Verdict(JobStatus.cancelled, "cancelled", FailureKind.cancelled, f"cancelled ({how})")
    if stop == Stop.shutdown:
        reason = f"preempted: the worker shut down ({how})"
        return Verdict.failed(FailureKind.preempted, reason, retryable=True)
    if stop == Stop.deadline:
        reason = f"timeout: the job's deadline (resources.timeout) passed; stopped ({how})"
        return Verdict.failed(FailureKind.timeout, reason, retryable=False)
    if stop == Stop.stalled:
        reason = f"timeout: no progress from the trainer for the watchdog's period; stopped ({how})"
        return Verdict.failed(FailureKind.timeout, reason, retryable=True)
    # Stop.lease, Stop.fenced
    reason = f"lost: the worker could not reach the database for the lease period; stopped ({how})"
    return Verdict.failed(FailureKind.lost, reason, retryable=True)


def _exit_zero_unreported(run: _Run) -> Verdict | None:
    """Exit 0 without a completed ``end`` event: the trainer's side of the contract broke."""
    if run.rc != 0:
        return None
    reason = "the trainer exited 0 without reporting a completed run"
    return Verdict.failed(FailureKind.infra, reason, retryable=True)


def _oom_killed(run: _Run) -> Verdict | None:
    """The trainer, or the root-cause rank, killed by SIGKILL while the cgroup's OOM kill count went up."""
    root = run.root
    killed = root.signal == signal.SIGKILL if root is not None else run.rc == -signal.SIGKILL
    if not (killed and run.outcome.oom_kills):
        return None
    who = f"rank {root.rank}" if root is not None else "the trainer"
    reason = f"oom: {who} was killed by the kernel's OOM killer (host memory; {run.how})"
    return Verdict.failed(FailureKind.oom, reason, retryable=False)


def _oom_reported(run: _Run) -> Verdict | None:
    """A ``failure`` event ``oom``."""
    oom = run.failure("oom")
    if oom is None:
        return None
    return Verdict.failed(FailureKind.oom, f"oom: {_on_rank(oom)}{oom.message}", retryable=False)


def _rank_failed(run: _Run) -> Verdict | None:
    """torchrun saw a rank fail: judged by that rank, not by its peers' consequences."""
    root = run.root
    if root is None:
        return None
    error = run.failure("error", of=root)
    if error is not None:
        return Verdict.failed(FailureKind.user_error, f"{_on_rank(error)}{error.message}", retryable=False)
    if root.signal is not None:
        reason = f"preempted: rank {root.rank} was killed by {root.signal.name} ({run.how})"
        return Verdict.failed(FailureKind.preempted, reason, retryable=True)
    why = root.message or last_error_line(run.lines) or describe_exit(root.exitcode)
    return Verdict.failed(FailureKind.user_error, f"rank {root.rank}: {why}", retryable=False)


def _stopped_by_signal(run: _Run) -> Verdict | None:
    """An ``end`` event ``stopped`` (the trainer checkpointed on request), or the trainer killed by a
    signal."""
    if not (run.ended("stopped") or run.rc < 0 or run.rc in RETRYABLE_EXIT_CODES):
        return None
    reason = f"preempted: stopped by a signal ({run.how})"
    return Verdict.failed(FailureKind.preempted, reason, retryable=True)


def _error_reported(run: _Run) -> Verdict | None:
    """A ``failure`` event ``error``: its message."""
    error = run.failure("error")
    if error is None:
        return None
    return Verdict.failed(FailureKind.user_error, f"{_on_rank(error)}{error.message}", retryable=False)


def _failed_unreported(run: _Run) -> Verdict:
    """Anything else: the log's last line as the reason."""
    reason = last_error_line(run.lines) or f"the trainer failed ({run.how})"
    return Verdict.failed(FailureKind.user_error, reason, retryable=False)


#: :func:`judge`'s checks, in order: the first that applies decides
_CHECKS: tuple[Callable[[_Run], Verdict | None], ...] = (
    _completed,
    _stopped_by_supervisor,
    _exit_zero_unreported,
    _oom_killed,
    _oom_reported,
    _rank_failed,
    _stopped_by_signal,
    _error_reported,
)


def judge(outcome: Outcome, *, events: Sequence[Event], lines: list[str]) -> Verdict:
    """The verdict on a supervised run from its outcome, its typed events and, for a reason only, the last
    lines of its log (the order is the module docstring's: :data:`_CHECKS`, the first that applies)."""
    run = _Run.of(outcome, events, lines)
    for check in _CHECKS:
        verdict = check(run)
        if verdict is not None:
            return verdict
    return _failed_unreported(run)


def _root_cause(ranks: Sequence[RankExit]) -> RankExit | None:
    """The rank whose failure ended a torchrun run: once one rank fails torchrun stops the others with
    SIGTERM, so those are consequences; of the rest, torchrun's own pick (the earliest, to the second)."""
    causes = [r for r in ranks if r.signal != signal.SIGTERM] or list(ranks)
    return max(causes, key=lambda r: r.first, default=None)


def _on_rank(failure: Failure) -> str:
    return f"rank {failure.rank}: " if failure.rank else ""


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def finish(
    db: sessionmaker[Session],
    settings: Settings,
    claimed: ClaimedJob,
    *,
    outcome: Outcome,
    files: RunFiles,
    reporter: Reporter,
) -> JobStatus | None:
    """Record how the attempt ended (:func:`judge`, :func:`end_attempt`), after replaying the attempt's
    event file: the events a database outage kept from being written go in the same transaction as the
    end, so a succeeded job never lacks its final evaluation or checkpoint rows. Returns the job's new
    status, or ``None`` when the attempt had lost the job (then nothing is written)."""
    if outcome.stop == Stop.fenced:
        log.warning("job %s: attempt %d had lost the job; nothing recorded", claimed.job_id, claimed.attempt)
        return None
    events = read_events(files.events)
    lines = tail_lines(files.log)
    verdict = judge(outcome, events=events, lines=lines)
    with reporter.lock:
        return end_attempt(
            db,
            settings,
            claimed,
            verdict=verdict,
            exit_code=outcome.returncode,
            log_tail="\n".join(lines),
            replay=lambda s: reporter.catch_up(s, events),
        )


# ---------------------------------------------------------------------------------------------- train
CommandFactory = Callable[[RunFiles, int], list[str]]


def train(
    db: sessionmaker[Session],
    settings: Settings,
    job_id: uuid.UUID,
    *,
    stop: threading.Event | None = None,
    command: CommandFactory = trainer_command,
    poll_s: float = 0.5,
    grant: Grant | None = None,
) -> JobStatus | None:
    """The ``daik.train`` task: claim, run, supervise, finish. Returns the job's new status, or ``None`` when
    there was nothing to claim or the attempt lost the job. ``grant``: the devices and CPU threads the
    worker gives the job (:mod:`worker.resources`). A failure of the worker itself before the trainer runs
    (the output folder cannot be written, the trainer cannot start, the job needs more devices than
    granted) is an ``infra`` failure, retried like a preemption."""
    claimed = claim_job(db, settings, job_id)
    if claimed is None:
        return None
    if claimed.remaining_s is not None and claimed.remaining_s <= 0:
        reason = "timeout: the job's deadline (resources.timeout) passed before this attempt started"
        return end_attempt(
            db,
            settings,
            claimed,
            verdict=Verdict.failed(FailureKind.timeout, reason, retryable=False),
            exit_code=None,
            log_tail=None,
        )
    oom = OomKills.of("self")  # the trainer's cgroup: it inherits this process's
    try:
        files = prepare_run(settings, claimed, resume_from=resume_point(db, settings, claimed))
        env = dict(
            trainer_environ(os.environ, extra_names=settings.trainer_env, gpus=claimed.gpus, grant=grant)
        )
        env.update(tracking_environ(db, claimed))
        if claimed.gpus > 1:  # torchrun's own error file (its ranks' are in its --log-dir)
            files.torchrun_logs.mkdir(parents=True, exist_ok=True)
            env["TORCHELASTIC_ERROR_FILE"] = str(files.torchrun_logs / "error.json")
        oom_before = oom.count()
        proc = launch(command(files, claimed.gpus), files, env=env, pass_fds=grant.fds if grant else ())
    except (OSError, DeviceError, SQLAlchemyError) as err:
        reason = f"the worker could not start the trainer: {err}"
        log.exception("job %s: %s", job_id, reason)
        verdict = Verdict.failed(FailureKind.infra, reason, retryable=True)
        return end_attempt(db, settings, claimed, verdict=verdict, exit_code=None, log_tail=None)
    log.info(
        "job %s: attempt %d runs the trainer, pid %d: %s", job_id, claimed.attempt, proc.pid, files.folder
    )
    try:
        _record_launch(db, claimed, proc.pid, files)
    except (FencedOut, SQLAlchemyError) as err:  # supervise finds out again at its first write / heartbeat
        log.warning("job %s: recording the trainer's pid failed: %s", job_id, err)
    reporter = Reporter(db, claimed.fence, artifact_root=settings.artifact_dir)
    outcome = supervise(
        db, settings, claimed, proc=proc, files=files, stop=stop, poll_s=poll_s, reporter=reporter
    )
    oom_after = oom.count()
    if oom_before is not None and oom_after is not None:
        outcome = Outcome(outcome.returncode, outcome.stop, oom_after - oom_before)
    return finish(db, settings, claimed, outcome=outcome, files=files, reporter=reporter)
