"""Response bodies of the checkpoint, run-folder file, log and plot routes."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, Field


class CheckpointOut(BaseModel):
    id: int
    epoch: int
    step: int
    is_best: bool
    size_bytes: int | None
    created_at: dt.datetime
    download_url: str = Field(description="GET it with the same bearer token")


class CheckpointList(BaseModel):
    items: list[CheckpointOut]


class JobFileOut(BaseModel):
    path: str = Field(description="relative to the job's run folder (`attempt-<n>/results.json`)")
    size: int = Field(description="bytes")
    kind: str = Field(
        description="from the name: results | metrics | log | events | plot | onnx | checkpoint | spec | "
        "other"
    )
    attempt: int | None = Field(description="the attempt whose folder holds it; null: the run folder itself")
    modified_at: dt.datetime
    download_url: str = Field(description="GET it with the same bearer token")


class JobFileList(BaseModel):
    items: list[JobFileOut]
    truncated: bool = Field(description="the listing stopped at its limit; more files exist")


class LogTailOut(BaseModel):
    job_id: uuid.UUID
    attempt: int | None = Field(description="the attempt whose log this is; null: the job has not run yet")
    path: str | None = Field(
        description="the log file in the run folder; null: the tail the database kept, or no log at all"
    )
    lines: list[str] = Field(description="the last lines, oldest first")


class PlotOut(BaseModel):
    name: str = Field(
        description="results.png, pr_curve.png, confusion_matrix.png, labels.png, val_pred_<i>.jpg"
    )
    size_bytes: int
    url: str = Field(description="GET it with the same bearer token")


class PlotList(BaseModel):
    items: list[PlotOut]
