"""Response bodies of the checkpoint routes."""

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
