"""The frozen teacher of a distillation job: loaded from a checkpoint written by ``daik train``, checked
against the student before any training starts, then frozen (``eval()``, no gradients), re-parameterised
for speed (``fuse()``) and, on CUDA, run in half precision.

The teacher and the student must agree on what their outputs mean, or every KD term compares unrelated
numbers: the same class list in the same order, the same number of CSL angle bins and the same DFL range
(``reg_max``). Their sizes may differ (feature distillation then uses 1x1 adapters).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from daik_core.engine.checkpoint import CheckpointMeta, load_detector
from daik_core.errors import DaikError
from daik_core.models.detector import Detector

__all__ = ["TeacherMismatchWarning", "check_teacher_fits", "load_teacher"]


class TeacherMismatchWarning(UserWarning):
    """The teacher can teach the student, but was trained under other conditions (image size)."""


def _angle_bins(model: Detector) -> int:
    return int(model.head.angle_bins)


def check_teacher_fits(
    teacher: Detector,
    meta: CheckpointMeta,
    *,
    classes: Sequence[str],
    reg_max: int,
    angle_bins: int,
    source: str | Path = "teacher",
) -> None:
    """Raise :class:`DaikError` naming ``source`` and every mismatch when the teacher cannot teach a
    student with these ``classes``, ``reg_max`` and ``angle_bins``."""
    problems = []
    if tuple(meta.classes) != tuple(classes):
        if set(meta.classes) == set(classes):
            problems.append("its classes are the student's in another order")
        else:
            extra = sorted(set(meta.classes) - set(classes))
            missing = sorted(set(classes) - set(meta.classes))
            detail = "; ".join(
                part
                for part in (
                    f"not in the student's list: {', '.join(extra)}" if extra else "",
                    f"missing: {', '.join(missing)}" if missing else "",
                )
                if part
            )
            problems.append(
                f"its {len(meta.classes)} classes differ from the student's {len(classes)} ({detail})"
            )
    if meta.reg_max != reg_max:
        problems.append(f"its reg_max is {meta.reg_max}, the student's {reg_max}")
    if _angle_bins(teacher) != angle_bins:
        problems.append(f"it has {_angle_bins(teacher)} angle bins, the student {angle_bins}")
    if problems:
        raise DaikError(f"teacher.checkpoint {source}: cannot teach this student: {'; '.join(problems)}")


def load_teacher(
    path: str | Path,
    *,
    classes: Sequence[str],
    reg_max: int,
    angle_bins: int,
    device: torch.device,
    half: bool | None = None,
    imgsz: int | None = None,
) -> tuple[Detector, CheckpointMeta]:
    """The teacher of ``path`` (its EMA weights), checked against the student (:func:`check_teacher_fits`),
    frozen, fused and on ``device``; in half precision when ``half`` (default: on CUDA).

    ``imgsz``: the student's training image size. Teacher and student share the strides (8, 16, 32), so
    their anchors always line up; a teacher trained at another image size still runs, but sees its objects
    at another scale than it learnt them: a :class:`TeacherMismatchWarning` says so."""
    path = Path(path)
    if not path.is_file():
        raise DaikError(f"teacher.checkpoint {path}: no such file")
    teacher, meta = load_detector(path, prefer_ema=True, map_location="cpu")
    check_teacher_fits(teacher, meta, classes=classes, reg_max=reg_max, angle_bins=angle_bins, source=path)
    if imgsz is not None and meta.imgsz != imgsz:
        warnings.warn(
            f"teacher.checkpoint {path}: the teacher was trained at imgsz {meta.imgsz}, the student trains "
            f"at {imgsz}; its outputs on the student's images may be worse than its own evaluation",
            TeacherMismatchWarning,
            stacklevel=2,
        )
    teacher.fuse()
    freeze(teacher)
    teacher.to(device)
    if half if half is not None else device.type == "cuda":
        teacher.half()
    return teacher, meta


def freeze(model: nn.Module) -> nn.Module:
    """``eval()`` and no gradients, for good: the teacher never trains."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
