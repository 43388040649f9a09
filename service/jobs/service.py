"""Jobs: submit (resolve, commit, then send), read, list, metrics, cancel and the event feed.

Plain functions over a Session. The database is the truth (SERVICE.md): ``submit_job`` commits the row
(status ``queued``) and its first ``status`` event, *then* sends the Celery message; a failed send leaves
the job queued for the re-dispatcher. Everything a client names (dataset, teacher, weights) is resolved at
submit time into the job's ``spec``, which the worker runs as is (the contracts).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from sqlalchemy import and_, delete, func, insert, or_, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from daik_core.config import JobSpec
from service.artifacts.service import best_checkpoint, checkpoint_file, job_output_dir, resolve_artifact_file
from service.datasets.schemas import NAME_PATTERN
from service.datasets.service import get_dataset, resolve_data_folder
from service.db.base import utcnow
from service.db.models import (
    TERMINAL_STATES,
    ApiToken,
    Attempt,
    Checkpoint,
    EvalResult,
    Job,
    JobEvent,
    JobStatus,
    Metric,
    MetricArchive,
)
from service.db.states import IllegalTransition, check_transition
from service.errors import (
    Problem,
    check_replay,
    field_errors,
    invalid,
    reject_nul,
)
from service.jobs.schemas import JobCreate, JobOut
from service.queue import send_train
from service.settings import Settings, redact_url
from service.workers.service import check_capacity

__all__ = [
    "add_event",
    "add_queued_event",
    "build_job",
    "cancel_job",
    "check_body",
    "decode_cursor",
    "dispatch",
    "downsample",
    "encode_cursor",
    "fetch_events",
    "find_by_idempotency_key",
    "get_job",
    "get_metrics",
    "is_terminal_event",
    "job_out",
    "latest_metrics",
    "list_jobs",
    "request_hash",
    "resolve_spec",
    "retry_job",
    "submit_job",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_EPOCHS = 100_000  # job.total_epochs is a 32-bit column; no real schedule comes near this
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)


# ------------------------------------------------------------------------------------------------ submit


def request_hash(body: BaseModel) -> str:
    """SHA-256 of the canonical JSON of the validated body (defaults filled in, keys sorted): two bodies
    that mean the same job hash the same."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _looks_like_name(value: str) -> bool:
    return re.fullmatch(NAME_PATTERN, value) is not None


def resolve_spec(session: Session, settings: Settings, body: JobCreate, job_id: uuid.UUID) -> dict[str, Any]:
    """The JobSpec the worker runs, as JSON: absolute dataset folders under the data root (a registered
    dataset's name brings its folders and classes), the teacher as an absolute checkpoint path, and
    ``output`` = the job's folder; ``hparams.mlflow``, when given, an MLflow server's http(s) URI. 422
    problems name the field."""
    mlflow = body.hparams.mlflow
    if mlflow is not None and not mlflow.lower().startswith(("http://", "https://")):
        # a file: or sqlite: store would be written wherever the URI says, on the worker's disks
        raise invalid(
            "hparams.mlflow",
            "a job of the service logs to an MLflow server (an http:// or https:// URI); a local tracking "
            "store is the operator's choice (DAIK_MLFLOW_TRACKING_URI on the workers)",
        )
    ds = body.dataset
    registered = get_dataset(session, ds.train) if _looks_like_name(ds.train) else None
    if registered is not None:
        train_value = registered.train_path
        val_value = ds.val if "val" in ds.model_fields_set else registered.val_path
        classes: Any = ds.classes if "classes" in ds.model_fields_set else list(registered.classes)
    else:
        if _looks_like_name(ds.train) and not (settings.data_dir / ds.train).exists():
            raise invalid(
                "dataset.train",
                f"{ds.train!r} is neither a registered dataset nor a folder under the data root",
            )
        train_value, val_value, classes = ds.train, ds.val, ds.classes
    train = resolve_data_folder(settings, train_value, "dataset.train")
    if val_value is None:
        raise invalid(
            "dataset.val",
            "a validation folder is needed: the service reports every job's final mAP on it",
        )
    val = resolve_data_folder(settings, val_value, "dataset.val")

    spec = body.model_dump(mode="json", exclude={"resources", "max_restarts"})
    spec["dataset"].update(
        train=str(train), val=str(val), classes=classes if isinstance(classes, str) else list(classes)
    )
    if body.student.weights is not None:
        spec["student"]["weights"] = str(
            resolve_artifact_file(settings, body.student.weights, "student.weights")
        )
    if body.teacher is not None:
        if body.teacher.job is not None:
            spec["teacher"] = {
                "checkpoint": str(_teacher_job_checkpoint(session, settings, body.teacher.job))
            }
        else:
            assert body.teacher.checkpoint is not None
            path = resolve_artifact_file(settings, body.teacher.checkpoint, "teacher.checkpoint")
            spec["teacher"] = {"checkpoint": str(path)}
    spec["output"] = str(job_output_dir(settings, job_id))
    try:  # the worker parses it again: it must stay a valid JobSpec
        resolved = JobSpec.model_validate(spec)
    except ValidationError as err:
        errors = field_errors(err.errors())
        raise Problem(
            422,
            "; ".join(f"{e.field}: {e.message}" for e in errors),
            title="Request validation failed",
            errors=errors,
        ) from None
    if resolved.teacher is not None and resolved.teacher.checkpoint is not None:
        field = (
            "teacher.job"
            if body.teacher is not None and body.teacher.job is not None
            else "teacher.checkpoint"
        )
        _check_teacher_fits(resolved, _teacher_spec(session, body, Path(resolved.teacher.checkpoint)), field)
    return resolved.model_dump(mode="json")


def _teacher_spec(session: Session, body: JobCreate, checkpoint: Path) -> JobSpec | None:
    """The training spec of the teacher, read without torch: the teacher job's row, or the ``spec.yaml``
    that ``daik train`` writes next to ``weights/`` (None when neither is there: the worker checks the
    checkpoint itself before training)."""
    data: Any = None
    if body.teacher is not None and body.teacher.job is not None:
        row = session.get(Job, uuid.UUID(body.teacher.job))
        data = row.spec if row is not None else None
    else:
        sidecar = checkpoint.parent.parent / "spec.yaml"
        if checkpoint.parent.name == "weights" and sidecar.is_file():
            try:
                data = yaml.safe_load(sidecar.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                data = None
    if not isinstance(data, dict):
        return None
    try:
        return JobSpec.model_validate(data)
    except (ValidationError, ValueError):
        return None


def _check_teacher_fits(student: JobSpec, teacher: JobSpec | None, field: str) -> None:
    """422 when the teacher was trained on other classes or another reg_max than the student's."""
    if teacher is None:
        return
    try:
        mine, theirs = student.dataset.class_names(), teacher.dataset.class_names()
    except (ValueError, OSError):
        return
    if mine != theirs:
        raise invalid(
            field,
            f"the teacher was trained on other classes ({', '.join(theirs)}) than this job's "
            f"({', '.join(mine)})",
        )
    if teacher.student.reg_max != student.student.reg_max:
        raise invalid(
            field,
            f"the teacher has reg_max {teacher.student.reg_max}, this job's student "
            f"{student.student.reg_max}: localization distillation needs the same",
        )


def _teacher_job_checkpoint(session: Session, settings: Settings, value: str) -> Path:
    """The best checkpoint file of the succeeded job ``value``, or a 422 naming ``teacher.job``."""
    try:
        teacher_id = uuid.UUID(value)
    except ValueError:
        raise invalid("teacher.job", f"{value!r} is not a job id") from None
    teacher = session.get(Job, teacher_id)
    if teacher is None:
        raise invalid("teacher.job", f"no job {teacher_id}")
    if teacher.status != JobStatus.succeeded.value:
        raise invalid("teacher.job", f"job {teacher_id} is {teacher.status}, not succeeded")
    best = best_checkpoint(session, teacher_id)
    path = checkpoint_file(settings, best) if best is not None else None
    if path is None:
        raise invalid("teacher.job", f"job {teacher_id} has no best checkpoint file")
    return path


def find_by_idempotency_key(session: Session, key: str) -> Job | None:
    return session.scalars(select(Job).where(Job.idempotency_key == key)).one_or_none()


def _replay(job: Job, digest: str) -> tuple[Job, bool]:
    check_replay(job.request_hash, digest)
    return job, False


def add_event(session: Session, job: Job, type: str, data: dict[str, Any]) -> JobEvent:
    event = JobEvent(job_id=job.id, type=type, data=data, attempt=job.attempt)
    session.add(event)
    return event


def check_body(body: JobCreate) -> None:
    """What pydantic cannot say about a job body: no NUL character anywhere, and a 32-bit epoch count."""
    reject_nul(body.model_dump(mode="json"))
    if body.hparams.epochs > MAX_EPOCHS:
        raise invalid("hparams.epochs", f"must be at most {MAX_EPOCHS}")


def build_job(
    session: Session,
    settings: Settings,
    body: JobCreate,
    *,
    idempotency_key: str | None = None,
    token: ApiToken | None = None,
) -> Job:
    """A new queued job row for ``body``, validated and resolved (:func:`resolve_spec`, the capacity check),
    not yet added to the session: :func:`submit_job` and a batch's materialisation both make their jobs
    here, then commit, then :func:`dispatch` them."""
    check_body(body)
    job_id = uuid.uuid4()
    spec = resolve_spec(session, settings, body, job_id)
    check_capacity(session, settings, body.resources.gpus)
    return Job(
        id=job_id,
        name=body.name,
        kind=body.kind,
        status=JobStatus.queued.value,
        spec=spec,
        resources=body.resources.model_dump(exclude_none=True),
        max_restarts=body.max_restarts,
        restarts=0,
        attempt=0,
        total_epochs=body.hparams.epochs,
        output_dir=spec["output"],
        idempotency_key=idempotency_key,
        request_hash=request_hash(body),
        created_by=token.id if token is not None else None,
    )


def add_queued_event(session: Session, job: Job) -> None:
    """The first ``status`` event of a new job (flushed: the event refers to the job row)."""
    session.flush()
    add_event(session, job, "status", {"status": JobStatus.queued.value, "attempt": 0, "error": None})


def submit_job(
    session: Session,
    settings: Settings,
    body: JobCreate,
    *,
    idempotency_key: str | None = None,
    token: ApiToken | None = None,
) -> tuple[Job, bool]:
    """Create the job (or replay the one made with the same ``Idempotency-Key``): returns ``(job,
    created)``. Commits the row and its ``status`` event, then sends the train task and records
    ``dispatched_at``; a failed send is logged and left to the re-dispatcher."""
    check_body(body)
    digest = request_hash(body)
    if idempotency_key is not None:
        existing = find_by_idempotency_key(session, idempotency_key)
        if existing is not None:
            return _replay(existing, digest)

    job = build_job(session, settings, body, idempotency_key=idempotency_key, token=token)
    session.add(job)
    try:
        add_queued_event(session, job)  # the job row is flushed first; a duplicate key fails here
        session.commit()
    except IntegrityError:
        session.rollback()
        if idempotency_key is None:
            raise
        # a concurrent request with the same key won the insert
        existing = find_by_idempotency_key(session, idempotency_key)
        if existing is None:
            raise Problem(409, "a request with this Idempotency-Key is in progress; retry it") from None
        return _replay(existing, digest)

    dispatch(session, settings, job)
    return job, True


def dispatch(session: Session, settings: Settings, job: Job) -> None:
    """Send the committed queued ``job``'s train task and record ``dispatched_at``; a failed send is logged
    and left to the re-dispatcher (the job stays queued)."""
    try:
        send_train(settings, job.id, int((job.resources or {}).get("gpus", 0) or 0))
    except Exception as err:  # the broker is down: the job stays queued, the re-dispatcher re-sends it
        log.warning(
            "job %s is queued but its message was not sent (%s: %s); the re-dispatcher will send it",
            job.id,
            type(err).__name__,
            redact_url(str(err)),
        )
    else:
        job.dispatched_at = utcnow()
        if session.get_bind().dialect.name == "postgresql":
            # losing this write in a crash costs only a duplicate send (the claim makes it a no-op): no need
            # to wait for the WAL flush
            session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        session.commit()


# -------------------------------------------------------------------------------------------------- read


def get_job(session: Session, job_id: uuid.UUID) -> Job | None:
    return session.get(Job, job_id)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def latest_metrics(
    session: Session, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, float | None]]:
    """The value at the highest step of each metric key, per job. PostgreSQL: one ``DISTINCT ON (job_id,
    key) ... ORDER BY job_id, key, step DESC`` over the primary key (job_id, key, step); elsewhere
    (SQLite) the portable join on ``max(step)`` per key."""
    out: dict[uuid.UUID, dict[str, float | None]] = {j: {} for j in job_ids}
    if not job_ids:
        return out
    conn = session.connection()  # Core rows: no ORM loading for plain columns
    if conn.dialect.name == "postgresql":
        q = (
            select(Metric.job_id, Metric.key, Metric.value)
            .where(Metric.job_id.in_(job_ids))
            .ext(distinct_on(Metric.job_id, Metric.key))
            .order_by(Metric.job_id, Metric.key, Metric.step.desc())
        )
    else:
        last = (
            select(Metric.job_id, Metric.key, func.max(Metric.step).label("step"))
            .where(Metric.job_id.in_(job_ids))
            .group_by(Metric.job_id, Metric.key)
            .subquery()
        )
        q = select(Metric.job_id, Metric.key, Metric.value).join(
            last, and_(Metric.job_id == last.c.job_id, Metric.key == last.c.key, Metric.step == last.c.step)
        )
    for job_id, key, value in conn.execute(q):
        out[job_id][key] = _finite(value)
    return out


def job_out(job: Job, latest: dict[str, float | None], waiting: str | None = None) -> JobOut:
    return JobOut(
        waiting=waiting,
        id=job.id,
        name=job.name,
        kind=job.kind,  # type: ignore[arg-type]  # the CHECK constraint keeps it train | distill
        status=JobStatus(job.status),
        attempt=job.attempt,
        restarts=job.restarts,
        max_restarts=job.max_restarts,
        cancel_requested=job.cancel_requested,
        progress=job.progress,
        epoch=job.epoch,
        total_epochs=job.total_epochs,
        step=job.step,
        latest_metrics=latest,
        final_map50=_finite(job.final_map50),
        final_map50_95=_finite(job.final_map50_95),
        error=job.error,
        failure_kind=job.failure_kind,
        resources=job.resources,
        spec=job.spec,
        owner_token_id=job.created_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        deadline_at=job.deadline_at,
    )


def encode_cursor(job: Job) -> str:
    """An opaque cursor: the (created_at, id) of the last job of a page, base64url JSON."""
    raw = json.dumps([job.created_at.isoformat(), job.id.hex], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        at = dt.datetime.fromisoformat(created)
        if at.tzinfo is None:
            raise ValueError("naive time")
        return at, uuid.UUID(hex=job_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise invalid("cursor", "not a cursor returned by this API", location="query") from None


def list_jobs(
    session: Session,
    *,
    statuses: Iterable[str] = (),
    kind: str | None = None,
    name: str | None = None,
    name_prefix: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Job], str | None]:
    """A page of jobs, newest first (keyset on ``(created_at, id)``, stable under inserts), and the cursor
    of the next page (None on the last)."""
    q = select(Job)
    statuses = list(statuses)
    if statuses:
        q = q.where(Job.status.in_(statuses))
    if kind is not None:
        q = q.where(Job.kind == kind)
    if name is not None:
        q = q.where(Job.name == name)
    if name_prefix is not None:
        escaped = name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(Job.name.like(escaped + "%", escape="\\"))
    if cursor is not None:
        at, last_id = decode_cursor(cursor)
        q = q.where(or_(Job.created_at < at, and_(Job.created_at == at, Job.id < last_id)))
    rows = list(session.scalars(q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None


# ----------------------------------------------------------------------------------------------- metrics


def downsample(points: Sequence[T], max_points: int | None) -> Sequence[T]:
    """At most ``max_points`` points: the first, the last and evenly spaced ones between (by index)."""
    n = len(points)
    if max_points is None or n <= max_points:
        return points
    if max_points == 1:
        return [points[-1]]
    # (n - 1) / (max_points - 1) > 1, so the rounded indices are distinct
    return [points[round(i * (n - 1) / (max_points - 1))] for i in range(max_points)]


def get_metrics(
    session: Session,
    job_id: uuid.UUID,
    *,
    keys: Sequence[str] | None = None,
    from_step: int | None = None,
    max_points: int | None = None,
) -> dict[str, Any]:
    """The contract's metrics JSON: ``{"job_id", "series": {key: [{"step", "epoch", "value"}]},
    "per_class_ap"}``; one range scan of the metric primary key (job_id, key, step)."""
    q = select(Metric.key, Metric.step, Metric.epoch, Metric.value).where(Metric.job_id == job_id)
    if keys:
        q = q.where(Metric.key.in_(keys))
    if from_step is not None:
        q = q.where(Metric.step >= from_step)
    conn = session.connection()  # Core rows (tuples): ORM loading would cost more than the query
    series: dict[str, list[dict[str, Any]]] = {}
    points: list[dict[str, Any]] = []
    current = None
    isfinite = math.isfinite
    for key, step, epoch, value in conn.execute(q.order_by(Metric.key, Metric.step)).all():
        if key != current:
            current, points = key, []
            series[key] = points
        points.append(
            {"step": step, "epoch": epoch, "value": value if value is None or isfinite(value) else None}
        )
    if max_points is not None:
        series = {k: list(downsample(v, max_points)) for k, v in series.items()}

    ev = conn.execute(
        select(EvalResult.epoch, EvalResult.map50, EvalResult.map50_95, EvalResult.per_class)
        .where(EvalResult.job_id == job_id)
        .order_by(EvalResult.epoch.desc())
        .limit(1)
    ).one_or_none()
    per_class = None
    if ev is not None:
        ev_epoch, map50, map50_95, classes = ev
        per_class = {
            "epoch": ev_epoch,
            "map50": _finite(map50),
            "map50_95": _finite(map50_95),
            "ap50": {k: _finite(v) for k, v in (classes or {}).get("ap50", {}).items()},
            "ap50_95": {k: _finite(v) for k, v in (classes or {}).get("ap50_95", {}).items()},
        }
    return {"job_id": str(job_id), "series": series, "per_class_ap": per_class}


# ------------------------------------------------------------------------------------------------ cancel


def cancel_job(session: Session, job: Job, *, force: bool = False) -> Job:
    """Cancel cooperatively and commit: a queued job is cancelled at once (its message no-ops at the
    claim); a running one becomes ``cancelling`` with ``cancel_requested`` (the worker's heartbeat sees
    it and stops the trainer; ``force`` skips the grace period). Cancelling a job already cancelled or
    cancelling changes nothing (``force`` still upgrades a pending cancel); a finished job raises
    :class:`~service.db.states.IllegalTransition` (409)."""
    # lock the row: a worker's claim (UPDATE ... WHERE status = 'queued') waits, then sees the new status
    session.refresh(job, with_for_update=True)
    current = JobStatus(job.status)
    if not check_transition(current, JobStatus.cancelled):
        if force and current == JobStatus.cancelling and not job.force_cancel:
            job.force_cancel = True
        session.commit()
        return job
    now = utcnow()
    if current == JobStatus.queued:
        job.status = JobStatus.cancelled.value
        job.cancel_requested = True
        job.finished_at = now
        job.failure_kind = "cancelled"
        add_event(
            session,
            job,
            "status",
            {"status": JobStatus.cancelled.value, "attempt": job.attempt, "error": None},
        )
    else:
        check_transition(current, JobStatus.cancelling)
        job.status = JobStatus.cancelling.value
        job.cancel_requested = True
        job.force_cancel = job.force_cancel or force
        add_event(
            session,
            job,
            "status",
            {"status": JobStatus.cancelling.value, "attempt": job.attempt, "error": None},
        )
    session.commit()
    return job


# ------------------------------------------------------------------------------------------------- retry


def retry_job(session: Session, settings: Settings, job: Job, *, start: str = "checkpoint") -> Job:
    """Queue a failed or cancelled job again, with a fresh restart budget, and send its task.

    ``start="checkpoint"``: the next attempt resumes from the newest ``last.pt`` an earlier attempt
    recorded, when there is one (its metrics past that point are archived as on any resume).
    ``start="scratch"``: nothing of the earlier attempts carries over: their checkpoint rows are dropped
    (so the next attempt starts afresh, in its own ``attempt-<n>`` folder; the earlier attempts' folders
    stay, for the user, and the ``weights`` folder of a job that ran before attempts had their own folders
    is kept aside as ``weights.retired-<attempt>``), their metric rows move to the archive, their
    evaluations are dropped, and progress and the final mAP are reset. Either way the job gets a new
    deadline (``resources.timeout``) at its next start. A job already queued is left as it is; a running,
    cancelling or succeeded job raises :class:`~service.db.states.IllegalTransition` (409)."""
    session.refresh(job, with_for_update=True)  # the worker's claim waits for this decision
    current = JobStatus(job.status)
    if current == JobStatus.queued:
        session.commit()
        return job
    if current not in (JobStatus.failed, JobStatus.cancelled):  # running -> queued is the worker's move only
        raise IllegalTransition(current, JobStatus.queued)
    check_transition(current, JobStatus.queued)
    if start == "scratch":
        _retire_attempts(session, settings, job)
    job.status = JobStatus.queued.value
    job.error = None
    job.failure_kind = None
    job.finished_at = None
    job.cancel_requested = False
    job.force_cancel = False
    job.restarts = 0
    job.lease_owner = None
    job.lease_expires_at = None
    job.deadline_at = None  # a retry runs with a new deadline (resources.timeout), set by its first claim
    job.dispatched_at = None
    add_event(
        session,
        job,
        "status",
        {"status": JobStatus.queued.value, "attempt": job.attempt, "error": None, "retry": start},
    )
    session.commit()
    dispatch(session, settings, job)
    return job


def _retire_attempts(session: Session, settings: Settings, job: Job) -> None:
    """``start="scratch"``: set the earlier attempts' outputs aside (see :func:`retry_job`)."""
    if job.output_dir:
        weights = Path(job.output_dir) / "weights"
        if weights.is_dir():
            target = weights.with_name(f"weights.retired-{job.attempt}")
            k = 1
            while target.exists():
                k += 1
                target = weights.with_name(f"weights.retired-{job.attempt}-{k}")
            weights.rename(target)
    session.execute(
        insert(MetricArchive).from_select(
            ["job_id", "key", "step", "value", "epoch", "attempt"],
            select(Metric.job_id, Metric.key, Metric.step, Metric.value, Metric.epoch, Metric.attempt).where(
                Metric.job_id == job.id
            ),
        )
    )
    session.execute(delete(Metric).where(Metric.job_id == job.id))
    session.execute(delete(EvalResult).where(EvalResult.job_id == job.id))
    session.execute(delete(Checkpoint).where(Checkpoint.job_id == job.id))
    job.epoch = 0
    job.step = 0
    job.progress = 0.0
    job.final_map50 = None
    job.final_map50_95 = None
    job.results = None


def list_attempts(session: Session, job_id: uuid.UUID) -> Sequence[Attempt]:
    return session.scalars(select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.number)).all()


# ------------------------------------------------------------------------------------------------ events


def is_terminal_event(event: JobEvent) -> bool:
    return event.type == "status" and event.data.get("status") in _TERMINAL


def fetch_events(
    session: Session, job_id: uuid.UUID, after_id: int, limit: int = 500
) -> tuple[str | None, list[JobEvent]]:
    """The job's status (read first, so a terminal status implies its events are visible below) and its
    events after ``after_id``, in order."""
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    events = session.scalars(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
        .order_by(JobEvent.id)
        .limit(limit)
    ).all()
    return status, list(events)
