"""Resolution of a job body into the JobSpec the worker runs, and the teacher checks.

Everything a client names (dataset, teacher, weights) is resolved at submit time into the job's ``spec``,
which the worker runs as is (the contracts): absolute dataset folders under the data root, the teacher as
an absolute checkpoint path, and ``output`` = the job's folder.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy.orm import Session

from daik_core.config import DatasetSpec, JobSpec
from service.artifacts.service import best_checkpoint, checkpoint_file, job_output_dir, resolve_artifact_file
from service.datasets.schemas import NAME_PATTERN
from service.datasets.service import get_dataset, resolve_data_folder
from service.db.models import Job, JobStatus
from service.errors import Problem, field_errors, invalid
from service.jobs.schemas import JobCreate
from service.settings import Settings

__all__ = ["resolve_spec"]


def _looks_like_name(value: str) -> bool:
    return re.fullmatch(NAME_PATTERN, value) is not None


def resolve_spec(
    session: Session, settings: Settings, body: JobCreate, *, job_id: uuid.UUID
) -> dict[str, Any]:
    """The JobSpec the worker runs, as JSON: absolute dataset folders under the data root (a registered
    dataset's name brings its folders and classes), the teacher as an absolute checkpoint path, and
    ``output`` = the job's folder; ``hparams.mlflow``, when given, an MLflow server's http(s) URI. 422
    problems name the field."""
    mlflow = body.hparams.mlflow
    if mlflow is not None and not mlflow.lower().startswith(("http://", "https://")):
        # a file: or sqlite: store would be written wherever the URI says, on the worker's disks
        raise invalid(
            "hparams.mlflow",
            "a job of the service logs to an MLflow server (an http:// or https:// URI); a local tracking "
            "store is the operator's choice (DAIK_MLFLOW_TRACKING_URI on the workers)",
        )
    spec = body.model_dump(mode="json", exclude={"resources", "max_restarts"})
    spec["dataset"].update(_resolve_dataset(session, settings, body.dataset))
    if body.student.weights is not None:
        spec["student"]["weights"] = str(
            resolve_artifact_file(settings, body.student.weights, field="student.weights")
        )
    if body.teacher is not None:
        spec["teacher"] = {"checkpoint": str(_teacher_checkpoint(session, settings, body))}
    spec["output"] = str(job_output_dir(settings, job_id))
    resolved = _validated(spec)
    if resolved.teacher is not None and resolved.teacher.checkpoint is not None:
        field = (
            "teacher.job"
            if body.teacher is not None and body.teacher.job is not None
            else "teacher.checkpoint"
        )
        _check_teacher_fits(
            resolved, _teacher_spec(session, body, Path(resolved.teacher.checkpoint)), field=field
        )
    return resolved.model_dump(mode="json")


def _resolve_dataset(session: Session, settings: Settings, ds: DatasetSpec) -> dict[str, Any]:
    """The spec's ``train``, ``val`` (absolute folders) and ``classes``: a registered dataset's name brings
    its folders and classes (``val`` and ``classes``, when given, win)."""
    registered = get_dataset(session, ds.train) if _looks_like_name(ds.train) else None
    if registered is not None:
        train_value = registered.train_path
        val_value = ds.val if "val" in ds.model_fields_set else registered.val_path
        classes: Any = ds.classes if "classes" in ds.model_fields_set else list(registered.classes)
    else:
        if _looks_like_name(ds.train) and not (settings.data_dir / ds.train).exists():
            raise invalid(
                "dataset.train",
                f"{ds.train!r} is neither a registered dataset nor a folder under the data root",
            )
        train_value, val_value, classes = ds.train, ds.val, ds.classes
    train = resolve_data_folder(settings, train_value, field="dataset.train")
    if val_value is None:
        raise invalid(
            "dataset.val",
            "a validation folder is needed: the service reports every job's final mAP on it",
        )
    val = resolve_data_folder(settings, val_value, field="dataset.val")
    return {
        "train": str(train),
        "val": str(val),
        "classes": classes if isinstance(classes, str) else list(classes),
    }


def _validated(spec: dict[str, Any]) -> JobSpec:
    """``spec`` as a JobSpec (the worker parses it again: it must stay valid), or a 422 naming the fields."""
    try:
        return JobSpec.model_validate(spec)
    except ValidationError as err:
        errors = field_errors(err.errors())
        raise Problem(
            422,
            "; ".join(f"{e.field}: {e.message}" for e in errors),
            title="Request validation failed",
            errors=errors,
        ) from None


def _teacher_checkpoint(session: Session, settings: Settings, body: JobCreate) -> Path:
    """The teacher's checkpoint file: the best one of the teacher job, or the checkpoint path given."""
    assert body.teacher is not None
    if body.teacher.job is not None:
        return _teacher_job_checkpoint(session, settings, body.teacher.job)
    assert body.teacher.checkpoint is not None
    return resolve_artifact_file(settings, body.teacher.checkpoint, field="teacher.checkpoint")


def _teacher_spec(session: Session, body: JobCreate, checkpoint: Path) -> JobSpec | None:
    """The training spec of the teacher, read without torch: the teacher job's row, or the ``spec.yaml``
    that ``daik train`` writes next to ``weights/`` (None when neither is there: the worker checks the
    checkpoint itself before training)."""
    data: Any = None
    if body.teacher is not None and body.teacher.job is not None:
        row = session.get(Job, uuid.UUID(body.teacher.job))
        data = row.spec if row is not None else None
    else:
        sidecar = checkpoint.parent.parent / "spec.yaml"
        if checkpoint.parent.name == "weights" and sidecar.is_file():
            try:
                data = yaml.safe_load(sidecar.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                data = None
    if not isinstance(data, dict):
        return None
    try:
        return JobSpec.model_validate(data)
    except (ValidationError, ValueError):
        return None


def _check_teacher_fits(student: JobSpec, teacher: JobSpec | None, *, field: str) -> None:
    """422 when the teacher was trained on other classes or another reg_max than the student's."""
    if teacher is None:
        return
    try:
        mine, theirs = student.dataset.class_names(), teacher.dataset.class_names()
    except (ValueError, OSError):
        return
    if mine != theirs:
        raise invalid(
            field,
            f"the teacher was trained on other classes ({', '.join(theirs)}) than this job's "
            f"({', '.join(mine)})",
        )
    if teacher.student.reg_max != student.student.reg_max:
        raise invalid(
            field,
            f"the teacher has reg_max {teacher.student.reg_max}, this job's student "
            f"{student.student.reg_max}: localization distillation needs the same",
        )


def _teacher_job_checkpoint(session: Session, settings: Settings, value: str) -> Path:
    """The best checkpoint file of the succeeded job ``value``, or a 422 naming ``teacher.job``."""
    try:
        teacher_id = uuid.UUID(value)
    except ValueError:
        raise invalid("teacher.job", f"{value!r} is not a job id") from None
    teacher = session.get(Job, teacher_id)
    if teacher is None:
        raise invalid("teacher.job", f"no job {teacher_id}")
    if teacher.status != JobStatus.succeeded.value:
        raise invalid("teacher.job", f"job {teacher_id} is {teacher.status}, not succeeded")
    best = best_checkpoint(session, teacher_id)
    path = checkpoint_file(settings, best) if best is not None else None
    if path is None:
        raise invalid("teacher.job", f"job {teacher_id} has no best checkpoint file")
    return path
