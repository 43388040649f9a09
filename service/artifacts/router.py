"""``/jobs/{id}/checkpoints``: list a job's checkpoints and download one; ``/jobs/{id}/files``: list the
files of its run folder (results.json, metrics.jsonl, logs, plots, exported ONNX, weights) and download one;
``/jobs/{id}/logs``: the tail of an attempt's log; ``/jobs/{id}/plots``: the pictures a completed run drew
(scope ``jobs:read``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse

from service.artifacts import service
from service.artifacts.schemas import (
    CheckpointList,
    CheckpointOut,
    JobFileList,
    JobFileOut,
    LogTailOut,
    PlotList,
    PlotOut,
)
from service.auth.dependencies import require
from service.dependencies import SessionDep, SettingsDep, ValidJob
from service.problems import Problem, problem_responses

MEDIA_TYPES = {
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".log": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".yaml": "text/plain; charset=utf-8",
    ".yml": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
}

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


@router.get("/{job_id}/files", response_model=JobFileList)
def list_files(job: ValidJob, settings: SettingsDep) -> JobFileList:
    """Every regular file of the job's run folder (each attempt's ``attempt-<n>/`` folder with its
    ``results.json``, ``metrics.jsonl``, ``trainer.log``, plots, exported ``*.onnx`` and ``weights/``),
    sorted by path; empty before the job has started."""
    files, truncated = service.list_job_files(settings, job.id)
    return JobFileList(
        items=[
            JobFileOut(
                path=f.path,
                size=f.size,
                kind=f.kind,
                attempt=f.attempt,
                modified_at=f.modified_at,
                download_url=f"/jobs/{job.id}/files/{f.path}",
            )
            for f in files
        ],
        truncated=truncated,
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
    "/{job_id}/files/{file_path:path}",
    response_class=FileResponse,
    responses={
        200: {
            "content": {
                t.split(";")[0]: {}
                for t in ("application/octet-stream", *dict.fromkeys(MEDIA_TYPES.values()))
            },
            "description": "the file (its media type from its suffix)",
        }
    },
)
def download_file(
    job: ValidJob,
    file_path: Annotated[str, Path(max_length=1000, description="a `path` of GET /jobs/{id}/files")],
    settings: SettingsDep,
) -> FileResponse:
    """One file of the job's run folder. Only regular files inside it: a path with ``..``, an absolute
    path or one through a symlink is answered 404, as a missing file is."""
    path = service.job_file(settings, job.id, value=file_path)
    if path is None:
        raise Problem(404, f"job {job.id} has no file {file_path!r}")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"))


@router.get("/{job_id}/logs", response_model=LogTailOut, responses=problem_responses(422))
def job_logs(
    job: ValidJob,
    session: SessionDep,
    settings: SettingsDep,
    tail: Annotated[int, Query(ge=0, le=10_000, description="how many lines, from the end")] = 100,
    attempt: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="which attempt; default the latest with a log")
    ] = None,
) -> LogTailOut:
    """The last ``tail`` lines of an attempt's ``trainer.log`` (live while it runs), or the tail the
    database kept when the file is gone; no lines before the job has started."""
    found = service.log_tail(
        settings, job.id, service.attempt_logs(session, job.id), tail=tail, attempt=attempt
    )
    if found is None:
        raise Problem(404, f"job {job.id} has no attempt {attempt}")
    return LogTailOut(job_id=job.id, attempt=found.attempt, path=found.path, lines=found.lines)


@router.get(
    "/{job_id}/plots/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "the picture"}},
)
def get_plot(job: ValidJob, name: Annotated[str, Path(max_length=40)], settings: SettingsDep) -> FileResponse:
    """One picture by its name (only the names of ``GET /jobs/{id}/plots``: no other file is served)."""
    if name not in service.PLOT_NAMES:
        raise Problem(404, f"{name!r} is not a plot name ({', '.join(service.PLOT_NAMES)})")
    path = service.job_output_file(settings, job, name=name)
    if path is None:
        raise Problem(404, f"job {job.id} has no {name} (plots are drawn when the run completes)")
    return FileResponse(
        path,
        media_type=service.PLOT_MEDIA_TYPES["." + name.rsplit(".", 1)[1]],
        headers={"Cache-Control": "private, max-age=60", "X-Content-Type-Options": "nosniff"},
    )
