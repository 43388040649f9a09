"""From the trainer's event file to database rows, every write fenced by the attempt (SERVICE.md).

The trainer (``daik train SPEC --events FILE``) appends typed events (:mod:`daik_core.events`), one JSON
line each; :class:`EventTailer` reads the complete lines added since the last read and :class:`Reporter`
writes a batch of them in one transaction:

- :class:`~daik_core.events.Start`: ``job.total_epochs / epoch / step / progress``; on a resume from step S,
  the metric rows of older attempts past S move to ``metric_archive`` (so a resumed job never shows two
  values for one step) and their evaluations past the resumed epoch are dropped;
- :class:`~daik_core.events.Progress`: ``job.step / progress``, and a ``progress`` job event at most every
  5 s;
- :class:`~daik_core.events.Epoch`: one metric row per key at the epoch's step, ``job.epoch`` (completed
  epochs), an ``epoch`` event;
- :class:`~daik_core.events.Eval`: metric rows ``map50`` and ``map50_95``, an ``eval_result`` row, an ``eval``
  event;
- :class:`~daik_core.events.Checkpoint`: a ``checkpoint`` row (path relative to the artifact root), a
  ``checkpoint`` event;
- :class:`~daik_core.events.End`, :class:`~daik_core.events.Failure`, :class:`~daik_core.events.RankExit`:
  nothing here; :func:`worker.pipelines.judge` reads them to decide how the attempt ended.

:attr:`Reporter.written` counts the events of the file it has committed, so that the end of an attempt can
write, in its own transaction, whatever a database outage held back (:meth:`Reporter.catch_up`: the file
is read again from its start). The rows are upserts and the job's fields absolute values, so writing an
event twice changes nothing (only its job event would be duplicated, which counting avoids).

Fencing: each transaction first runs ``UPDATE job ... WHERE id = :id AND attempt = :attempt AND status IN
('running', 'cancelling') RETURNING status`` (:func:`lock_job`), which also locks the row until the commit;
no row means the job has moved on (a newer attempt claimed it, the reaper re-queued it, it ended) and
:class:`FencedOut` is raised: the attempt must stop writing and stop its trainer. Metric, evaluation and
checkpoint rows are upserts that an older attempt cannot overwrite (``WHERE stored.attempt <=
excluded.attempt``).

Upserts use the dialect's own ``INSERT .. ON CONFLICT`` (PostgreSQL, and SQLite for the embedded setup).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from daik_core.events import Checkpoint as CheckpointEvent
from daik_core.events import End, Epoch, Eval, Event, EventError, Failure, Progress, RankExit, Start, decode
from service.db.base import UTCDateTime, utcnow
from service.db.models import Checkpoint, EvalResult, Job, JobEvent, JobStatus, Metric, MetricArchive
from service.db.session import session_scope
from service.db.states import TRANSITIONS, IllegalTransition

__all__ = [
    "LIVE_STATES",
    "PROGRESS_EVENT_INTERVAL_S",
    "EventTailer",
    "Fence",
    "FencedOut",
    "Reporter",
    "add_job_events",
    "dialect_insert",
    "lock_job",
    "read_events",
    "require_transition",
    "upsert_metrics",
]

log = logging.getLogger(__name__)

#: the states in which the attempt holding the fence may write
LIVE_STATES = (JobStatus.running.value, JobStatus.cancelling.value)
#: ``progress`` job events (the SSE stream) are written at most this often
PROGRESS_EVENT_INTERVAL_S = 5.0
_UPSERT_CHUNK = 500  # rows per INSERT statement (SQLite allows 32766 bound parameters)


class FencedOut(Exception):
    """The job has moved on (another attempt, or no longer running): this attempt may not write any more."""


@dataclass(frozen=True)
class Fence:
    """The fencing token of one attempt: every write carries ``job.id = job_id AND job.attempt = attempt``."""

    job_id: uuid.UUID
    attempt: int

    def where(self) -> tuple[ColumnElement[bool], ...]:
        return (Job.id == self.job_id, Job.attempt == self.attempt, Job.status.in_(LIVE_STATES))


def lock_job(session: Session, fence: Fence, **values: Any) -> JobStatus:
    """Update the job row under the fence (``values``, and always ``updated_at``), which locks it until the
    transaction ends (on SQLite: takes the write lock first, so the transaction cannot hit a busy snapshot);
    returns the job's status, or raises :class:`FencedOut`."""
    stmt = (
        update(Job)
        .where(*fence.where())
        .values(updated_at=utcnow(), **values)
        .returning(Job.status)
        .execution_options(synchronize_session=False)
    )
    status = session.execute(stmt).scalar_one_or_none()
    if status is None:
        raise FencedOut(f"job {fence.job_id}: attempt {fence.attempt} no longer holds the job")
    return JobStatus(status)


def require_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise :class:`~service.db.states.IllegalTransition` unless the state machine allows ``current ->
    target``. (The worker moves a job; :func:`~service.db.states.check_transition` answers the API, for which
    a ``cancelling`` job asked to be ``cancelled`` is already on its way and does not move.)"""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)


def dialect_insert(session: Session, table: Any) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the session's database."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no INSERT .. ON CONFLICT for the {name} dialect")


def _upsert(
    session: Session,
    table: Any,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    update_cols: Sequence[str],
) -> None:
    """``INSERT rows ON CONFLICT (keys) DO UPDATE SET update_cols WHERE stored.attempt <= excluded.attempt``,
    in chunks of one multi-row statement each."""
    for start in range(0, len(rows), _UPSERT_CHUNK):
        stmt = dialect_insert(session, table).values(list(rows[start : start + _UPSERT_CHUNK]))
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={col: stmt.excluded[col] for col in update_cols},
            where=table.attempt <= stmt.excluded.attempt,
        )
        session.execute(stmt)


def upsert_metrics(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """One value per (job, key, step): ``rows`` of ``job_id, key, step, value, epoch, attempt`` are inserted,
    or replace a stored value of the same or an older attempt (never of a newer one)."""
    now = utcnow()
    full = [{**r, "created_at": r.get("created_at", now)} for r in rows]
    _upsert(session, Metric, full, ("job_id", "key", "step"), ("value", "epoch", "attempt", "created_at"))


def add_job_events(
    session: Session, job_id: uuid.UUID, *, attempt: int | None, events: Iterable[tuple[str, dict[str, Any]]]
) -> None:
    """Append ``(type, data)`` events to the job's stream."""
    now = utcnow()
    rows = [
        {"job_id": job_id, "type": kind, "data": data, "attempt": attempt, "created_at": now}
        for kind, data in events
    ]
    if rows:
        session.execute(insert(JobEvent), rows)


class EventTailer:
    """Reads the complete lines appended to ``path`` since the last :meth:`read` (a torn last line waits for
    its end) as typed events. A missing file reads as no events; a line that is not a valid event is logged
    and skipped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self) -> list[Event]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        events = []
        for line in lines:
            if not line.strip():
                continue
            try:
                events.append(decode(line))
            except EventError as err:
                log.warning("%s: skipping a line: %s", self.path, err)
        return events


def read_events(path: Path) -> list[Event]:
    """Every complete event of the file ``path`` (a torn last line is left out)."""
    return EventTailer(path).read()


def _number(x: Any) -> float | None:
    """A finite float, or ``None`` (NaN / inf / missing / not a number)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def relative_to_root(path: str | Path, root: Path) -> str:
    """``path`` relative to the artifact root (as checkpoint rows store it); unchanged when outside it."""
    p = Path(path)
    try:
        return p.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(p)


@dataclass
class _Batch:
    """What a batch of events adds up to, written after its last event: the job row's new fields, metric
    rows, job events (``(type, data)``)."""

    job: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    stream: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class Reporter:
    """Writes the trainer's events of one attempt into the database (see the module docstring).

    :meth:`write` handles one batch in one transaction: on a database error nothing of the batch is kept and
    the caller passes the same batch again; :class:`FencedOut` means the attempt has lost the job. Writes
    are serialised by :attr:`lock` (the supervisor writes from a thread of its own, the end from the main
    thread).
    """

    def __init__(
        self,
        db: sessionmaker[Session],
        fence: Fence,
        *,
        artifact_root: Path,
        progress_event_interval: float = PROGRESS_EVENT_INTERVAL_S,
    ) -> None:
        self.db = db
        self.fence = fence
        self.artifact_root = artifact_root
        self.progress_event_interval = progress_event_interval
        self.lock = threading.Lock()
        self.written = 0  # events of the file committed so far, in file order
        self.total_epochs = 0
        self.iters_per_epoch = 0
        self._last_progress_event = -math.inf

    def _progress(self, completed_epochs: float) -> float:
        if self.total_epochs <= 0:
            return 0.0
        return min(max(completed_epochs / self.total_epochs, 0.0), 1.0)

    def write(self, events: Sequence[Event]) -> None:
        """The next ``events`` of the file, in one transaction of their own."""
        if not events:
            return
        with self.lock:
            with session_scope(self.db) as s:
                lock_job(s, self.fence)
                self.apply(s, events)
            self.written += len(events)

    def catch_up(self, session: Session, events: Sequence[Event]) -> None:
        """In the caller's transaction (which holds the fence): the events of ``events`` (the whole file,
        read again) that are not written yet. The caller holds :attr:`lock`."""
        self.apply(session, events[self.written :])

    def apply(self, s: Session, events: Sequence[Event]) -> None:
        """Write ``events`` in the session ``s``, whose transaction holds the fence (:func:`lock_job`): each
        event by the handler of its type (:data:`_HANDLERS`), then what they add up to (:class:`_Batch`)."""
        batch = _Batch()
        for ev in events:
            handler = _HANDLERS.get(type(ev))
            if handler is not None:
                handler(self, s, ev, batch)
        if batch.metrics:
            upsert_metrics(s, batch.metrics)
        if batch.job:
            lock_job(s, self.fence, **batch.job)
        add_job_events(s, self.fence.job_id, attempt=self.fence.attempt, events=batch.stream)

    def _on_start(self, s: Session, ev: Start, batch: _Batch) -> None:
        """The run's size and where it starts; a resumed run drops what older attempts wrote past it."""
        self.total_epochs, self.iters_per_epoch = ev.epochs, ev.iters_per_epoch
        steps = self.total_epochs * self.iters_per_epoch
        batch.job.update(
            total_epochs=self.total_epochs,
            epoch=ev.epoch,
            step=ev.step,
            progress=min(ev.step / steps, 1.0) if steps else self._progress(ev.epoch),
        )
        self._forget_after(s, ev.step, ev.epoch)

    def _on_progress(self, s: Session, ev: Progress, batch: _Batch) -> None:
        """``job.step / progress``; a ``progress`` job event at most every :attr:`progress_event_interval`."""
        iters = ev.iters_per_epoch or self.iters_per_epoch or 1
        progress = self._progress(ev.epoch - 1 + ev.iteration / iters)
        batch.job.update(step=ev.step, progress=progress)
        now = time.monotonic()
        if now - self._last_progress_event >= self.progress_event_interval:
            self._last_progress_event = now
            data: dict[str, Any] = {
                "epoch": ev.epoch,
                "iteration": ev.iteration,
                "iters_per_epoch": iters,
                "progress": progress,
            }
            batch.stream.append(("progress", data))

    def _on_epoch(self, s: Session, ev: Epoch, batch: _Batch) -> None:
        """The epoch's metric rows, ``job.epoch / step / progress``, an ``epoch`` job event."""
        values = {k: _number(v) for k, v in ev.metrics.items()}
        batch.metrics += _metric_rows(self.fence.job_id, self.fence.attempt, ev.epoch, ev.step, values)
        progress = self._progress(ev.epoch)
        batch.job.update(epoch=ev.epoch, step=ev.step, progress=progress)
        data = {
            "epoch": ev.epoch,
            "total_epochs": self.total_epochs,
            "step": ev.step,
            "progress": progress,
            "metrics": values,
        }
        batch.stream.append(("epoch", data))

    def _on_eval(self, s: Session, ev: Eval, batch: _Batch) -> None:
        """Metric rows ``map50`` / ``map50_95``, an ``eval_result`` row, an ``eval`` job event."""
        job_id, attempt = self.fence.job_id, self.fence.attempt
        m50, m5095 = _number(ev.map50), _number(ev.map50_95)
        maps = {"map50": m50, "map50_95": m5095}
        batch.metrics += _metric_rows(job_id, attempt, ev.epoch, ev.step, maps)
        row = {
            "job_id": job_id,
            "attempt": attempt,
            "epoch": ev.epoch,
            "step": ev.step,
            "map50": m50,
            "map50_95": m5095,
            "per_class": {"ap50": dict(ev.ap50), "ap50_95": dict(ev.ap50_95)},
            "created_at": utcnow(),
        }
        cols = ("attempt", "step", "map50", "map50_95", "per_class", "created_at")
        _upsert(s, EvalResult, [row], ("job_id", "epoch"), cols)
        batch.stream.append(("eval", {"epoch": ev.epoch, "step": ev.step, **maps}))

    def _on_checkpoint(self, s: Session, ev: CheckpointEvent, batch: _Batch) -> None:
        """A ``checkpoint`` row (its path relative to the artifact root), a ``checkpoint`` job event."""
        path = Path(ev.path)
        try:
            size: int | None = path.stat().st_size
        except OSError:
            size = None
        rel = relative_to_root(path, self.artifact_root)
        now = utcnow()
        row = {
            "job_id": self.fence.job_id,
            "attempt": self.fence.attempt,
            "epoch": ev.epoch,
            "step": ev.step,
            "path": rel,
            "is_best": ev.is_best,
            "size_bytes": size,
            "valid": True,
            "load_failures": 0,
            "created_at": now,
            "updated_at": now,
        }
        cols = ("attempt", "epoch", "step", "is_best", "size_bytes", "valid", "load_failures", "updated_at")
        _upsert(s, Checkpoint, [row], ("job_id", "path"), cols)
        data = {"epoch": ev.epoch, "step": ev.step, "path": rel, "is_best": ev.is_best}
        batch.stream.append(("checkpoint", data))

    def _on_outcome(self, s: Session, ev: End | Failure | RankExit, batch: _Batch) -> None:
        """Nothing here: how the attempt ended is for :func:`worker.pipelines.judge`."""

    def _forget_after(self, s: Session, step: int, epoch: int) -> None:
        """A resumed attempt restarts at ``step`` / ``epoch``: older attempts' metric rows past that step
        move to ``metric_archive``, their evaluations past that epoch are deleted (this attempt writes its
        own)."""
        job_id, attempt = self.fence.job_id, self.fence.attempt
        stale = and_(Metric.job_id == job_id, Metric.step > step, Metric.attempt < attempt)
        cols = ("job_id", "key", "step", "value", "epoch", "attempt")
        now = literal(utcnow(), UTCDateTime())  # typed, so that it binds like the column
        archived = select(*(getattr(Metric, c) for c in cols), now).where(stale)
        s.execute(
            insert(MetricArchive).from_select([*cols, "archived_at"], archived),
            execution_options={"synchronize_session": False},
        )
        s.execute(delete(Metric).where(stale).execution_options(synchronize_session=False))
        s.execute(
            delete(EvalResult)
            .where(EvalResult.job_id == job_id, EvalResult.epoch > epoch, EvalResult.attempt < attempt)
            .execution_options(synchronize_session=False)
        )


#: :meth:`Reporter.apply`'s handler of each event type
_HANDLERS: dict[type[Any], Callable[[Reporter, Session, Any, _Batch], None]] = {
    Start: Reporter._on_start,
    Progress: Reporter._on_progress,
    Epoch: Reporter._on_epoch,
    Eval: Reporter._on_eval,
    CheckpointEvent: Reporter._on_checkpoint,
    End: Reporter._on_outcome,
    Failure: Reporter._on_outcome,
    RankExit: Reporter._on_outcome,
}


def _metric_rows(
    job_id: uuid.UUID, attempt: int, epoch: int, step: int, values: dict[str, float | None]
) -> list[dict[str, Any]]:
    """``metric`` rows of one (job, attempt, epoch, step): one per key."""
    return [
        {"job_id": job_id, "key": k, "step": step, "value": v, "epoch": epoch, "attempt": attempt}
        for k, v in values.items()
    ]
