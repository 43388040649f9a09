"""The work behind ``daik.train``: plain functions over a sessionmaker and the Settings, testable without
Celery. :func:`train` runs them in order::

    claim_job    one UPDATE .. RETURNING takes the job (queued, or running with an expired lease) and bumps
                 the attempt, the fencing token; the attempt row and a ``status`` event in the same
                 transaction. No row: a duplicate delivery or a cancelled job, nothing to do.
    prepare_run  the job's spec as YAML in its output folder; this attempt's event file and log
    launch       ``python -m daik_core.cli train SPEC --events FILE -q [--resume]`` (torchrun for several
                 GPUs) in its own session / process group, stdout and stderr to the log, with only the
                 environment it needs, its own devices and CPU threads (:mod:`worker.resources`); the trainer
                 gets SIGTERM if this process dies (PR_SET_PDEATHSIG), so it never trains unsupervised
    supervise    tails the event file into the database (:mod:`worker.reporting`), heartbeats (extends the
                 lease, reads the cancel flag), stops the trainer on cancel / worker shutdown / a lost fence
    finish       classifies the exit and ends the attempt, fenced, in one transaction: ``succeeded`` only
                 with the final mAP stored; a signal (exit 130/137/143, or killed) is ``preempted`` and
                 re-queued while ``restarts < max_restarts``; "out of memory" in the log is ``oom``; any
                 other exit is ``user_error`` with the trainer's last error line as the reason

Stopping the trainer: SIGTERM goes to the trainer process only (it checkpoints ``weights/last.pt`` and exits
143; torchrun forwards it to its ranks). Sent to the whole group, it would also kill the DataLoader's worker
processes, whose death the trainer reports as an error instead of checkpointing. SIGKILL, after
``cancel_grace_seconds`` (at once on a forced cancel), goes to the whole group, and so does a last SIGKILL
once the trainer has exited, so that no process of the job outlives it.

The Celery parent never imports torch: the trainer is a separate ``python`` process. (How a worker's own
shutdown reaches :func:`supervise` as ``stop``: :mod:`worker.app`.)
"""

from __future__ import annotations

import ctypes
import datetime as dt
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
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import case, func, insert, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.holds import held_by_batch
from service.db.models import Attempt, FailureKind, Job, JobStatus
from service.db.session import session_scope
from service.queue import send_train
from service.settings import Settings
from worker.reporting import (
    EventTailer,
    Fence,
    FencedOut,
    Reporter,
    add_job_events,
    lock_job,
    require_transition,
)
from worker.resources import DeviceError, Grant, trainer_environ

__all__ = [
    "LOG_TAIL_LINES",
    "ClaimedJob",
    "Control",
    "Outcome",
    "RunFiles",
    "Verdict",
    "claim_job",
    "classify_exit",
    "end_attempt",
    "finish",
    "heartbeat",
    "judge",
    "last_error_line",
    "launch",
    "prepare_run",
    "supervise",
    "train",
    "trainer_command",
    "worker_id",
]

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 50
RETRYABLE_EXIT_CODES = frozenset({130, 137, 143})  # 128 + SIGINT / SIGKILL / SIGTERM
_WRITE_TRIES = 5  # the outcome is written with a few retries (the database may be restarting)


def worker_id() -> str:
    """``<hostname>:<pid>``: the lease owner and the attempt's worker."""
    return f"{socket.gethostname()}:{os.getpid()}"


def gpus_of(resources: Mapping[str, Any] | None) -> int:
    return int((resources or {}).get("gpus", 0) or 0)


@dataclass(frozen=True)
class ClaimedJob:
    """What a successful claim returns: the attempt number (the fencing token) and what the run needs."""

    job_id: uuid.UUID
    attempt: int
    spec: dict[str, Any]
    resources: dict[str, Any]
    owner: str

    @property
    def fence(self) -> Fence:
        return Fence(self.job_id, self.attempt)

    @property
    def gpus(self) -> int:
        return gpus_of(self.resources)


# --------------------------------------------------------------------------------------------- claim
def claim_job(
    db: sessionmaker[Session], settings: Settings, job_id: uuid.UUID, owner: str | None = None
) -> ClaimedJob | None:
    """Take the job atomically (SERVICE.md): a queued job, or a running one whose lease expired (its open
    attempt is closed as ``lost``; taking it over counts as a restart and is allowed while ``restarts <
    max_restarts``, past that the reaper fails the job). ``None``: nothing to take (a duplicate delivery, a
    cancelled or finished job, a live lease, an unknown id)."""
    owner = owner or worker_id()
    now = utcnow()
    running = JobStatus.running.value
    stale = (Job.status == running) & (Job.lease_expires_at < now) & (Job.restarts < Job.max_restarts)
    stmt = (
        update(Job)
        # a queued job of a paused / stopped / cancelled batch is held: it does not start (service.batches)
        .where(Job.id == job_id, ((Job.status == JobStatus.queued.value) & ~held_by_batch(Job.id)) | stale)
        .values(
            status=running,
            attempt=Job.attempt + 1,
            # SET expressions see the row before the update: taking over a running job is a restart
            restarts=Job.restarts + case((Job.status == running, 1), else_=0),
            lease_owner=owner,
            lease_expires_at=now + dt.timedelta(seconds=settings.lease_seconds),
            started_at=func.coalesce(Job.started_at, now),
            error=None,
            failure_kind=None,
            finished_at=None,
            updated_at=now,
        )
        .returning(Job.attempt, Job.spec, Job.resources)
        .execution_options(synchronize_session=False)
    )
    with session_scope(db) as s:
        row = s.execute(stmt).one_or_none()
        if row is None:
            log.info("job %s: nothing to claim (a duplicate delivery, or the job is not queued)", job_id)
            return None
        attempt = int(row.attempt)
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
        add_job_events(
            s, job_id, attempt, [("status", {"status": running, "attempt": attempt, "error": None})]
        )
    log.info("job %s: claimed as attempt %d by %s", job_id, attempt, owner)
    return ClaimedJob(job_id, attempt, dict(row.spec), dict(row.resources or {}), owner)


# ----------------------------------------------------------------------------------------------- run
@dataclass(frozen=True)
class RunFiles:
    """The files of one attempt: the job's output folder (the trainer's ``output``), the spec written
    there, this attempt's event file and log, and whether the trainer resumes from ``weights/last.pt``
    (``--resume``) or starts afresh over one (``--overwrite``)."""

    output: Path
    spec: Path
    events: Path
    log: Path
    resume: bool
    overwrite: bool

    @property
    def last_checkpoint(self) -> Path:
        return self.output / "weights" / "last.pt"


def prepare_run(settings: Settings, claimed: ClaimedJob) -> RunFiles:
    """Write ``job.spec`` as YAML into the output folder (``spec.output``; when absent or relative, under
    ``<artifact_root>/jobs/<job_id>``) and name this attempt's files (``logs/attempt-<n>.events.jsonl`` and
    ``logs/attempt-<n>.log``). A ``weights/last.pt`` left by an earlier attempt is resumed; one found by the
    first attempt belongs to no attempt of this job and is overwritten."""
    spec = dict(claimed.spec)
    default = settings.artifact_dir / "jobs" / str(claimed.job_id)
    output = Path(spec["output"]) if spec.get("output") else default
    if not output.is_absolute():
        output = settings.artifact_dir / output
    spec["output"] = str(output)
    logs = output / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    spec_path = output / "job_spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    events = logs / f"attempt-{claimed.attempt}.events.jsonl"
    events.unlink(missing_ok=True)
    has_last = (output / "weights" / "last.pt").is_file()
    return RunFiles(
        output=output,
        spec=spec_path,
        events=events,
        log=logs / f"attempt-{claimed.attempt}.log",
        resume=has_last and claimed.attempt > 1,
        overwrite=has_last and claimed.attempt == 1,
    )


def trainer_command(files: RunFiles, gpus: int, prefix: str | None = None) -> list[str]:
    """``python -m daik_core.cli train SPEC --events FILE -q [--resume | --overwrite]``; for several GPUs the
    same under ``torchrun --standalone --nproc-per-node=N``. ``prefix`` (``settings.trainer_command``)
    replaces ``python -m daik_core.cli`` of a one-process run."""
    args = ["-m", "daik_core.cli", "train", str(files.spec), "--events", str(files.events), "-q"]
    if files.resume:
        args.append("--resume")
    elif files.overwrite:
        args.append("--overwrite")
    if prefix and gpus <= 1:
        return [*shlex.split(prefix), *args[2:]]
    if gpus > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={gpus}",
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
    command: list[str], files: RunFiles, env: Mapping[str, str], pass_fds: tuple[int, ...] = ()
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
            cwd=files.output,
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
            .values(pid=pid, resumed_from=str(files.last_checkpoint) if files.resume else None)
            .execution_options(synchronize_session=False)
        )


# ------------------------------------------------------------------------------------------ supervise
@dataclass(frozen=True)
class Control:
    """What a heartbeat reads back: the client's cancel request."""

    cancel: bool
    force: bool


def heartbeat(db: sessionmaker[Session], settings: Settings, fence: Fence) -> Control:
    """Extend the lease by ``lease_seconds`` (fenced) and read the cancel flags; raises :class:`FencedOut`
    when the job has moved on."""
    now = utcnow()
    with session_scope(db) as s:
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


@dataclass(frozen=True)
class Outcome:
    """How the trainer ended under supervision."""

    returncode: int
    end: dict[str, Any] | None  # the trainer's ``end`` event, when it wrote one
    cancelled: bool = False  # a client's cancel stopped it
    shutdown: bool = False  # the worker's shutdown stopped it
    fenced_out: bool = False  # the job moved on: this attempt may write nothing more


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _signal_process(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            proc.send_signal(sig)


def supervise(
    db: sessionmaker[Session],
    settings: Settings,
    claimed: ClaimedJob,
    proc: subprocess.Popen[bytes],
    files: RunFiles,
    *,
    stop: threading.Event | None = None,
    poll_s: float = 0.5,
) -> Outcome:
    """Watch the trainer until it exits: every ``poll_s`` write its new events (a batch that fails on a
    database error is kept and written again), every ``heartbeat_seconds`` extend the lease and read the
    cancel flags. Stop the trainer (SIGTERM to it, SIGKILL to its group after ``cancel_grace_seconds``) on a
    cancel (a forced one: SIGKILL at once), when ``stop`` is set (the worker is shutting down) and when the
    fence is lost. Returns once the trainer has exited and no process of its group is left."""
    stop = stop or threading.Event()
    reporter = Reporter(db, claimed.fence, settings.artifact_dir)
    tailer = EventTailer(files.events)
    pending: list[dict[str, Any]] = []
    cancelled = shutdown = fenced = killed = False
    term_at: float | None = None
    next_beat = time.monotonic() + settings.heartbeat_seconds

    def terminate() -> None:
        nonlocal term_at
        if term_at is None:
            term_at = time.monotonic()
            _signal_process(proc, signal.SIGTERM)

    def kill() -> None:
        nonlocal killed
        killed = True
        _signal_group(proc.pid, signal.SIGKILL)

    def flush() -> None:
        nonlocal pending, fenced
        if not pending or fenced:
            pending = []
            return
        try:
            reporter.write(pending)
            pending = []
        except FencedOut:
            fenced, pending = True, []
            log.warning(
                "job %s: attempt %d lost the job; stopping the trainer", claimed.job_id, claimed.attempt
            )
        except SQLAlchemyError as err:
            log.warning(
                "job %s: writing %d events failed (will retry): %s", claimed.job_id, len(pending), err
            )

    try:
        while True:
            returncode = proc.poll()
            pending += tailer.read()  # after poll(): everything the trainer wrote before exiting
            flush()
            if returncode is not None:
                break
            now = time.monotonic()
            if now >= next_beat and not fenced:
                next_beat = now + settings.heartbeat_seconds
                try:
                    control = heartbeat(db, settings, claimed.fence)
                except FencedOut:
                    fenced = True
                    log.warning("job %s: attempt %d lost the job", claimed.job_id, claimed.attempt)
                except SQLAlchemyError as err:
                    log.warning("job %s: heartbeat failed (will retry): %s", claimed.job_id, err)
                else:
                    if control.cancel and not cancelled:
                        cancelled = True
                        log.info("job %s: cancel requested%s", claimed.job_id, " (force)" * control.force)
                        terminate()
                    if control.force and not killed:
                        kill()
            if stop.is_set() and not (cancelled or shutdown):
                shutdown = True
                log.info("job %s: the worker is shutting down; stopping the trainer", claimed.job_id)
                terminate()
            if fenced:
                terminate()
            if term_at is not None and not killed and now - term_at >= settings.cancel_grace_seconds:
                log.warning(
                    "job %s: the trainer ignored SIGTERM for %.0f s; SIGKILL",
                    claimed.job_id,
                    now - term_at,
                )
                kill()
            time.sleep(poll_s)
        for _ in range(_WRITE_TRIES):  # the last events, if a database error held them back
            if not pending:
                break
            time.sleep(1.0)
            flush()
    finally:
        if proc.poll() is None:  # an unexpected error here: never leave the trainer unsupervised
            _signal_process(proc, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=settings.cancel_grace_seconds)
        _signal_group(proc.pid, signal.SIGKILL)  # whatever of the group is left (loader workers, children)
        proc.wait()
    return Outcome(
        returncode=int(proc.returncode),
        end=reporter.end,
        cancelled=cancelled,
        shutdown=shutdown,
        fenced_out=fenced,
    )


# --------------------------------------------------------------------------------------------- finish
def tail_lines(path: Path, n: int = LOG_TAIL_LINES, max_bytes: int = 256 * 1024) -> list[str]:
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
    """The trainer's reason: its last ``daik: error: ...`` line, else the last non-blank line (a traceback's
    exception line), or ``None`` for an empty log."""
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


def classify_exit(returncode: int, lines: list[str]) -> FailureKind:
    """A failed trainer's exit: a signal (130/137/143, or a negative return code) is ``preempted``
    (retryable); "out of memory" in the log is ``oom``; anything else is ``user_error``."""
    if returncode < 0 or returncode in RETRYABLE_EXIT_CODES:
        return FailureKind.preempted
    if any("out of memory" in line.lower() for line in lines):
        return FailureKind.oom
    return FailureKind.user_error


def _retry_db(what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, tried again (1, 2, 4, 8 s apart) on a database error."""
    for i in range(_WRITE_TRIES):
        try:
            return fn()
        except SQLAlchemyError as err:
            if i == _WRITE_TRIES - 1:
                raise
            log.warning("%s failed (try %d of %d): %s", what, i + 1, _WRITE_TRIES, err)
            time.sleep(2.0**i)
    raise AssertionError("unreachable")


def end_attempt(
    db: sessionmaker[Session],
    settings: Settings,
    claimed: ClaimedJob,
    verdict: Verdict,
    *,
    exit_code: int | None,
    log_tail: str | None,
) -> JobStatus | None:
    """End the attempt and move the job, fenced, in one transaction: the attempt row, the job row (through
    the state machine), a ``status`` event. A ``retryable`` verdict re-queues the job (``restarts + 1``)
    while ``restarts < max_restarts`` and sends it again after the commit. Returns the job's new status, or
    ``None`` when the fence was lost (nothing written)."""
    now = utcnow()

    def write() -> JobStatus:
        with session_scope(db) as s:
            current = lock_job(s, claimed.fence)
            job = s.get_one(Job, claimed.job_id)
            target = verdict.status
            if verdict.retryable and job.restarts < job.max_restarts and current == JobStatus.running:
                target = JobStatus.queued
            if current == JobStatus.cancelling and target != JobStatus.succeeded:
                target = JobStatus.cancelled  # the client asked to cancel: that is how it ends
            kind_value = verdict.kind.value if verdict.kind else None
            reason = verdict.reason
            values: dict[str, Any] = dict(verdict.job_values)
            if target == JobStatus.queued:
                values.update(
                    restarts=job.restarts + 1, dispatched_at=now, error=reason, failure_kind=kind_value
                )
            elif target == JobStatus.cancelled:
                values.update(finished_at=now)
            else:
                values.update(finished_at=now, error=reason, failure_kind=kind_value)
            require_transition(current, target)
            values["status"] = target.value
            lock_job(s, claimed.fence, lease_expires_at=None, **values)
            s.execute(
                update(Attempt)
                .where(Attempt.job_id == claimed.job_id, Attempt.number == claimed.attempt)
                .values(
                    status=verdict.attempt_status,
                    exit_code=exit_code,
                    failure_kind=kind_value,
                    reason=reason,
                    log_tail=log_tail,
                    finished_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            error = reason if target in (JobStatus.failed, JobStatus.queued) else None
            event = {"status": target.value, "attempt": claimed.attempt, "error": error}
            add_job_events(s, claimed.job_id, claimed.attempt, [("status", event)])
            return target

    try:
        target: JobStatus = _retry_db(f"job {claimed.job_id}: ending attempt {claimed.attempt}", write)
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


def judge(outcome: Outcome, lines: list[str]) -> Verdict:
    """The verdict on a supervised run from its outcome and the last lines of its log (module docstring)."""
    rc = outcome.returncode
    end = outcome.end or {}
    results = end.get("results") if isinstance(end.get("results"), dict) else None
    if rc == 0 and end.get("status") == "completed" and results is not None:
        map50, map50_95 = _number(results.get("map50")), _number(results.get("map50_95"))
        if map50 is None:
            reason = "training completed without a final mAP (the validation set has no ground truth)"
            return Verdict(JobStatus.failed, "failed", FailureKind.user_error, reason, {"results": results})
        values = {"final_map50": map50, "final_map50_95": map50_95, "results": results, "progress": 1.0}
        return Verdict(JobStatus.succeeded, "succeeded", job_values=values)
    if outcome.cancelled:
        return Verdict(
            JobStatus.cancelled, "cancelled", FailureKind.cancelled, f"cancelled ({describe_exit(rc)})"
        )
    if rc == 0:  # exit 0 without a completed end event: the trainer's side of the contract broke
        reason = "the trainer exited 0 without reporting a completed run"
        return Verdict(JobStatus.failed, "failed", FailureKind.infra, reason)
    kind = classify_exit(rc, lines)
    if kind == FailureKind.preempted:
        why = "the worker shut down" if outcome.shutdown else "stopped by a signal"
        reason = f"preempted: {why} ({describe_exit(rc)})"
    else:
        reason = last_error_line(lines) or f"the trainer failed ({describe_exit(rc)})"
    return Verdict(JobStatus.failed, "failed", kind, reason, retryable=kind == FailureKind.preempted)


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def finish(
    db: sessionmaker[Session], settings: Settings, claimed: ClaimedJob, outcome: Outcome, files: RunFiles
) -> JobStatus | None:
    """Record how the attempt ended (:func:`judge`, :func:`end_attempt`); returns the job's new status, or
    ``None`` when the attempt had lost the job (then nothing is written)."""
    if outcome.fenced_out:
        log.warning("job %s: attempt %d had lost the job; nothing recorded", claimed.job_id, claimed.attempt)
        return None
    lines = tail_lines(files.log)
    verdict = judge(outcome, lines)
    return end_attempt(
        db, settings, claimed, verdict, exit_code=outcome.returncode, log_tail="\n".join(lines)
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
    try:
        files = prepare_run(settings, claimed)
        env = trainer_environ(os.environ, settings.trainer_env, claimed.gpus, grant)
        proc = launch(command(files, claimed.gpus), files, env, grant.fds if grant else ())
    except (OSError, DeviceError) as err:
        reason = f"the worker could not start the trainer: {err}"
        log.exception("job %s: %s", job_id, reason)
        verdict = Verdict(JobStatus.failed, "failed", FailureKind.infra, reason, retryable=True)
        return end_attempt(db, settings, claimed, verdict, exit_code=None, log_tail=None)
    log.info(
        "job %s: attempt %d runs the trainer, pid %d: %s", job_id, claimed.attempt, proc.pid, files.output
    )
    try:
        _record_launch(db, claimed, proc.pid, files)
    except (FencedOut, SQLAlchemyError) as err:  # supervise finds out again at its first write / heartbeat
        log.warning("job %s: recording the trainer's pid failed: %s", job_id, err)
    outcome = supervise(db, settings, claimed, proc, files, stop=stop, poll_s=poll_s)
    return finish(db, settings, claimed, outcome, files)
