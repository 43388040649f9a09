"""Files under the artifact root: checkpoint rows, their files (never outside the root) and the rule for
checkpoint paths a client gives (``teacher.checkpoint``, ``student.weights``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.datasets.service import confine
from service.db.models import Checkpoint
from service.errors import invalid
from service.settings import Settings

__all__ = [
    "best_checkpoint",
    "checkpoint_file",
    "get_checkpoint",
    "job_output_dir",
    "list_checkpoints",
    "resolve_artifact_file",
]


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
