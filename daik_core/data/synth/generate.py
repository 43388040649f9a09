"""Writing a synthetic dataset (:func:`generate_dataset`, the work of ``daik synth``) and rendering one
of its images with its label (:func:`render_image`); see :mod:`daik_core.data.synth`."""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from daik_core.data.classes import DOTA_V1_0
from daik_core.data.dota import DotaLabel, DotaObject, write_label_file
from daik_core.data.synth.levels import LEVELS
from daik_core.data.synth.scene import MAX_OVERLAP, plan, render
from daik_core.data.synth.sprites import label_obb, obb_corners
from daik_core.errors import DaikError
from daik_core.files import atomic_write_bytes

__all__ = [
    "DIFFICULTIES",
    "MAX_OVERLAP",
    "SYNTH_CLASSES",
    "TINY_SIDE",
    "SynthSummary",
    "generate_dataset",
    "image_name",
    "render_image",
]

_USED = frozenset(
    {
        "plane",
        "small-vehicle",
        "large-vehicle",
        "ship",
        "tennis-court",
        "basketball-court",
        "storage-tank",
        "harbor",
        "helicopter",
    }
)
#: The classes of synthetic scenes, a subset of DOTA v1.0 in its order.
SYNTH_CLASSES: tuple[str, ...] = tuple(c for c in DOTA_V1_0 if c in _USED)
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")
#: Objects whose short side is under this many pixels are labelled ``difficult 1``.
TINY_SIDE = 6.0
MIN_SIZE = 64
MAX_SIZE = 8192
IMAGE_SOURCE = "daik-synth"
_GSD_AT_UNIT_SCALE = 0.25  # metres per pixel when a car is ~18 px long


@dataclass
class SynthSummary:
    """What :func:`generate_dataset` wrote."""

    out: Path
    images: int
    size: int
    difficulty: str
    objects: int = 0
    difficult: int = 0
    per_class: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        counts = ", ".join(f"{name} {self.per_class.get(name, 0)}" for name in SYNTH_CLASSES)
        return (
            f"wrote {self.images} synthetic images ({self.size} px, {self.difficulty}) with {self.objects} "
            f"objects ({self.difficult} difficult) to {self.out}\n  {counts}"
        )


def image_name(index: int) -> str:
    """The stable name of image ``index`` (``synth_000042``)."""
    return f"synth_{index:06d}"


def _validate(images: int, size: int, seed: int, difficulty: str) -> None:
    def is_int(x: object) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not is_int(images) or images < 1:
        raise DaikError(f"images must be an integer >= 1, got {images!r}")
    if not is_int(size) or not MIN_SIZE <= size <= MAX_SIZE:
        raise DaikError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}] pixels, got {size!r}")
    if not is_int(seed) or seed < 0:
        raise DaikError(f"seed must be an integer >= 0, got {seed!r}")
    if difficulty not in DIFFICULTIES:
        raise DaikError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")


def render_image(
    seed: int, index: int, *, size: int, difficulty: str = "medium"
) -> tuple[npt.NDArray[np.uint8], DotaLabel]:
    """Image ``index`` of the dataset of ``seed``: an RGB uint8 array (size, size, 3) and its label."""
    _validate(1, size, seed, difficulty)
    if index < 0:
        raise DaikError(f"index must be >= 0, got {index!r}")
    level = LEVELS[difficulty]
    rng = np.random.default_rng([int(seed), int(index)])
    scene = plan(rng, int(size), level, theme=int(index))
    image = render(scene)
    objects: list[DotaObject] = []
    for o in scene.objects:
        obb = label_obb(o.cx, o.cy, o.sprite.half_l, o.sprite.half_w, o.heading)
        corners = obb_corners(obb)
        poly = tuple(round(float(v), 2) for v in corners.reshape(-1))
        objects.append(DotaObject(poly=poly, name=o.name, difficult=int(obb[3] < TINY_SIDE)))
    gsd = round(_GSD_AT_UNIT_SCALE / scene.scale, 4)
    return image, DotaLabel(objects=objects, imagesource=IMAGE_SOURCE, gsd=gsd)


def _write_one(out: Path, seed: int, index: int, size: int, difficulty: str) -> tuple[list[str], int]:
    """Render and write image ``index``; returns its objects' class names and its difficult count."""
    image, label = render_image(seed, index, size=size, difficulty=difficulty)
    name = image_name(index)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - encoding a uint8 array does not fail
        raise RuntimeError(f"PNG encoding of {name} failed")
    atomic_write_bytes(out / "images" / f"{name}.png", buf.tobytes(), durable=False)
    write_label_file(out / "labelTxt" / f"{name}.txt", label)
    return [o.name for o in label.objects], sum(int(o.difficult > 0) for o in label.objects)


def _worker_init() -> None:
    cv2.setNumThreads(1)  # the processes are the parallelism


def _write_job(job: tuple[Path, int, int, int, str]) -> tuple[list[str], int]:
    return _write_one(*job)


def _auto_workers(images: int) -> int:
    if images < 16:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, 8))


def generate_dataset(
    out: Path,
    *,
    images: int,
    size: int,
    seed: int,
    difficulty: str = "medium",
    progress: bool = True,
    workers: int | None = None,
) -> SynthSummary:
    """Write ``images`` synthetic scenes of ``size`` x ``size`` pixels to ``out/images/<name>.png`` and
    their DOTA labels to ``out/labelTxt/<name>.txt``, plus ``out/classes.txt`` (:data:`SYNTH_CLASSES`).

    ``workers`` processes render in parallel (default: one per CPU, up to 8, from 16 images on; they are
    spawned, so a calling script needs the ``if __name__ == "__main__":`` guard); the output does not
    depend on it. Raises :class:`DaikError` naming the argument for a bad ``images``,
    ``size``, ``seed``, ``difficulty``, ``workers`` or an ``out`` that is not a folder."""
    _validate(images, size, seed, difficulty)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise DaikError(f"workers must be an integer >= 1, got {workers!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DaikError(f"out {str(out)!r} exists and is not a folder")
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "labelTxt").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DaikError(f"out {str(out)!r}: cannot create the output folders ({err.strerror})") from None
    (out / "classes.txt").write_text("".join(c + "\n" for c in SYNTH_CLASSES), encoding="utf-8")
    summary = SynthSummary(out=out, images=images, size=size, difficulty=difficulty)
    counts = dict.fromkeys(SYNTH_CLASSES, 0)
    n_workers = min(workers if workers is not None else _auto_workers(images), images)
    jobs = [(out, seed, i, size, difficulty) for i in range(images)]
    bar = tqdm(total=images, desc="synth", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        if n_workers <= 1:
            results = map(_write_job, jobs)
            for names, difficult in results:
                summary.objects += len(names)
                summary.difficult += difficult
                for name in names:
                    counts[name] += 1
                bar.update(1)
        else:
            # spawn, not fork: a child forked from a process that has used OpenCV's thread pool can
            # deadlock in OpenCV (seen in cv2.setNumThreads). Callers' scripts need the usual
            # ``if __name__ == "__main__":`` guard, as for any multiprocessing code.
            with mp.get_context("spawn").Pool(n_workers, initializer=_worker_init) as pool:
                for names, difficult in pool.imap_unordered(_write_job, jobs, chunksize=2):
                    summary.objects += len(names)
                    summary.difficult += difficult
                    for name in names:
                        counts[name] += 1
                    bar.update(1)
    finally:
        bar.close()
    summary.per_class = counts
    return summary
