"""Merge patch detections back to full images, like the DOTA devkit's ``ResultMerge_multi_process``.

A detection on patch ``<base>__<rate>__<left>___<up>`` (see :mod:`daik_core.data.split`) has coordinates
in pixels of the image resized by ``rate``, offset by the window; in the full image it is::

    x_full = (x_patch + left) / rate        y_full = (y_patch + up) / rate

Then, per full image (a Task1 file holds one class, so this is class-aware), overlapping patches'
duplicates are removed by polygon NMS: in descending score order a box is kept when its IoU with every
kept box is ``<= iou_thr`` (0.1, the devkit's ``nms_thresh``). Patches of all rates of one image are
merged together. Detections of different images never suppress each other: all images of a class go
through one :func:`daik_core.ops.nms_poly` call with the image index as its ``classes`` argument.

The output lists images in name order and, within an image, detections by descending score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from daik_core.data.dota import Task1Detections, read_task1_file, write_task1_file
from daik_core.data.split import parse_patch_name
from daik_core.errors import DaikError, DataFormatError
from daik_core.ops import nms_poly

__all__ = ["MergeSummary", "merge_detections", "merge_task1_dir", "patch_to_full"]


def patch_to_full(polys: np.ndarray, rate: np.ndarray, left: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Patch-pixel polygons ``(N, 8)`` -> full-image pixels; ``rate``, ``left``, ``up`` are ``(N,)``."""
    polys = np.asarray(polys, dtype=np.float64).reshape(-1, 8)
    offset = np.stack((left, up), axis=1).astype(np.float64)  # (N, 2)
    return (polys + np.tile(offset, 4)) / np.asarray(rate, dtype=np.float64)[:, None]


def merge_detections(
    dets: Task1Detections, iou_thr: float = 0.1, *, source: str | Path = "detections"
) -> Task1Detections:
    """Patch detections of one class -> full-image detections of that class (see the module docstring).

    Every image id must be a patch name; otherwise :class:`DataFormatError` naming ``source`` (the file
    the detections came from, for the message) and the id.
    """
    if not 0 <= iou_thr <= 1:
        raise DaikError(f"merge: iou_thr must be in [0, 1], got {iou_thr}")
    n = len(dets)
    if n == 0:
        return Task1Detections.empty()
    bases: list[str] = []
    rate = np.empty(n, dtype=np.float64)
    left = np.empty(n, dtype=np.int64)
    up = np.empty(n, dtype=np.int64)
    parsed: dict[str, tuple[str, float, int, int]] = {}
    for i, image_id in enumerate(dets.image_ids):
        p = parsed.get(image_id)
        if p is None:
            try:
                p = parse_patch_name(image_id)
            except ValueError as err:
                raise DataFormatError(source, None, str(err)) from None
            parsed[image_id] = p
        bases.append(p[0])
        rate[i], left[i], up[i] = p[1], p[2], p[3]
    polys = patch_to_full(dets.polys, rate, left, up)
    scores = np.asarray(dets.scores, dtype=np.float64).reshape(-1)
    names, image_index = np.unique(np.array(bases, dtype=object), return_inverse=True)
    image_index = image_index.reshape(-1).astype(np.int64)
    keep = nms_poly(
        torch.from_numpy(polys), torch.from_numpy(scores), iou_thr, classes=torch.from_numpy(image_index)
    )
    kept = keep.cpu().numpy().astype(np.int64)
    kept = kept[np.lexsort((-scores[kept], image_index[kept]))]  # by image, then by descending score
    return Task1Detections(
        image_ids=[str(names[image_index[k]]) for k in kept.tolist()],
        scores=scores[kept].copy(),
        polys=polys[kept].copy(),
    )


@dataclass
class MergeSummary:
    """What :func:`merge_task1_dir` did."""

    dst: Path
    files: int = 0
    images: int = 0  # distinct full images over all files
    detections_in: int = 0
    detections_out: int = 0

    def describe(self) -> str:
        return (
            f"merged {self.files} Task1 files: {self.detections_in} patch detections -> "
            f"{self.detections_out} detections on {self.images} images -> {self.dst}"
        )


def merge_task1_dir(src: Path, dst: Path, iou_thr: float = 0.1) -> MergeSummary:
    """Merge every ``Task1_*.txt`` of ``src`` (patch image ids) into ``dst`` (same file names)."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DataFormatError(src, None, "detection folder does not exist")
    files = sorted(p for p in src.glob("Task1_*.txt") if p.is_file())
    if not files:
        raise DataFormatError(src, None, "no Task1_<class>.txt detection files in this folder")
    summary = MergeSummary(dst=dst)
    images: set[str] = set()
    for path in files:
        dets = read_task1_file(path)
        merged = merge_detections(dets, iou_thr, source=path)
        write_task1_file(dst / path.name, merged.image_ids, merged.scores, merged.polys)
        summary.files += 1
        summary.detections_in += len(dets)
        summary.detections_out += len(merged)
        images.update(merged.image_ids)
    summary.images = len(images)
    return summary
