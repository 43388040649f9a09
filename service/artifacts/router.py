"""``/jobs/{id}/checkpoints``: list a job's checkpoints and download one; ``/jobs/{id}/plots``: list the
pictures its run drew and get one by name (scope ``jobs:read``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import FileResponse

from service.artifacts import service
from service.artifacts.schemas import CheckpointList, CheckpointOut, PlotList, PlotOut
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


@router.get("/{job_id}/plots", response_model=PlotList)
def list_plots(job: ValidJob, settings: SettingsDep) -> PlotList:
    """The pictures the job's run has drawn so far (written when the run completes)."""
    return PlotList(
        items=[
            PlotOut(name=name, size_bytes=path.stat().st_size, url=f"/jobs/{job.id}/plots/{name}")
            for name, path in service.list_plots(settings, job)
        ]
    )


@router.get(
    "/{job_id}/plots/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "the picture"}},
)
def get_plot(job: ValidJob, name: Annotated[str, Path(max_length=40)], settings: SettingsDep) -> FileResponse:
    """One picture by its name (only the names of ``GET /jobs/{id}/plots``: no other file is served)."""
    if name not in service.PLOT_NAMES:
        raise Problem(404, f"{name!r} is not a plot name ({', '.join(service.PLOT_NAMES)})")
    path = service.job_output_file(settings, job, name)
    if path is None:
        raise Problem(404, f"job {job.id} has no {name} (plots are drawn when the run completes)")
    return FileResponse(
        path,
        media_type=service.PLOT_MEDIA_TYPES["." + name.rsplit(".", 1)[1]],
        headers={"Cache-Control": "private, max-age=60", "X-Content-Type-Options": "nosniff"},
    )
