"""Request and response bodies of ``/batches``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.db.models import BatchStatus, JobStatus
from service.jobs.schemas import JobCreate

__all__ = ["MAX_SEEDS", "BatchCellOut", "BatchCreate", "BatchList", "BatchOut"]

MAX_SEEDS = 100

GridIn = Annotated[
    str | list[Any] | dict[str, Any],
    Field(
        description='a named grid ("paper", "daik"), an explicit list of cells [{"name", "losses", '
        '"teacher"}], or a product {"product": {"ad.enabled": [false, true], ...}} '
        "(``daik_core.ablation.grid.parse_grid``)"
    ),
]


class BatchCreate(BaseModel):
    """The body of ``POST /batches``: a base job (the ``POST /jobs`` body), a grid and seeds. Each
    configuration of the grid merges its toggles into the base's ``losses`` (``daik ablate``'s rule: the
    base's own toggles are turned off first, their options kept) and becomes a ``train`` or ``distill``
    job per seed; the grid's teacher row trains nothing (its score is the teacher job's)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="default: the base job's name",
    )
    base: JobCreate
    grid: GridIn = "daik"
    seeds: int | list[int] = Field(
        default=1,
        description=f"N: the seeds base.hparams.seed + 0..N-1 (1..{MAX_SEEDS}); or an explicit list of seeds",
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int):
            if not 1 <= v <= MAX_SEEDS:
                raise ValueError(f"a seed count must be between 1 and {MAX_SEEDS}")
            return v
        if not 1 <= len(v) <= MAX_SEEDS:
            raise ValueError(f"between 1 and {MAX_SEEDS} seeds")
        if len(set(v)) != len(v):
            raise ValueError("a seed is listed twice")
        if any(s < 0 or s >= 2**31 for s in v):
            raise ValueError("seeds are between 0 and 2**31 - 1")
        return v

    def seed_list(self) -> list[int]:
        if isinstance(self.seeds, int):
            return [self.base.hparams.seed + k for k in range(self.seeds)]
        return list(self.seeds)


class BatchCellOut(BaseModel):
    config: str
    seed: int
    job_id: uuid.UUID
    status: JobStatus
    progress: float
    final_map50: float | None


class BatchOut(BaseModel):
    id: uuid.UUID
    name: str
    status: BatchStatus
    done: bool = Field(description="every job of the batch has finished (succeeded, failed or cancelled)")
    grid: list[str] = Field(description="the configurations, in order (the teacher row included)")
    seeds: list[int]
    jobs: int = Field(description="jobs materialised")
    counts: dict[str, int] = Field(description="jobs per status (every status listed)")
    progress: float = Field(description="0..1: the mean progress of the jobs")
    teacher_job_id: uuid.UUID | None
    schedule_id: uuid.UUID | None
    fire_time: dt.datetime | None
    owner_token_id: int | None = Field(
        default=None,
        description="the id of the token that created it, which may steer it (and any admin token); null: "
        "admin-owned",
    )
    etag: str = Field(description="the batch's ETag (also in the ETag header): send it as If-Match")
    cells: list[BatchCellOut] | None = Field(
        default=None, description="GET /batches/{id} only: each (configuration, seed) and its job"
    )
    created_at: dt.datetime
    updated_at: dt.datetime


class BatchList(BaseModel):
    items: list[BatchOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last one")


ResultFormat = Literal["json", "csv", "md"]
