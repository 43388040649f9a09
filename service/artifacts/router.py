"""``/jobs/{id}/checkpoints``: list a job's checkpoints and download one (scope ``jobs:read``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import FileResponse

from service.artifacts import service
from service.artifacts.schemas import CheckpointList, CheckpointOut
from service.auth.dependencies import require
from service.dependencies import SessionDep, SettingsDep
from service.jobs.dependencies import ValidJob
from service.problems import Problem, problem_responses

router = APIRouter(
    prefix="/jobs",
    tags=["artifacts"],
    dependencies=[Depends(require("jobs:read"))],
    responses=problem_responses(401, 403, 404),
)


@router.get("/{job_id}/checkpoints", response_model=CheckpointList)
def list_checkpoints(job: ValidJob, session: SessionDep) -> CheckpointList:
    return CheckpointList(
        items=[
            CheckpointOut(
                id=c.id,
                epoch=c.epoch,
                step=c.step,
                is_best=c.is_best,
                size_bytes=c.size_bytes,
                created_at=c.created_at,
                download_url=f"/jobs/{job.id}/checkpoints/{c.id}/download",
            )
            for c in service.list_checkpoints(session, job.id)
        ]
    )


@router.get(
    "/{job_id}/checkpoints/{checkpoint_id}/download",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the checkpoint file"}},
)
def download_checkpoint(
    job: ValidJob,
    checkpoint_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    session: SessionDep,
    settings: SettingsDep,
) -> FileResponse:
    row = service.get_checkpoint(session, job.id, checkpoint_id)
    if row is None:
        raise Problem(404, f"job {job.id} has no checkpoint {checkpoint_id}")
    path = service.checkpoint_file(settings, row)
    if path is None:
        raise Problem(404, f"the file of checkpoint {checkpoint_id} is gone")
    return FileResponse(
        path, media_type="application/octet-stream", filename=f"{job.name}-e{row.epoch}-{path.name}"
    )
