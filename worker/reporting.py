"""From the trainer's event file to database rows, every write fenced by the attempt (SERVICE.md).

The trainer (``daik train SPEC --events FILE``, :class:`daik_core.engine.callbacks.JsonlEvents`) appends one
JSON object per line; :class:`EventTailer` reads the complete lines added since the last read and
:class:`Reporter` writes a batch of them in one transaction:

- ``start``: ``job.total_epochs / epoch / step / progress``; on a resume from step S, the metric rows of
  older attempts past S move to ``metric_archive`` (so a resumed job never shows two values for one step)
  and their evaluations past the resumed epoch are dropped;
- ``progress``: ``job.step / progress``, and a ``progress`` job event at most every 5 s;
- ``epoch``: one metric row per key at the epoch's step, ``job.epoch`` (completed epochs), an ``epoch`` event;
- ``eval``: metric rows ``map50`` and ``map50_95``, an ``eval_result`` row, an ``eval`` event;
- ``checkpoint``: a ``checkpoint`` row (path relative to the artifact root), a ``checkpoint`` event;
- ``end``: kept in :attr:`Reporter.end` for :func:`worker.pipelines.finish`, which writes the outcome.

Fencing: each transaction first runs ``UPDATE job ... WHERE id = :id AND attempt = :attempt AND status IN
('running', 'cancelling') RETURNING status`` (:func:`lock_job`), which also locks the row until the commit;
no row means the job has moved on (a newer attempt claimed it, the reaper re-queued it, it ended) and
:class:`FencedOut` is raised: the attempt must stop writing and stop its trainer. Metric, evaluation and
checkpoint rows are upserts that an older attempt cannot overwrite (``WHERE stored.attempt <=
excluded.attempt``).

Upserts use the dialect's own ``INSERT .. ON CONFLICT`` (PostgreSQL, and SQLite for the embedded setup).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

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
    session: Session, job_id: uuid.UUID, attempt: int | None, events: Iterable[tuple[str, dict[str, Any]]]
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
    """Reads the complete JSON lines appended to ``path`` since the last :meth:`read` (a torn last line waits
    for its end). A missing file reads as no events; a line that is not a JSON object with an ``event`` key
    is logged and skipped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
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
                obj = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: skipping a line that is not JSON: %.200r", self.path, line)
                continue
            if isinstance(obj, dict) and isinstance(obj.get("event"), str):
                events.append(obj)
            else:
                log.warning("%s: skipping a line that is not an event: %.200r", self.path, line)
        return events


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


class Reporter:
    """Writes the trainer's events of one attempt into the database (see the module docstring).

    :meth:`write` handles one batch in one transaction: on a database error nothing of the batch is kept and
    the caller passes the same batch again; :class:`FencedOut` means the attempt has lost the job.
    """

    def __init__(
        self,
        db: sessionmaker[Session],
        fence: Fence,
        artifact_root: Path,
        progress_event_interval: float = PROGRESS_EVENT_INTERVAL_S,
    ) -> None:
        self.db = db
        self.fence = fence
        self.artifact_root = artifact_root
        self.progress_event_interval = progress_event_interval
        self.total_epochs = 0
        self.iters_per_epoch = 0
        self.end: dict[str, Any] | None = None  # the trainer's ``end`` event, once seen
        self._last_progress_event = -math.inf

    def _progress(self, completed_epochs: float) -> float:
        if self.total_epochs <= 0:
            return 0.0
        return min(max(completed_epochs / self.total_epochs, 0.0), 1.0)

    def write(self, events: Sequence[Mapping[str, Any]]) -> None:
        if not events:
            return
        job_id, attempt = self.fence.job_id, self.fence.attempt
        with session_scope(self.db) as s:
            lock_job(s, self.fence)
            job: dict[str, Any] = {}
            metrics: list[dict[str, Any]] = []
            stream: list[tuple[str, dict[str, Any]]] = []
            for ev in events:
                kind = ev["event"]
                if kind == "start":
                    self.total_epochs = int(ev.get("epochs") or 0)
                    self.iters_per_epoch = int(ev.get("iters_per_epoch") or 0)
                    e0, s0 = int(ev.get("epoch") or 0), int(ev.get("step") or 0)
                    steps = self.total_epochs * self.iters_per_epoch
                    job.update(
                        total_epochs=self.total_epochs,
                        epoch=e0,
                        step=s0,
                        progress=min(s0 / steps, 1.0) if steps else self._progress(e0),
                    )
                    self._forget_after(s, s0, e0)
                elif kind == "progress":
                    epoch, it = int(ev["epoch"]), int(ev["iteration"])
                    iters = int(ev.get("iters_per_epoch") or self.iters_per_epoch or 1)
                    progress = self._progress(epoch - 1 + it / iters)
                    job.update(step=int(ev["step"]), progress=progress)
                    now = time.monotonic()
                    if now - self._last_progress_event >= self.progress_event_interval:
                        self._last_progress_event = now
                        data: dict[str, Any] = {
                            "epoch": epoch,
                            "iteration": it,
                            "iters_per_epoch": iters,
                            "progress": progress,
                        }
                        stream.append(("progress", data))
                elif kind == "epoch":
                    epoch, step = int(ev["epoch"]), int(ev["step"])
                    values = {str(k): _number(v) for k, v in dict(ev.get("metrics") or {}).items()}
                    metrics += _metric_rows(job_id, attempt, epoch, step, values)
                    progress = self._progress(epoch)
                    job.update(epoch=epoch, step=step, progress=progress)
                    data = {
                        "epoch": epoch,
                        "total_epochs": self.total_epochs,
                        "step": step,
                        "progress": progress,
                        "metrics": values,
                    }
                    stream.append(("epoch", data))
                elif kind == "eval":
                    epoch, step = int(ev["epoch"]), int(ev["step"])
                    m50, m5095 = _number(ev.get("map50")), _number(ev.get("map50_95"))
                    metrics += _metric_rows(job_id, attempt, epoch, step, {"map50": m50, "map50_95": m5095})
                    per_class = {"ap50": dict(ev.get("ap50") or {}), "ap50_95": dict(ev.get("ap50_95") or {})}
                    row = {
                        "job_id": job_id,
                        "attempt": attempt,
                        "epoch": epoch,
                        "step": step,
                        "map50": m50,
                        "map50_95": m5095,
                        "per_class": per_class,
                        "created_at": utcnow(),
                    }
                    cols = ("attempt", "step", "map50", "map50_95", "per_class", "created_at")
                    _upsert(s, EvalResult, [row], ("job_id", "epoch"), cols)
                    stream.append(("eval", {"epoch": epoch, "step": step, "map50": m50, "map50_95": m5095}))
                elif kind == "checkpoint":
                    self._checkpoint(s, ev, stream)
                elif kind == "end":
                    self.end = dict(ev)
                else:
                    log.debug("job %s: ignoring trainer event %r", job_id, kind)
            if metrics:
                upsert_metrics(s, metrics)
            if job:
                lock_job(s, self.fence, **job)
            add_job_events(s, job_id, attempt, stream)

    def _checkpoint(
        self, s: Session, ev: Mapping[str, Any], stream: list[tuple[str, dict[str, Any]]]
    ) -> None:
        epoch, step, is_best = int(ev["epoch"]), int(ev["step"]), bool(ev.get("is_best"))
        path = Path(str(ev["path"]))
        try:
            size: int | None = path.stat().st_size
        except OSError:
            size = None
        rel = relative_to_root(path, self.artifact_root)
        now = utcnow()
        row = {
            "job_id": self.fence.job_id,
            "attempt": self.fence.attempt,
            "epoch": epoch,
            "step": step,
            "path": rel,
            "is_best": is_best,
            "size_bytes": size,
            "valid": True,
            "load_failures": 0,
            "created_at": now,
            "updated_at": now,
        }
        cols = ("attempt", "epoch", "step", "is_best", "size_bytes", "valid", "load_failures", "updated_at")
        _upsert(s, Checkpoint, [row], ("job_id", "path"), cols)
        stream.append(("checkpoint", {"epoch": epoch, "step": step, "path": rel, "is_best": is_best}))

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


def _metric_rows(
    job_id: uuid.UUID, attempt: int, epoch: int, step: int, values: dict[str, float | None]
) -> list[dict[str, Any]]:
    """``metric`` rows of one (job, attempt, epoch, step): one per key."""
    return [
        {"job_id": job_id, "key": k, "step": step, "value": v, "epoch": epoch, "attempt": attempt}
        for k, v in values.items()
    ]
