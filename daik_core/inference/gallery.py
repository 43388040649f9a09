"""``gallery.json``: a few validation images with the final evaluation's predicted boxes, so the dashboard can
show what the model sees without running it (the service never imports torch).

Written by the trainer after its last evaluation, next to ``results.json``::

    {"version": 1, "score_threshold": 0.25, "classes": ["plane", ...],
     "images": [{"image": "images/p0000.png", "width": 1024, "height": 1024,
                 "boxes": [{"class": "plane", "score": 0.91, "poly": [x1, y1, ..., x4, y4]}, ...]}, ...]}

``image`` is relative to the dataset folder the images came from (the spec's ``dataset.val``), so the
reader resolves it under that folder and never trusts an absolute path from a file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from daik_core.data.dataset import ImageRecord
from daik_core.data.dota import Task1Detections
from daik_core.files import atomic_write_text

__all__ = [
    "GALLERY_FILE",
    "GALLERY_IMAGES",
    "GALLERY_MAX_BOXES",
    "GALLERY_SCORE",
    "build_gallery",
    "write_gallery",
]

GALLERY_FILE = "gallery.json"
GALLERY_IMAGES = 8  # the first images of the validation set: enough to judge, small enough to read at once
GALLERY_SCORE = 0.25  # boxes below this score are noise to the eye (the evaluation keeps them for the AP)
GALLERY_MAX_BOXES = 100  # per image, highest scores first: a crowded scene stays drawable


def build_gallery(
    images: Sequence[ImageRecord],
    folder: Path,
    detections: Mapping[str, Task1Detections],
    *,
    limit: int = GALLERY_IMAGES,
    score_threshold: float = GALLERY_SCORE,
    max_boxes: int = GALLERY_MAX_BOXES,
) -> dict[str, Any]:
    """The gallery of the first ``limit`` of ``images`` (source images of the dataset in ``folder``) with
    their detections (per class, full-image pixels) scoring at least ``score_threshold``. Paths are made
    relative to ``folder``; an image outside it is named by its file name alone."""
    chosen = list(images[:limit])
    wanted = {rec.image_id for rec in chosen}
    boxes: dict[str, list[dict[str, Any]]] = {rec.image_id: [] for rec in chosen}
    for class_name, dets in detections.items():
        for image_id, score, poly in zip(
            dets.image_ids, dets.scores.tolist(), dets.polys.tolist(), strict=True
        ):
            if image_id not in wanted or not math.isfinite(score) or score < score_threshold:
                continue
            if not all(math.isfinite(v) for v in poly):
                continue
            boxes[image_id].append(
                {"class": class_name, "score": round(score, 4), "poly": [round(v, 1) for v in poly]}
            )
    folder = folder.resolve()
    out = []
    for rec in chosen:
        path = rec.path.resolve()
        rel = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path.name
        kept = sorted(boxes[rec.image_id], key=lambda b: -b["score"])[:max_boxes]
        out.append({"image": rel, "width": rec.width, "height": rec.height, "boxes": kept})
    return {
        "version": 1,
        "score_threshold": score_threshold,
        "classes": list(detections),
        "images": out,
    }


def write_gallery(output_dir: Path, gallery: Mapping[str, Any]) -> Path:
    """Write ``gallery`` as ``output_dir/gallery.json`` (atomically: a reader never sees half a file)."""
    return atomic_write_text(output_dir / GALLERY_FILE, json.dumps(gallery, separators=(",", ":")) + "\n")
