from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class WorkerOut(BaseModel):
    name: str = Field(description="Celery node name, e.g. daik-gpus1-4242@gpu-host-3")
    gpus: int = Field(description="the GPU count of the jobs it takes (its queue daik.gpus.<gpus>)")
    concurrency: int
    queues: list[str]
    devices: list[str] = Field(
        description="the GPUs it owns (CUDA_VISIBLE_DEVICES ids); a job gets `gpus` of them"
    )
    devices_in_use: list[str] = Field(description="those its running jobs hold, as of its last heartbeat")
    cpus: int | None = Field(description="CPU threads each of its trainers gets (OMP_NUM_THREADS)")
    started_at: dt.datetime
    heartbeat_at: dt.datetime


class WorkerList(BaseModel):
    items: list[WorkerOut]
