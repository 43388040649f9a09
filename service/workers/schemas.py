from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class WorkerOut(BaseModel):
    name: str = Field(description="Celery node name, e.g. daik-gpus1-4242@gpu-host-3")
    gpus: int = Field(description="the GPU count of the jobs it takes (its queue daik.gpus.<gpus>)")
    concurrency: int
    queues: list[str]
    started_at: dt.datetime
    heartbeat_at: dt.datetime


class WorkerList(BaseModel):
    items: list[WorkerOut]
