"""The tables. Postgres (or the embedded SQLite) owns job state; a broker message only wakes a worker.

Job states (SERVICE.md)::

    queued -> running -> (cancelling) -> succeeded | failed | cancelled
    running -> queued                    a retryable attempt failure (bounded by max_restarts)

``job.attempt`` is the fencing token: the worker's claim increments it, and every later write of that
worker carries it and is ignored once the job has moved on (a newer attempt, a terminal state).
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db.base import Base, JSONType, UTCDateTime, utcnow

__all__ = [
    "BOOTSTRAP_TOKEN_NAME",
    "BOOTSTRAP_TOKEN_PREFIX",
    "HELD_BATCH_STATES",
    "TERMINAL_STATES",
    "ApiToken",
    "Attempt",
    "Batch",
    "BatchCell",
    "BatchStatus",
    "Checkpoint",
    "Dataset",
    "EvalResult",
    "FailureKind",
    "Job",
    "JobEvent",
    "JobStatus",
    "Maintenance",
    "Metric",
    "MetricArchive",
    "Schedule",
    "Worker",
]


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL_STATES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class FailureKind(str, enum.Enum):
    user_error = "user_error"  # bad spec / data / code error in the trainer: not retried
    oom = "oom"  # out of memory: not retried
    infra = "infra"  # the worker or its machine failed: retried
    timeout = "timeout"
    preempted = "preempted"  # a signal (SIGTERM / SIGKILL / SIGINT) from outside: retried
    lost = "lost"  # the heartbeat stopped (reaper): retried
    cancelled = "cancelled"


def _status_check(name: str, column: str, enum_cls: type[enum.Enum]) -> CheckConstraint:
    values = ", ".join(f"'{e.value}'" for e in enum_cls)
    return CheckConstraint(f"{column} IN ({values})", name=name)


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (
        _status_check("status", "status", JobStatus),
        CheckConstraint("kind IN ('train', 'distill')", name="kind"),
        UniqueConstraint("idempotency_key"),
        Index("ix_job_status_created_at", "status", "created_at"),
        Index("ix_job_created_at_id", "created_at", "id"),  # the job list's keyset pagination
        Index("ix_job_name", "name"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued.value)
    # the validated daik_core.config.JobSpec as submitted (JSON), with dataset / teacher as the user named
    # them; the worker resolves paths at claim time
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    resources: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # {"gpus": 0}
    max_restarts: Mapped[int] = mapped_column(Integer, default=3)
    restarts: Mapped[int] = mapped_column(Integer, default=0)  # retries used so far
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # fencing token, = the latest attempt number
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # resources.timeout: set by the first claim (database time), cleared by a retry
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    force_cancel: Mapped[bool] = mapped_column(Boolean, default=False)
    # progress of the running attempt
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    total_epochs: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1
    # outcome
    final_map50: Mapped[float | None] = mapped_column(Float)
    final_map50_95: Mapped[float | None] = mapped_column(Float)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # results.json of the trainer
    error: Mapped[str | None] = mapped_column(Text)  # readable reason of a failure
    failure_kind: Mapped[str | None] = mapped_column(String(16))
    output_dir: Mapped[str | None] = mapped_column(Text)
    # submission
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # the owner: the token that submitted it (a batch's jobs: the batch's); null: admin-owned
    created_by: Mapped[int | None] = mapped_column(ForeignKey("api_token.id", ondelete="SET NULL"))
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # last broker send
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="job", order_by="Attempt.number", cascade="all, delete-orphan"
    )


class Attempt(Base):
    __tablename__ = "attempt"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(200))
    pid: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running|succeeded|failed|...
    exit_code: Mapped[int | None] = mapped_column(Integer)
    failure_kind: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    resumed_from: Mapped[str | None] = mapped_column(Text)  # checkpoint path, or None for a fresh start
    log_tail: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    job: Mapped[Job] = relationship(back_populates="attempts")


class Metric(Base):
    """One value per (job, key, step): upserted only by an attempt >= the stored one."""

    __tablename__ = "metric"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)  # None for NaN / inf
    epoch: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MetricArchive(Base):
    """Metric rows of older attempts past the step a resumed attempt restarted from."""

    __tablename__ = "metric_archive"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(100))
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float)
    epoch: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    archived_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EvalResult(Base):
    """One evaluation (DOTA mAP with per-class AP) of a job at an epoch."""

    __tablename__ = "eval_result"
    __table_args__ = (UniqueConstraint("job_id", "epoch"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)
    map50: Mapped[float | None] = mapped_column(Float)
    map50_95: Mapped[float | None] = mapped_column(Float)
    per_class: Mapped[dict[str, Any]] = mapped_column(JSONType)  # {"ap50": {cls: ap}, "ap50_95": {...}}
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Checkpoint(Base):
    __tablename__ = "checkpoint"
    __table_args__ = (UniqueConstraint("job_id", "path"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)  # relative to the artifact root
    is_best: Mapped[bool] = mapped_column(Boolean, default=False)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    load_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Dataset(Base):
    __tablename__ = "dataset"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # folders relative to the data root, each in DOTA layout (images/, labelTxt/)
    train_path: Mapped[str] = mapped_column(Text)
    val_path: Mapped[str | None] = mapped_column(Text)
    classes: Mapped[list[str]] = mapped_column(JSONType)
    description: Mapped[str | None] = mapped_column(Text)
    num_train_images: Mapped[int | None] = mapped_column(Integer)
    num_val_images: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


#: ``service.auth.service.BOOTSTRAP_NAME`` / ``BOOTSTRAP_PREFIX``: the bootstrap token's row keeps no part
#: of the token (a person chose it), which a CHECK constraint holds to
BOOTSTRAP_TOKEN_NAME = "bootstrap"
BOOTSTRAP_TOKEN_PREFIX = "(bootstrap)"


class ApiToken(Base):
    """A bearer token, stored as its SHA-256 (tokens are long random strings, so no slow hash is needed).
    It owns the jobs, batches and schedules it created (their ``created_by``)."""

    __tablename__ = "api_token"
    __table_args__ = (
        UniqueConstraint("token_hash"),
        CheckConstraint(
            f"name <> '{BOOTSTRAP_TOKEN_NAME}' OR prefix = '{BOOTSTRAP_TOKEN_PREFIX}'",
            name="bootstrap_prefix",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64))
    # the first characters of a generated token, to tell tokens apart; the bootstrap token's: "(bootstrap)"
    prefix: Mapped[str] = mapped_column(String(12))
    scopes: Mapped[list[str]] = mapped_column(JSONType)  # e.g. ["jobs:read", "jobs:write", "admin"]
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class JobEvent(Base):
    """The job's event stream (Server-Sent Events; ``id`` is the SSE event id for Last-Event-ID)."""

    __tablename__ = "job_event"
    __table_args__ = (Index("ix_job_event_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))  # status | epoch | eval | checkpoint | log
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    attempt: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Worker(Base):
    """A ``daik worker`` process as it advertises itself: the GPU count of the jobs it takes (its queue
    ``daik.gpus.<gpus>``) and how many at once, the GPUs it owns (``CUDA_VISIBLE_DEVICES`` ids) and those its
    running jobs hold, the CPU threads each trainer gets; ``heartbeat_at`` (and ``devices_in_use``) is
    refreshed while it runs and ``stopped_at`` set when it shuts down. The API judges a job's
    ``resources.gpus`` against the live ones."""

    __tablename__ = "worker"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # Celery node, e.g. daik-gpus1-42@host
    gpus: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    queues: Mapped[list[str]] = mapped_column(JSONType, default=list)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    devices: Mapped[list[str]] = mapped_column(JSONType, default=list, server_default=text("'[]'"))
    devices_in_use: Mapped[list[str]] = mapped_column(JSONType, default=list, server_default=text("'[]'"))
    cpus: Mapped[int | None] = mapped_column(Integer)


class Maintenance(Base):
    """When each housekeeping task (``daik.redispatch``, ``daik.reap``, ``daik.schedules.dispatch``) last
    ran to its end, where, and how often it is meant to run: written by the control consumer of ``daik
    beat``; ``/readyz`` alerts on a task that has not run for three of its periods."""

    __tablename__ = "maintenance"

    task: Mapped[str] = mapped_column(String(100), primary_key=True)
    every_seconds: Mapped[float] = mapped_column(Float)
    last_run_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    node: Mapped[str] = mapped_column(String(200))


class BatchStatus(str, enum.Enum):
    """A batch's own switch (its jobs keep their own states): ``active`` starts its queued jobs,
    ``paused`` holds them until resumed, ``stopped`` and ``cancelled`` are final."""

    active = "active"
    paused = "paused"
    stopped = "stopped"
    cancelled = "cancelled"


#: a queued job of a batch in one of these states is not claimed (``service.batches`` explains why)
HELD_BATCH_STATES = frozenset({BatchStatus.paused, BatchStatus.stopped, BatchStatus.cancelled})


class Batch(Base):
    """An ablation grid x seeds over one base job spec (``spec``: the validated ``POST /batches`` body); its
    jobs are the :class:`BatchCell` rows. A schedule's batch carries the (schedule, fire time) it was made
    for, unique, so that two dispatchers firing at once make one batch."""

    __tablename__ = "batch"
    __table_args__ = (
        _status_check("status", "status", BatchStatus),
        UniqueConstraint("idempotency_key"),
        UniqueConstraint("schedule_id", "fire_time"),
        Index("ix_batch_created_at_id", "created_at", "id"),  # keyset pagination
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.active.value)
    version: Mapped[int] = mapped_column(Integer, default=1)  # the ETag: bumped by every verb that acts
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)  # {"base": {...}, "grid": ..., "seeds": [...]}
    cells: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)  # the parsed grid, teacher row included
    teacher_job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"))
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("schedule.id", ondelete="SET NULL"))
    fire_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # the owner: the token that submitted it (a schedule's batch: the schedule's owner); null: admin-owned
    created_by: Mapped[int | None] = mapped_column(ForeignKey("api_token.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class BatchCell(Base):
    """One materialised (configuration, seed) of a batch and its job; unique per (batch, config hash), so
    materialising a batch again creates nothing twice."""

    __tablename__ = "batch_cell"
    __table_args__ = (UniqueConstraint("batch_id", "config_hash"), UniqueConstraint("job_id"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    config: Mapped[str] = mapped_column(String(200))  # the grid cell's name
    seed: Mapped[int] = mapped_column(Integer)
    config_hash: Mapped[str] = mapped_column(String(64))  # daik_core.ablation.grid.config_hash
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Schedule(Base):
    """A cron expression in an IANA time zone that makes a batch from ``template`` at each fire time;
    ``next_fire_at`` is null while disabled. The last fire's outcome is kept on the row."""

    __tablename__ = "schedule"
    __table_args__ = (
        UniqueConstraint("name"),
        Index("ix_schedule_enabled_next_fire_at", "enabled", "next_fire_at"),  # the dispatcher's scan
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    template: Mapped[dict[str, Any]] = mapped_column(JSONType)  # a POST /batches body (see service.schedules)
    version: Mapped[int] = mapped_column(Integer, default=1)  # the ETag
    next_fire_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_fire_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_fire_status: Mapped[str | None] = mapped_column(String(16))  # created | failed
    last_fire_error: Mapped[str | None] = mapped_column(Text)
    # the owner: the token that made the schedule (its batches and jobs are its too); null: admin-owned
    created_by: Mapped[int | None] = mapped_column(ForeignKey("api_token.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
