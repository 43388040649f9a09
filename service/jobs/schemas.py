"""Request and response bodies of ``/jobs`` (the contracts' JSON, written as pydantic models so that the
OpenAPI document describes exactly what the API answers)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from daik_core.config import JobSpec, TeacherSpec
from service.db.models import JobStatus

__all__ = [
    "JobCreate",
    "JobList",
    "JobOut",
    "MetricPoint",
    "MetricsOut",
    "PerClassAP",
    "Resources",
]


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: int = Field(default=0, ge=0, le=64, description="GPUs the job needs (0: CPU); picks the queue")
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="the job's deadline, in seconds from its first start (retries included, a retry by the "
        "client starts a new one): a trainer still running then is stopped with a checkpoint and the job "
        "fails as `timeout`, not retried; none: no deadline",
    )


class JobCreate(JobSpec):
    """The body of ``POST /jobs``: the job spec (``daik_core.config.JobSpec``) without ``output`` (the
    service puts every job in ``<artifact_root>/jobs/<id>``), plus what the service needs to run it.

    ``dataset.train`` is a registered dataset's name or a folder under the data root; ``teacher.job`` a
    succeeded job's id or ``teacher.checkpoint`` a file under the artifact root. The service resolves them
    and stores the resolved spec in the job (``spec``), which the worker runs as is.
    """

    output: None = Field(default=None, description="set by the service; leave it out")
    resources: Resources = Resources()
    max_restarts: int = Field(default=3, ge=0, le=100, description="retries after retryable failures")

    @field_validator("output", mode="before")
    @classmethod
    def _no_output(cls, v: Any) -> None:
        if v is not None:
            raise ValueError("the service sets the output folder (<artifact_root>/jobs/<id>); leave it out")
        return None

    # JobSpec checks this as a model validator (an error without a field); here it names `teacher`
    @field_validator("teacher")
    @classmethod
    def _teacher_for_kind(cls, v: TeacherSpec | None, info: ValidationInfo) -> TeacherSpec | None:
        kind = info.data.get("kind")
        if kind == "distill" and v is None:
            raise ValueError("a distill job needs a teacher: teacher.job or teacher.checkpoint")
        if kind == "train" and v is not None:
            raise ValueError("a train job takes no teacher (use kind: distill)")
        return v


class JobOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: Literal["train", "distill"]
    status: JobStatus
    attempt: int = Field(description="the latest attempt number (0: not started yet)")
    restarts: int = Field(description="retries used so far")
    max_restarts: int
    cancel_requested: bool
    progress: float = Field(description="0..1: (completed epochs + iteration / iters) / total epochs")
    epoch: int
    total_epochs: int
    step: int
    latest_metrics: dict[str, float | None] = Field(description="the latest value of each metric key")
    final_map50: float | None
    final_map50_95: float | None
    error: str | None
    failure_kind: str | None
    waiting: str | None = Field(
        default=None,
        description="a queued job read alone (GET /jobs/{id}): why it has not started (no worker of its "
        "size, or all busy); null otherwise and in lists",
    )
    resources: dict[str, Any]
    spec: dict[str, Any] = Field(description="the resolved job spec the worker runs")
    owner_token_id: int | None = Field(
        default=None,
        description="the id of the token that created it, which may steer it (and any admin token); null: "
        "admin-owned",
    )
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    updated_at: dt.datetime
    deadline_at: dt.datetime | None = Field(
        default=None, description="resources.timeout after the first start: the job fails as timeout then"
    )


class JobList(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last one")


class MetricPoint(BaseModel):
    step: int
    epoch: int | None
    value: float | None = Field(description="null for NaN / infinity")


class PerClassAP(BaseModel):
    epoch: int
    map50: float | None
    map50_95: float | None
    ap50: dict[str, float | None]
    ap50_95: dict[str, float | None]


class MetricsOut(BaseModel):
    job_id: uuid.UUID
    series: dict[str, list[MetricPoint]] = Field(description="per key, points by step")
    per_class_ap: PerClassAP | None = Field(description="the latest evaluation, per class")


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Literal["checkpoint", "scratch"] = Field(
        default="checkpoint",
        description="checkpoint: resume from the job's last checkpoint when there is one; scratch: start "
        "afresh (earlier weights kept aside, metrics archived)",
    )


class AttemptOut(BaseModel):
    number: int
    status: str = Field(description="running | succeeded | failed | cancelled")
    worker: str | None
    pid: int | None
    exit_code: int | None
    failure_kind: str | None = Field(
        description="why it ended: user_error | oom | infra | timeout | preempted | lost | cancelled"
    )
    reason: str | None
    resumed_from: str | None = Field(description="the checkpoint it resumed from; null for a fresh start")
    log_tail: str | None
    started_at: dt.datetime
    heartbeat_at: dt.datetime | None
    finished_at: dt.datetime | None


class AttemptList(BaseModel):
    items: list[AttemptOut]
