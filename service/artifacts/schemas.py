"""Response bodies of the checkpoint and plot routes."""

from __future__ import annotations

import datetime as dt

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


class PlotOut(BaseModel):
    name: str = Field(
        description="results.png, pr_curve.png, confusion_matrix.png, labels.png, val_pred_<i>.jpg"
    )
    size_bytes: int
    url: str = Field(description="GET it with the same bearer token")


class PlotList(BaseModel):
    items: list[PlotOut]
