"""Batches: materialise an ablation grid x seeds as jobs, steer them, and tabulate their results.

Plain functions over a Session. A batch's jobs are made by the jobs service's own path
(:func:`service.jobs.submit.build_job`: validation, dataset and teacher resolution, capacity), committed
with the batch, then sent (:func:`service.jobs.submit.dispatch`). Each (configuration, seed) is a
``batch_cell`` row, unique per (batch, ``config_hash`` of the resolved spec): :func:`materialise` run again
creates nothing twice. The grid's teacher row trains nothing; its score is the teacher job's.

Pause and stop: **the batch's status is the one switch.** No job changes state when a batch is paused: its
queued jobs stay ``queued``, and :func:`service.db.holds.held_by_batch` makes the worker's claim skip a
queued job of a paused, stopped or cancelled batch (its message is a no-op, like a duplicate delivery) and
the re-dispatcher leave it alone. ``resume`` sets the batch active again and re-sends every queued job.
Why not move the jobs to another state, or revoke their messages: a job state "held" would touch every
reader of the job state machine, and a revoked message races the worker; the claim is already the one
place where a job starts, atomically, so checking the batch there cannot miss a message sent earlier.
``stop`` holds the same way and is final; it also cancels the queued jobs (tidying: they could never
start), while running jobs finish. ``cancel`` cancels every unfinished job through the jobs service's
cancel (running ones stop cooperatively). ``rerun-failed`` retries the failed jobs (which includes the ones
whose attempts were lost until no restart was left) through the jobs service's retry. Each verb commits the
batch's new status before touching jobs, so a crash halfway leaves held jobs held.

Results: :mod:`daik_core.ablation.table`, the same code as ``daik ablate``, over one ``RunRecord`` per
succeeded job (its stored final mAP and per-class AP from the trainer's ``results``).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic import ValidationError
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from daik_core.ablation.grid import BASELINE, GRIDS, Cell, cell_spec, config_hash, needs_teacher, parse_grid
from daik_core.ablation.table import Row, RunRecord, environment_warning, summarize, training_environments
from daik_core.config import DistillSpec, JobSpec
from daik_core.errors import DaikError
from service.batches.schemas import BatchCellOut, BatchCreate, BatchOut
from service.db.base import utcnow
from service.db.models import (
    TERMINAL_STATES,
    ApiToken,
    Batch,
    BatchCell,
    BatchStatus,
    EvalResult,
    Job,
    JobStatus,
)
from service.db.states import IllegalTransition
from service.errors import (
    ILLEGAL_TRANSITION_TYPE,
    VALIDATION_TYPE,
    FieldError,
    Problem,
    invalid,
    reject_nul,
    validation_problem,
)
from service.etags import check_if_match, etag
from service.idempotency import create_once, request_hash
from service.jobs.lifecycle import cancel_job, retry_job
from service.jobs.schemas import JobCreate
from service.jobs.submit import add_queued_event, build_job, dispatch
from service.pagination import keyset_page
from service.settings import Settings

__all__ = [
    "VERBS",
    "BatchStats",
    "act",
    "batch_etag",
    "batch_out",
    "batch_stats",
    "check_size",
    "create_batch",
    "get_batch",
    "grid_size",
    "insert_batch",
    "list_batches",
    "materialise",
    "parse_cells",
    "plan_jobs",
    "records",
    "results",
]

log = logging.getLogger(__name__)

S = BatchStatus
#: verb -> {current status: new status}; a verb asked of the status it leads to is an idempotent no-op
VERBS: dict[str, dict[BatchStatus, BatchStatus]] = {
    "pause": {S.active: S.paused},
    "resume": {S.paused: S.active},
    "stop": {S.active: S.stopped, S.paused: S.stopped},
    "cancel": {S.active: S.cancelled, S.paused: S.cancelled, S.stopped: S.cancelled},
    "rerun-failed": {S.active: S.active, S.paused: S.paused},
}
_ALREADY = {"pause": S.paused, "resume": S.active, "stop": S.stopped, "cancel": S.cancelled}
_TERMINAL = [s.value for s in TERMINAL_STATES]


# ------------------------------------------------------------------------------------------------ create


def grid_size(grid: Any) -> int | None:
    """How many configurations ``grid`` has, counted without building them (a product of a few long lists
    is a vast grid); None when it is not a grid at all (:func:`parse_cells` says why)."""
    if isinstance(grid, str):
        named = GRIDS.get(grid)
        return None if named is None else len(named)
    if isinstance(grid, list):
        return len(grid)
    if isinstance(grid, dict) and isinstance(grid.get("product"), dict):
        size = 1
        for values in grid["product"].values():
            if not isinstance(values, list):
                return None
            size *= len(values)
        return size or None
    return None


def check_size(body: BatchCreate, *, max_cells: int, prefix: str = "") -> None:
    """A 422 naming ``grid`` and ``seeds`` when the batch would have more than ``max_cells`` configurations x
    seeds (``DAIK_MAX_BATCH_CELLS``); checked before the grid is built, so a vast grid costs nothing."""
    cells = grid_size(body.grid)
    if cells is None:
        return
    seeds = body.seeds if isinstance(body.seeds, int) else len(body.seeds)
    if cells * seeds <= max_cells:
        return
    message = (
        f"{cells} configurations x {seeds} seeds = {cells * seeds} runs, more than the {max_cells} a batch "
        "may have (DAIK_MAX_BATCH_CELLS)"
    )
    raise Problem(
        422,
        message,
        title="Request validation failed",
        type=VALIDATION_TYPE,
        errors=[
            FieldError(field=f"{prefix}{f}", message=message, location="body") for f in ("grid", "seeds")
        ],
    )


def parse_cells(grid: Any, field: str = "grid") -> list[Cell]:
    """The grid's cells (:func:`daik_core.ablation.grid.parse_grid`), or a 422 naming the field: an explicit
    cell's bad setting as ``grid[2].losses.ad.weight``, any other grid error as ``grid``."""
    if isinstance(grid, list):
        for i, item in enumerate(grid):
            losses = item.get("losses") if isinstance(item, dict) else None
            if not isinstance(losses, dict):
                continue
            try:
                DistillSpec.model_validate(losses)
            except ValidationError as err:
                raise validation_problem(err, f"{field}[{i}].losses") from None
    try:
        return parse_grid(grid)
    except DaikError as err:
        raise invalid(field, str(err)) from None


@dataclass(frozen=True)
class _Planned:
    index: int  # of the cell in the grid
    config: str
    seed: int
    body: JobCreate


def plan_jobs(body: BatchCreate, cells: Sequence[Cell], *, field: str = "grid") -> list[_Planned]:
    """One ``POST /jobs`` body per (trained cell, seed): ``daik ablate``'s :func:`cell_spec` over the base,
    with the base's teacher (as the client named it) on the cells that need one. Touches no database:
    also the check of a schedule's template. 422s name ``{field}[i]``."""
    base = body.base
    base_spec = JobSpec.model_validate(base.model_dump(mode="json", exclude={"resources", "max_restarts"}))
    teacher = base.teacher.model_dump(mode="json", exclude_none=True) if base.teacher is not None else None
    planned = []
    for i, cell in enumerate(cells):
        if cell.teacher:
            continue
        if teacher is None and needs_teacher(base_spec, cell):
            raise invalid(
                f"{field}[{i}]",
                f"configuration {cell.name!r} distils: the base needs a teacher",
            )
        for seed in body.seed_list():
            try:
                spec = cell_spec(base_spec, cell, seed, "", "teacher" if teacher is not None else None)
            except DaikError as err:
                raise invalid(f"{field}[{i}]", str(err)) from None
            data = spec.model_dump(mode="json", exclude={"output"})
            # the dataset as the client named it: a registered name without val brings its own val folder
            data["dataset"] = {k: v for k, v in data["dataset"].items() if k in base.dataset.model_fields_set}
            data["teacher"] = teacher if data["kind"] == "distill" else None
            data.update(
                resources=base.resources.model_dump(exclude_none=True), max_restarts=base.max_restarts
            )
            try:
                job_body = JobCreate.model_validate(data)
            except ValidationError as err:
                raise invalid(f"{field}[{i}]", str(err)) from None
            planned.append(_Planned(i, cell.name, seed, job_body))
    return planned


def _cells_of(batch: Batch) -> list[Cell]:
    return [Cell(c["name"], c.get("losses") or {}, bool(c.get("teacher"))) for c in batch.cells]


def materialise(
    session: Session, settings: Settings, batch: Batch, *, token: ApiToken | None = None
) -> list[Job]:
    """Add the batch's missing jobs (those whose config hash has no ``batch_cell`` yet) with their cells and
    first events, flushed, not committed; returns them. Two cells that train the same thing: 422."""
    body = BatchCreate.model_validate(batch.spec)
    existing = set(session.scalars(select(BatchCell.config_hash).where(BatchCell.batch_id == batch.id)))
    seen: dict[str, str] = {}
    jobs = []
    for p in plan_jobs(body, _cells_of(batch)):
        job = build_job(session, settings, p.body, token=token)
        digest = config_hash(JobSpec.model_validate(job.spec))
        if digest in seen:
            raise invalid(f"grid[{p.index}]", f"trains the same as configuration {seen[digest]!r}")
        seen[digest] = p.config
        if digest in existing:
            continue
        session.add(job)
        add_queued_event(session, job)
        session.add(
            BatchCell(batch_id=batch.id, config=p.config, seed=p.seed, config_hash=digest, job_id=job.id)
        )
        jobs.append(job)
    session.flush()
    return jobs


def _teacher_job_id(session: Session, body: BatchCreate) -> uuid.UUID | None:
    teacher = body.base.teacher
    if teacher is None or teacher.job is None:
        return None
    try:
        job_id = uuid.UUID(teacher.job)
    except ValueError:
        raise invalid("base.teacher.job", f"{teacher.job!r} is not a job id") from None
    if session.get(Job, job_id) is None:
        raise invalid("base.teacher.job", f"no job {job_id}")
    return job_id


def insert_batch(
    session: Session,
    settings: Settings,
    body: BatchCreate,
    *,
    idempotency_key: str | None = None,
    token: ApiToken | None = None,
    schedule_id: uuid.UUID | None = None,
    fire_time: dt.datetime | None = None,
) -> tuple[Batch, list[Job]]:
    """Validate ``body`` and add the batch with all its jobs to the session (flushed, not committed): the
    caller commits, then dispatches the jobs (:func:`create_batch`, the schedule dispatcher)."""
    check_size(body, max_cells=settings.max_batch_cells)
    reject_nul(body.model_dump(mode="json"))
    cells = parse_cells(body.grid)
    stored = body.model_dump(mode="json")
    # the dataset as the client named it (a registered name without val brings the registered val folder)
    stored["base"]["dataset"] = body.base.dataset.model_dump(mode="json", exclude_unset=True)
    batch = Batch(
        id=uuid.uuid4(),
        name=body.name or body.base.name,
        status=BatchStatus.active.value,
        version=1,
        spec=stored,
        cells=[c.to_dict() for c in cells],
        teacher_job_id=_teacher_job_id(session, body),
        schedule_id=schedule_id,
        fire_time=fire_time,
        idempotency_key=idempotency_key,
        request_hash=request_hash(body),
        created_by=token.id if token is not None else None,
    )
    session.add(batch)
    session.flush()
    return batch, materialise(session, settings, batch, token=token)


def dispatch_jobs(session: Session, settings: Settings, jobs: Iterable[Job]) -> None:
    for job in jobs:
        dispatch(session, settings, job)


def create_batch(
    session: Session,
    settings: Settings,
    body: BatchCreate,
    *,
    idempotency_key: str | None = None,
    token: ApiToken | None = None,
) -> tuple[Batch, bool]:
    """``POST /batches``: the batch and its jobs in one transaction, then the jobs sent; or the batch made
    earlier with the same ``Idempotency-Key`` (same body: replayed; another body: 422; in flight: 409)."""
    jobs: list[Job] = []

    def create() -> Batch:
        batch, made = insert_batch(session, settings, body, idempotency_key=idempotency_key, token=token)
        jobs.extend(made)
        return batch

    batch, created = create_once(session, Batch, body=body, idempotency_key=idempotency_key, create=create)
    if created:
        dispatch_jobs(session, settings, jobs)
    return batch, created


# -------------------------------------------------------------------------------------------------- read


def get_batch(session: Session, batch_id: uuid.UUID) -> Batch | None:
    return session.get(Batch, batch_id)


def batch_etag(batch: Batch) -> str:
    return etag(batch.id, batch.version)


@dataclass
class BatchStats:
    counts: dict[str, int]
    jobs: int
    progress: float


def batch_stats(session: Session, batch_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, BatchStats]:
    """Jobs per status and mean progress (a succeeded job counts as 1) of each batch, in one query."""
    out = {b: BatchStats({s.value: 0 for s in JobStatus}, 0, 0.0) for b in batch_ids}
    if not batch_ids:
        return out
    done = case((Job.status == JobStatus.succeeded.value, 1.0), else_=Job.progress)
    q = (
        select(BatchCell.batch_id, Job.status, func.count(), func.sum(done))
        .join(Job, Job.id == BatchCell.job_id)
        .where(BatchCell.batch_id.in_(batch_ids))
        .group_by(BatchCell.batch_id, Job.status)
    )
    sums: dict[uuid.UUID, float] = {b: 0.0 for b in batch_ids}
    for batch_id, status, n, progress in session.execute(q):
        stats = out[batch_id]
        stats.counts[status] = int(n)
        stats.jobs += int(n)
        sums[batch_id] += float(progress or 0.0)
    for b, stats in out.items():
        stats.progress = sums[b] / stats.jobs if stats.jobs else 0.0
    return out


def _cells_out(session: Session, batch: Batch) -> list[BatchCellOut]:
    rows = session.execute(
        select(BatchCell.config, BatchCell.seed, Job.id, Job.status, Job.progress, Job.final_map50)
        .join(Job, Job.id == BatchCell.job_id)
        .where(BatchCell.batch_id == batch.id)
        .order_by(BatchCell.id)
    ).all()
    return [
        BatchCellOut(
            config=config,
            seed=seed,
            job_id=job_id,
            status=JobStatus(status),
            progress=progress,
            final_map50=map50,
        )
        for config, seed, job_id, status, progress, map50 in rows
    ]


def batch_out(session: Session, batch: Batch, stats: BatchStats, *, with_cells: bool = False) -> BatchOut:
    finished = sum(stats.counts[s] for s in _TERMINAL)
    return BatchOut(
        id=batch.id,
        name=batch.name,
        status=BatchStatus(batch.status),
        done=stats.jobs > 0 and finished == stats.jobs,
        grid=[c["name"] for c in batch.cells],
        seeds=BatchCreate.model_validate(batch.spec).seed_list(),
        jobs=stats.jobs,
        counts=stats.counts,
        progress=stats.progress,
        teacher_job_id=batch.teacher_job_id,
        schedule_id=batch.schedule_id,
        fire_time=batch.fire_time,
        owner_token_id=batch.created_by,
        etag=batch_etag(batch),
        cells=_cells_out(session, batch) if with_cells else None,
        created_at=batch.created_at,
        updated_at=batch.updated_at,
    )


def list_batches(
    session: Session,
    *,
    statuses: Iterable[str] = (),
    schedule_id: uuid.UUID | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Batch], str | None]:
    """A page of batches, newest first (keyset on ``(created_at, id)``, as ``GET /jobs``)."""
    q = select(Batch)
    statuses = list(statuses)
    if statuses:
        q = q.where(Batch.status.in_(statuses))
    if schedule_id is not None:
        q = q.where(Batch.schedule_id == schedule_id)
    return keyset_page(session, Batch, q, limit=limit, cursor=cursor)


# ------------------------------------------------------------------------------------------------- verbs


def _jobs_of(session: Session, batch: Batch, statuses: Sequence[JobStatus]) -> list[Job]:
    return list(
        session.scalars(
            select(Job)
            .join(BatchCell, BatchCell.job_id == Job.id)
            .where(BatchCell.batch_id == batch.id, Job.status.in_([s.value for s in statuses]))
            .order_by(BatchCell.id)
        )
    )


def act(session: Session, settings: Settings, batch: Batch, *, verb: str, if_match: str | None) -> Batch:
    """Apply ``verb`` (:data:`VERBS`) to the batch (module docstring): ``If-Match``, when sent, must name
    the current ETag (412); an illegal verb for the status is a 409; the status a verb leads to, asked
    again, changes nothing. The new status is committed before any job is touched."""
    session.refresh(batch, with_for_update=True)  # verbs on one batch take turns
    check_if_match(if_match, batch_etag(batch), required=False)
    current = BatchStatus(batch.status)
    if verb != "rerun-failed" and current == _ALREADY[verb]:
        session.commit()
        return batch
    target = VERBS[verb].get(current)
    if target is None:
        raise Problem(
            409,
            f"a {current.value} batch cannot {verb}",
            title="Illegal state transition",
            type=ILLEGAL_TRANSITION_TYPE,
            extra={"current_status": current.value, "verb": verb},
        )
    if verb == "rerun-failed":
        failed = _jobs_of(session, batch, [JobStatus.failed])
        if failed:
            batch.version += 1
            batch.updated_at = utcnow()
        session.commit()
        for job in failed:
            _quietly(session, job, partial(retry_job, session, settings, job))
        return batch

    batch.status = target.value
    batch.version += 1
    batch.updated_at = utcnow()
    session.commit()
    if verb == "resume":
        for job in _jobs_of(session, batch, [JobStatus.queued]):
            dispatch(session, settings, job)
    elif verb == "stop":
        for job in _jobs_of(session, batch, [JobStatus.queued]):
            _quietly(session, job, partial(cancel_job, session, job))
    elif verb == "cancel":
        live = [JobStatus.queued, JobStatus.running, JobStatus.cancelling]
        for job in _jobs_of(session, batch, live):
            _quietly(session, job, partial(cancel_job, session, job))
    session.refresh(batch)
    return batch


def _quietly(session: Session, job: Job, action: Callable[[], Job]) -> None:
    """Run a job verb; a job that moved on meanwhile (finished while we cancel it, say) is left as it is."""
    try:
        action()
    except IllegalTransition as err:
        session.rollback()
        log.info("batch verb: job %s left as it is (%s)", job.id, err)


# ----------------------------------------------------------------------------------------------- results


def _record(config: str, *, seed: int, job: Job, per_class: dict[str, Any] | None) -> RunRecord:
    """The job's final evaluation as ``daik ablate``'s record: its stored final mAP50 / mAP50:95, per-class
    AP50 from the trainer's results (else its last evaluation), parameters and GFLOPs."""
    res = job.results or {}
    ap50 = res.get("ap50") or (per_class or {}).get("ap50") or {}
    return RunRecord.from_dict(
        {
            "config": config,
            "seed": seed,
            "map50": job.final_map50,
            "map50_95": job.final_map50_95,
            "ap50": ap50,
            "params": res.get("params"),
            "gflops": res.get("gflops"),
            "extra": {"job_id": str(job.id), "environments": res.get("environments") or []},
        }
    )


def _last_per_class(session: Session, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    out: dict[uuid.UUID, dict[str, Any]] = {}
    rows = session.execute(
        select(EvalResult.job_id, EvalResult.per_class)
        .where(EvalResult.job_id.in_(job_ids))
        .order_by(EvalResult.job_id, EvalResult.epoch)
    )
    for job_id, per_class in rows:
        out[job_id] = per_class or {}  # the last epoch wins
    return out


def records(session: Session, batch: Batch) -> list[RunRecord]:
    """One record per succeeded job of the batch, and the teacher row's from the teacher job."""
    rows = session.execute(
        select(BatchCell.config, BatchCell.seed, Job)
        .join(Job, Job.id == BatchCell.job_id)
        .where(BatchCell.batch_id == batch.id, Job.status == JobStatus.succeeded.value)
        .order_by(BatchCell.id)
    ).all()
    per_class = _last_per_class(session, [job.id for _, _, job in rows])
    out = [_record(config, seed=seed, job=job, per_class=per_class.get(job.id)) for config, seed, job in rows]
    teacher_cell = next((c for c in _cells_of(batch) if c.teacher), None)
    if teacher_cell is not None and batch.teacher_job_id is not None:
        teacher = session.get(Job, batch.teacher_job_id)
        if teacher is not None and teacher.status == JobStatus.succeeded.value:
            seed = int(((teacher.spec or {}).get("hparams") or {}).get("seed") or 0)
            extra = _last_per_class(session, [teacher.id]).get(teacher.id)
            out.append(_record(teacher_cell.name, seed=seed, job=teacher, per_class=extra))
    return out


def results(session: Session, batch: Batch) -> tuple[list[Row], dict[str, Any]]:
    """The ablation table's rows (``daik_core.ablation.table.summarize``, in the grid's order) and the
    metadata ``daik ablate`` writes with them (``spec``, ``seeds``) plus the batch's id and completeness."""
    cells = _cells_of(batch)
    teacher = next((c.name for c in cells if c.teacher), None)
    recs = records(session, batch)
    rows = summarize(recs, [c.name for c in cells], baseline=BASELINE, teacher=teacher)
    body = BatchCreate.model_validate(batch.spec)
    stats = batch_stats(session, [batch.id])[batch.id]
    meta = {
        "spec": body.base.name,
        "seeds": body.seed_list(),
        "batch": str(batch.id),
        "complete": stats.jobs > 0 and stats.counts[JobStatus.succeeded.value] == stats.jobs,
        # the compute environments of its jobs (workers on different machines differ); see daik_core.engine
        "environments": list(training_environments(recs).values()),
        "warnings": [w for w in (environment_warning(recs),) if w is not None],
    }
    return rows, meta
