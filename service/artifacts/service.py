"""Files under the artifact root: checkpoint rows, their files (never outside the root), the pictures a
run draws (:data:`PLOT_NAMES`, found by name in the job's latest attempt folder) and the rule for
checkpoint paths a client gives (``teacher.checkpoint``, ``student.weights``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.datasets.service import confine
from service.db.models import Checkpoint, Job
from service.errors import invalid
from service.settings import Settings

__all__ = [
    "PLOT_MEDIA_TYPES",
    "PLOT_NAMES",
    "best_checkpoint",
    "checkpoint_file",
    "get_checkpoint",
    "job_output_dir",
    "job_output_file",
    "list_checkpoints",
    "list_plots",
    "resolve_artifact_file",
]


#: The pictures a training run writes in its output folder (``daik_core.plots``: ``RUN_PLOT_FILES`` and the
#: ``val_pred_<i>.jpg`` of ``VAL_PRED_IMAGES``; not imported, it loads numpy): the only names served.
PLOT_NAMES: tuple[str, ...] = (
    "results.png",
    "pr_curve.png",
    "confusion_matrix.png",
    "labels.png",
    "val_pred_0.jpg",
    "val_pred_1.jpg",
    "val_pred_2.jpg",
)
PLOT_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}


def job_output_dir(settings: Settings, job_id: uuid.UUID) -> Path:
    """``<artifact_root>/jobs/<job_id>``: the trainer's ``output`` (the contracts)."""
    return settings.artifact_dir.resolve() / "jobs" / str(job_id)


def resolve_artifact_file(settings: Settings, value: str, field: str) -> Path:
    """A file under the artifact root (relative to it, or absolute under it), or a 422 naming ``field``."""
    path = confine(settings.artifact_dir, value, field, "artifact root")
    if not path.is_file():
        raise invalid(field, f"no file {value!r} under the artifact root")
    return path


def list_checkpoints(session: Session, job_id: uuid.UUID) -> Sequence[Checkpoint]:
    """The job's usable checkpoints (invalid ones, which failed to load, are left out), oldest first."""
    return session.scalars(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.valid.is_(True))
        .order_by(Checkpoint.step, Checkpoint.id)
    ).all()


def get_checkpoint(session: Session, job_id: uuid.UUID, checkpoint_id: int) -> Checkpoint | None:
    row = session.get(Checkpoint, checkpoint_id)
    return row if row is not None and row.job_id == job_id else None


def best_checkpoint(session: Session, job_id: uuid.UUID) -> Checkpoint | None:
    """The newest valid checkpoint marked best."""
    return session.scalars(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.is_best.is_(True), Checkpoint.valid.is_(True))
        .order_by(Checkpoint.step.desc(), Checkpoint.id.desc())
        .limit(1)
    ).one_or_none()


def checkpoint_file(settings: Settings, row: Checkpoint) -> Path | None:
    """The checkpoint's file when it exists inside the artifact root (a row pointing elsewhere, through
    ``..``, an absolute path or a symlink, gives None)."""
    root = settings.artifact_dir.resolve()
    try:
        path = (root / row.path).resolve()
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def job_output_file(settings: Settings, job: Job, name: str) -> Path | None:
    """The file ``name`` of the job's latest attempt (the trainer's output is the attempt's folder,
    ``attempt-<n>``; a job run before attempts had their own folders has it in its output folder), when
    the file resolves inside the artifact root (symlinks followed). ``name`` is a bare file name."""
    if not job.output_dir or not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    root = settings.artifact_dir.resolve()
    for folder in (Path(job.output_dir) / f"attempt-{job.attempt}", Path(job.output_dir)):
        try:
            path = (folder / name).resolve()
        except (OSError, RuntimeError):
            continue
        if path.is_relative_to(root) and path.is_file():
            return path
    return None


def list_plots(settings: Settings, job: Job) -> list[tuple[str, Path]]:
    """The pictures of :data:`PLOT_NAMES` that the job's run has written, in that order."""
    found = []
    for name in PLOT_NAMES:
        path = job_output_file(settings, job, name)
        if path is not None:
            found.append((name, path))
    return found
