"""What the dashboard's pages compute: SVG line charts of a job's metrics and the bar chart of a batch's
configurations (drawn here, so a page shows them without script), the job's ``gallery.json`` read from its
output folder (only inside the artifact root), and the gallery's image files (only inside the data root).

Plain functions; the router renders their results with the templates.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from service.datasets.service import IMAGE_SUFFIXES
from service.db.models import Job
from service.settings import Settings

__all__ = [
    "GALLERY_MAX_BYTES",
    "Bar",
    "BarChart",
    "Chart",
    "GalleryBox",
    "GalleryImage",
    "bar_chart",
    "flatten_spec",
    "gallery_image_file",
    "line_chart",
    "loss_keys",
    "read_gallery",
    "spec_differences",
]

GALLERY_FILE = "gallery.json"
GALLERY_MAX_BYTES = 2_000_000  # the trainer writes a few kB; a larger file is not ours to render
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


# ------------------------------------------------------------------------------------------------ charts


@dataclass(frozen=True)
class Line:
    name: str
    color: str
    points: str  # the polyline's "x,y x,y ..." in the chart's pixels
    last: float | None  # the last value, for the legend


@dataclass(frozen=True)
class Chart:
    """A line chart ready for the template: pixel polylines and the axis ranges they span."""

    title: str
    width: int
    height: int
    lines: list[Line]
    x_label: str
    x_min: float
    x_max: float
    y_min: float
    y_max: float
    left: int = 44
    right: int = 8
    top: int = 8
    bottom: int = 22
    empty: bool = field(default=False)


def loss_keys(keys: Sequence[str]) -> list[str]:
    """The loss terms of a job's metric keys (``loss_*``, then the total ``loss``), in a stable order."""
    terms = sorted(k for k in keys if k.startswith("loss_"))
    return [*terms, "loss"] if "loss" in keys else terms


def line_chart(
    title: str,
    series: Mapping[str, Sequence[tuple[float, float | None]]],
    *,
    x_label: str = "step",
    width: int = 320,
    height: int = 180,
) -> Chart:
    """Scale ``series`` (name -> (x, y) points; a None or non-finite y is left out) into a chart of
    ``width`` x ``height`` pixels with one shared x and y range. A flat series gets a small y range around
    its value, so it is drawn as a line in the middle rather than on an edge."""
    clean = {
        name: [
            (float(x), float(y)) for x, y in pts if y is not None and math.isfinite(y) and math.isfinite(x)
        ]
        for name, pts in series.items()
    }
    xs = [x for pts in clean.values() for x, _ in pts]
    ys = [y for pts in clean.values() for _, y in pts]
    chart = Chart(title, width, height, [], x_label, 0.0, 1.0, 0.0, 1.0)
    if not xs:
        return Chart(title, width, height, [], x_label, 0.0, 1.0, 0.0, 1.0, empty=True)
    x_min, x_max = min(xs), max(xs)
    y_min, y_max = min(ys), max(ys)
    if x_max == x_min:
        x_min, x_max = x_min - 1, x_max + 1
    if y_max == y_min:
        pad = abs(y_min) * 0.1 or 1.0
        y_min, y_max = y_min - pad, y_max + pad
    plot_w = width - chart.left - chart.right
    plot_h = height - chart.top - chart.bottom

    def px(x: float, y: float) -> str:
        cx = chart.left + (x - x_min) / (x_max - x_min) * plot_w
        cy = chart.top + (1 - (y - y_min) / (y_max - y_min)) * plot_h
        return f"{cx:.1f},{cy:.1f}"

    lines = [
        Line(name, PALETTE[i % len(PALETTE)], " ".join(px(x, y) for x, y in pts), pts[-1][1] if pts else None)
        for i, (name, pts) in enumerate(clean.items())
    ]
    return Chart(title, width, height, lines, x_label, x_min, x_max, y_min, y_max)


@dataclass(frozen=True)
class Bar:
    """One bar (a configuration's mean) and its error bar (mean ± std; none for a single seed), in pixels."""

    name: str
    mean: float
    std: float | None
    x: float
    y: float
    width: float
    height: float
    err_top: float | None
    err_bottom: float | None
    color: str

    @property
    def center(self) -> float:
        return self.x + self.width / 2


@dataclass(frozen=True)
class BarChart:
    """A bar chart ready for the template. The y axis starts at 0 (a bar's height must mean something) and
    ends at the next tenth above the highest error bar, so mAPs stay readable without an axis ending at 1."""

    title: str
    width: int
    height: int
    bars: list[Bar]
    y_max: float
    left: int = 44
    right: int = 8
    top: int = 8
    bottom: int = 34
    empty: bool = field(default=False)

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom

    def y_of(self, value: float) -> float:
        """The pixel row of ``value`` on the y axis."""
        return self.top + (1 - value / self.y_max) * self.plot_height


def bar_chart(
    title: str,
    values: Sequence[tuple[str, float | None, float | None]],
    *,
    width: int = 480,
    height: int = 220,
) -> BarChart:
    """One bar per ``(name, mean, std)`` with a mean (the others are left out), with an error bar from
    ``mean - std`` to ``mean + std`` (clipped at 0) when there is a std."""
    clean = [
        (name, float(mean), float(std) if std is not None and math.isfinite(std) else None)
        for name, mean, std in values
        if mean is not None and math.isfinite(mean)
    ]
    if not clean:
        return BarChart(title, width, height, [], 1.0, empty=True)
    highest = max(mean + (std or 0.0) for _, mean, std in clean)
    y_max = max(math.ceil(highest * 10 - 1e-9) / 10, 0.1)
    chart = BarChart(title, width, height, [], y_max)
    slot = (width - chart.left - chart.right) / len(clean)
    bar_w = slot * 0.6
    bars = []
    for i, (name, mean, std) in enumerate(clean):
        top = chart.y_of(max(mean, 0.0))
        base = chart.y_of(0.0)
        err_top = chart.y_of(mean + std) if std is not None else None
        err_bottom = chart.y_of(max(mean - std, 0.0)) if std is not None else None
        x = chart.left + i * slot + (slot - bar_w) / 2
        bars.append(
            Bar(name, mean, std, x, top, bar_w, base - top, err_top, err_bottom, PALETTE[i % len(PALETTE)])
        )
    return BarChart(title, width, height, bars, y_max)


# ----------------------------------------------------------------------------------------------- gallery


@dataclass(frozen=True)
class GalleryBox:
    class_name: str
    score: float
    points: str  # the polygon's "x,y x,y x,y x,y" in image pixels
    color: str


@dataclass(frozen=True)
class GalleryImage:
    index: int
    image: str  # relative to the validation folder
    width: int
    height: int
    boxes: list[GalleryBox]


def _inside(root: Path, path: Path) -> Path | None:
    """``path`` resolved (symlinks followed) when it stays under ``root``; None otherwise."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return None
    return resolved if resolved.is_relative_to(root.resolve()) else None


def gallery_file(settings: Settings, job: Job) -> Path | None:
    """The ``gallery.json`` of the job's latest attempt (the trainer's output is the attempt's folder,
    ``attempt-<n>``; a job run before attempts had their own folders has it in its output folder), when the
    folder and the file are inside the artifact root."""
    if not job.output_dir:
        return None
    for folder in (Path(job.output_dir) / f"attempt-{job.attempt}", Path(job.output_dir)):
        path = _inside(settings.artifact_dir, folder / GALLERY_FILE)
        if path is not None and path.is_file():
            return path
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def read_gallery(settings: Settings, job: Job) -> list[GalleryImage]:
    """The gallery the trainer left in the job's output folder (empty when there is none, or it is
    unreadable, too large or malformed: a page never fails because of it). Entries are checked one by one;
    a malformed one is skipped."""
    path = gallery_file(settings, job)
    if path is None:
        return []
    try:
        if path.stat().st_size > GALLERY_MAX_BYTES:
            return []
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    classes = [c for c in data.get("classes") or [] if isinstance(c, str)]
    out: list[GalleryImage] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            continue
        w, h = _number(entry.get("width")), _number(entry.get("height"))
        if w is None or h is None or w <= 0 or h <= 0:
            continue
        boxes: list[GalleryBox] = []
        for box in entry.get("boxes") or []:
            if not isinstance(box, dict):
                continue
            poly = box.get("poly")
            score = _number(box.get("score"))
            name = box.get("class")
            if not isinstance(poly, list) or len(poly) != 8 or score is None or not isinstance(name, str):
                continue
            coords = [_number(v) for v in poly]
            if any(c is None for c in coords):
                continue
            points = " ".join(f"{coords[i]:.1f},{coords[i + 1]:.1f}" for i in range(0, 8, 2))
            color = PALETTE[classes.index(name) % len(PALETTE)] if name in classes else PALETTE[0]
            boxes.append(GalleryBox(name, score, points, color))
        out.append(GalleryImage(index, entry["image"], int(w), int(h), boxes))
    return out


def gallery_image_file(settings: Settings, job: Job, *, index: int) -> Path | None:
    """The file of the gallery's ``index``-th image: ``image`` (relative, without ``..``) under the job's
    validation folder, which must resolve inside the data root, as an image file. None for anything else
    (no gallery, no such entry, an absolute path, ``..``, a symlink out of the root, not an image)."""
    val = (job.spec or {}).get("dataset", {}).get("val")
    if not isinstance(val, str):
        return None
    for item in read_gallery(settings, job):
        if item.index != index:
            continue
        rel = PurePosixPath(item.image)
        if rel.is_absolute() or ".." in rel.parts or "\x00" in item.image or "\\" in item.image:
            return None
        path = _inside(settings.data_dir, Path(val) / rel)
        if path is None or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            return None
        return path
    return None


def job_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ compare


def flatten_spec(value: Any, prefix: str = "") -> dict[str, str]:
    """A job spec as ``{"hparams.epochs": "30", ...}``: nested mappings joined with dots, every leaf (lists
    too) written as compact JSON, so that two specs compare key by key."""
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key in sorted(value, key=str):
            out.update(flatten_spec(value[key], f"{prefix}.{key}" if prefix else str(key)))
        if not value and prefix:
            out[prefix] = "{}"
        return out
    return {prefix or "(spec)": json.dumps(value, sort_keys=True, separators=(",", ":"))}


def spec_differences(specs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str | None]]]:
    """The flattened keys whose values are not the same in every spec (a key missing from a spec counts as
    a difference; its value is None there), sorted by key, with each spec's value."""
    flat = [flatten_spec(spec) for spec in specs]
    keys = sorted(set().union(*flat)) if flat else []
    rows = []
    for key in keys:
        values = [f.get(key) for f in flat]
        if len(set(values)) > 1:
            rows.append((key, values))
    return rows
