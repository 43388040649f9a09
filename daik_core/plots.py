"""The pictures of a run: plain functions that take data (never a model) and write one file each.

``results.png``
    :func:`plot_results`: every ``loss_*`` term, the total ``loss`` and mAP50 (and mAP50:95) per epoch,
    from the lines of ``metrics.jsonl`` (:func:`read_metrics`); a distill run's KD terms get their own
    panels, titled ``KD: <term>``.
``pr_curve.png``
    :func:`plot_pr_curves`: per-class precision-recall curves at IoU 0.5 (the evaluator's
    :class:`~daik_core.eval.dota.PRCurve`) and their mean over the classes.
``confusion_matrix.png``
    :func:`plot_confusion_matrix`: :func:`~daik_core.eval.confusion.confusion_matrix` with its background
    row and column, normalised per true class (each row sums to 1).
``labels.png``
    :func:`plot_labels`: the training set's label statistics: instances per class, box width / height,
    angle histogram (long-side rule, degrees in [0, 180)) and aspect ratios (long side / short side).
``val_pred_<i>.jpg``
    :func:`draw_predictions`: a validation image with its ground truth (white) and the predicted rotated
    boxes (one colour per class, with the score) drawn with PIL.
``ablation.png``
    :func:`plot_ablation`: mAP50 per configuration of an ablation, mean over seeds with a 95 % interval.

Matplotlib is imported on first use, with the ``Agg`` backend set explicitly (no display is needed, and
none is touched). Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PLOT_FILES",
    "RUN_PLOT_FILES",
    "VAL_PRED_IMAGES",
    "draw_predictions",
    "is_plot_name",
    "label_stats",
    "plot_ablation",
    "plot_confusion_matrix",
    "plot_labels",
    "plot_pr_curves",
    "plot_results",
    "read_metrics",
    "val_pred_name",
    "write_eval_plots",
]

#: The fixed file names of a run's plots (besides ``val_pred_<i>.jpg``).
RUN_PLOT_FILES: tuple[str, ...] = ("results.png", "pr_curve.png", "confusion_matrix.png", "labels.png")
#: How many validation images a run draws (``val_pred_0.jpg`` ...).
VAL_PRED_IMAGES = 3
#: Every picture a run or an ablation may write (what the service serves).
PLOT_FILES: tuple[str, ...] = (
    *RUN_PLOT_FILES,
    "ablation.png",
    *(f"val_pred_{i}.jpg" for i in range(VAL_PRED_IMAGES)),
)
_PLOT_NAME = re.compile(r"(results|pr_curve|confusion_matrix|labels|ablation)\.png|val_pred_[0-9]{1,2}\.jpg")

# the detection loss terms, in this order; other loss_* terms are distillation terms
_DETECTION_TERMS = ("loss_cls", "loss_box", "loss_dfl", "loss_angle")


def val_pred_name(i: int) -> str:
    return f"val_pred_{i}.jpg"


def is_plot_name(name: str) -> bool:
    """Whether ``name`` is the file name of a plot (``results.png``, ``val_pred_0.jpg``, ...): a bare
    name, no folder, nothing else."""
    return _PLOT_NAME.fullmatch(name) is not None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=100)
        tmp.replace(path)  # a reader never sees half a picture
    finally:
        _pyplot().close(fig)
        tmp.unlink(missing_ok=True)
    return path


def _num(x: Any) -> float:
    if x is None or isinstance(x, bool):
        return math.nan
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


# ------------------------------------------------------------------------------------------ results.png
def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a ``metrics.jsonl`` (a torn or malformed line is skipped)."""
    lines = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and "epoch" in line:
            lines.append(line)
    return lines


def _loss_terms(metrics: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """``(detection terms, distillation terms)`` among the ``loss_*`` keys of ``metrics``."""
    keys = {k for line in metrics for k in line if k.startswith("loss_")}
    det = [k for k in _DETECTION_TERMS if k in keys]
    kd = sorted(keys - set(det))
    return det, kd


def plot_results(metrics: Sequence[Mapping[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """``results.png``: one panel per ``loss_*`` term (detection terms first, then the distillation terms,
    titled ``KD: ...``), the total loss, and mAP50 / mAP50:95 at the evaluated epochs."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    det, kd = _loss_terms(metrics)
    panels: list[tuple[str, list[str]]] = [(k.removeprefix("loss_"), [k]) for k in det]
    panels += [(f"KD: {k.removeprefix('loss_')}", [k]) for k in kd]
    panels.append(("loss (total)", ["loss"]))
    panels.append(("mAP", ["map50", "map50_95"]))
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    epochs = np.array([_num(line.get("epoch")) for line in metrics])
    for ax, (name, keys) in zip(axes.flat, panels, strict=False):
        for key in keys:
            y = np.array([_num(line.get(key)) for line in metrics])
            ok = np.isfinite(y) & np.isfinite(epochs)
            color = "tab:purple" if name.startswith("KD") else None
            label = {"map50": "mAP50", "map50_95": "mAP50:95"}.get(key, key)
            ax.plot(epochs[ok], y[ok], marker="o", markersize=3, linewidth=1.5, label=label, color=color)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if name == "mAP":
            ax.set_ylim(bottom=0.0)
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ pr_curve.png
class _Curve(Protocol):
    @property
    def recall(self) -> np.ndarray: ...
    @property
    def precision(self) -> np.ndarray: ...
    @property
    def npos(self) -> int: ...


_RECALL_GRID = np.linspace(0.0, 1.0, 101)


def _envelope_on_grid(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """The precision envelope (best precision at a recall >= r) at the recalls of a 0..1 grid (0 past the
    curve's last recall)."""
    if len(recall) == 0:
        return np.zeros_like(_RECALL_GRID)
    env = np.maximum.accumulate(np.asarray(precision, dtype=np.float64)[::-1])[::-1]
    i = np.searchsorted(np.asarray(recall, dtype=np.float64), _RECALL_GRID, side="left")
    return np.where(i < len(env), env[np.minimum(i, len(env) - 1)], 0.0)


def plot_pr_curves(
    curves: Mapping[str, _Curve],
    path: str | Path,
    aps: Mapping[str, float | None] | None = None,
    iou_thr: float = 0.5,
) -> Path:
    """``pr_curve.png``: each class's precision-recall curve (classes without ground truth are left out;
    ``aps`` labels them) and, in black, the mean over the classes of their precision envelopes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    envelopes = []
    shown = [(name, c) for name, c in curves.items() if c.npos > 0]
    cmap = plt.get_cmap("tab10" if len(shown) <= 10 else "tab20")
    for k, (name, c) in enumerate(shown):
        rec = np.r_[0.0, np.asarray(c.recall, dtype=np.float64)]
        prec = np.r_[1.0, np.asarray(c.precision, dtype=np.float64)] if len(c.recall) else np.r_[0.0]
        ap = aps.get(name) if aps is not None else None
        label = f"{name} {ap:.3f}" if ap is not None else name
        ax.plot(rec, prec, linewidth=1.2, color=cmap(k % cmap.N), label=label)
        envelopes.append(_envelope_on_grid(c.recall, c.precision))
    if envelopes:
        mean_ap = [a for a in (aps or {}).values() if a is not None]
        label = f"all classes {np.mean(mean_ap):.3f} mAP" if mean_ap else "all classes"
        ax.plot(_RECALL_GRID, np.mean(envelopes, axis=0), color="black", linewidth=3, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"precision-recall at IoU > {iou_thr:g}")
    ax.grid(alpha=0.3)
    if shown:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no class has ground truth", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------------- confusion_matrix.png
def plot_confusion_matrix(
    matrix: np.ndarray,
    classes: Sequence[str],
    path: str | Path,
    *,
    normalize: bool = True,
    iou_thr: float = 0.5,
    conf: float = 0.25,
) -> np.ndarray:
    """``confusion_matrix.png`` of the ``(C + 1, C + 1)`` counts (rows true, columns predicted, the last
    of each the background), normalised per true class unless ``normalize`` is false. Returns the values
    drawn."""
    from daik_core.eval.confusion import normalize_rows

    plt = _pyplot()
    counts = np.asarray(matrix)
    n = len(classes) + 1
    if counts.shape != (n, n):
        raise ValueError(f"matrix must have shape ({n}, {n}) for {n - 1} classes, got {counts.shape}")
    values = normalize_rows(counts) if normalize else counts.astype(np.float64)
    names = [*classes, "background"]
    size = max(6.0, 0.55 * n + 3)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    what = "normalised per true class" if normalize else "counts"
    ax.set_title(f"confusion matrix ({what}; IoU > {iou_thr:g}, conf >= {conf:g})", fontsize=10)
    if n <= 25:
        top = float(values.max()) if values.size else 0.0
        for i in range(n):
            for j in range(n):
                v = values[i, j]
                if counts[i, j] == 0:
                    continue
                text = f"{v:.2f}" if normalize else f"{int(v)}"
                color = "white" if top and v > 0.6 * top else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    _save(fig, path)
    return values


def write_eval_plots(
    out: str | Path,
    result: Any,
    ground_truth: Mapping[str, Any],
    detections: Mapping[str, Any],
    classes: Sequence[str],
    *,
    conf: float = 0.25,
) -> list[Path]:
    """``pr_curve.png`` and ``confusion_matrix.png`` of an evaluation (a
    :class:`~daik_core.eval.dota.DotaResult` with its curves, and the ground truth and detections it
    scored) in the folder ``out``; the matrix at the evaluation's IoU threshold and confidence ``conf``."""
    from daik_core.eval.confusion import confusion_matrix

    out = Path(out)
    written = [plot_pr_curves(result.curves, out / "pr_curve.png", result.per_class, result.iou_thr)]
    matrix = confusion_matrix(ground_truth, detections, classes, iou_thr=result.iou_thr, conf=conf)
    path = out / "confusion_matrix.png"
    plot_confusion_matrix(matrix, classes, path, iou_thr=result.iou_thr, conf=conf)
    written.append(path)
    return written


# ------------------------------------------------------------------------------------------ labels.png
def label_stats(polys: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Per object of ``polys (N, 8)`` (or ``(N, 4, 2)``) with class ids ``labels (N,)``: ``width`` (long
    side) and ``height`` (short side) in pixels, ``angle`` of the long side in degrees in [0, 180), and
    ``aspect`` (long / short); and ``counts (num_classes,)`` instances per class. Sides are those of the
    quad's first two edges (a rotated box's sides; for a general quad an approximation)."""
    p = np.asarray(polys, dtype=np.float64).reshape(-1, 4, 2)
    e1 = p[:, 1] - p[:, 0]
    e2 = p[:, 2] - p[:, 1]
    l1, l2 = np.hypot(e1[:, 0], e1[:, 1]), np.hypot(e2[:, 0], e2[:, 1])
    long_edge = np.where((l1 >= l2)[:, None], e1, e2)
    width, height = np.maximum(l1, l2), np.minimum(l1, l2)
    angle = np.degrees(np.arctan2(long_edge[:, 1], long_edge[:, 0])) % 180.0
    aspect = width / np.maximum(height, 1e-9)
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    counts = np.bincount(lab[lab >= 0], minlength=num_classes)[:num_classes]
    return {"width": width, "height": height, "angle": angle, "aspect": aspect, "counts": counts}


def plot_labels(polys: np.ndarray, labels: np.ndarray, classes: Sequence[str], path: str | Path) -> Path:
    """``labels.png``: instances per class, box width against height (log scales), the angle histogram
    and the aspect-ratio histogram of a training set's objects (see :func:`label_stats`)."""
    plt = _pyplot()
    st = label_stats(polys, labels, len(classes))
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    ax.bar(range(len(classes)), st["counts"], color=[cmap(k % cmap.N) for k in range(len(classes))])
    ax.set_xticks(range(len(classes)), list(classes), rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("instances")
    ax.set_title(f"{int(st['counts'].sum())} instances of {len(classes)} classes")
    ax = axes[0, 1]
    ok = (st["width"] > 0) & (st["height"] > 0)
    ax.scatter(st["width"][ok], st["height"][ok], s=4, alpha=0.4)
    if ok.any():
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("width (long side, px)")
    ax.set_ylabel("height (short side, px)")
    ax.set_title("box sizes")
    ax = axes[1, 0]
    ax.hist(st["angle"], bins=36, range=(0, 180), color="tab:green")
    ax.set_xlabel("angle of the long side (degrees)")
    ax.set_ylabel("instances")
    ax.set_title("angles")
    ax = axes[1, 1]
    aspect = st["aspect"][np.isfinite(st["aspect"])]
    ax.hist(np.clip(aspect, 1, 20), bins=40, range=(1, 20), color="tab:orange")
    ax.set_xlabel("aspect ratio (long / short, clipped at 20)")
    ax.set_ylabel("instances")
    ax.set_title("aspect ratios")
    for a in axes.flat:
        a.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ val_pred
def _class_colour(k: int) -> tuple[int, int, int]:
    plt = _pyplot()
    r, g, b, _ = plt.get_cmap("tab10" if k < 10 else "tab20")(k % 20)
    return int(255 * r), int(255 * g), int(255 * b)


def draw_predictions(
    image: str | Path,
    out: str | Path,
    *,
    classes: Sequence[str],
    gt: Iterable[tuple[Sequence[float], str]] = (),
    detections: Iterable[tuple[Sequence[float], str, float]] = (),
    max_side: int = 1024,
    min_side: int = 512,
) -> Path:
    """Draw ``image`` with its ground truth (``(poly of 8 coordinates, class)``, thin white outlines) and
    ``detections`` (``(poly, class, score)``, in the class's colour with ``class score``) into ``out`` (a
    JPEG), scaled so that its longer side is at most ``max_side`` and, for a small image, at least
    ``min_side`` (so that the labels stay readable)."""
    from PIL import Image, ImageDraw

    with Image.open(image) as src:
        img = src.convert("RGB")
    longest = max(img.size)
    scale = min(max_side / longest, max(1.0, min_side / longest))
    if scale != 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    draw = ImageDraw.Draw(img)
    index = {name: k for k, name in enumerate(classes)}

    def pts(poly: Sequence[float]) -> list[tuple[float, float]]:
        return [(float(poly[2 * i]) * scale, float(poly[2 * i + 1]) * scale) for i in range(4)]

    for poly, _name in gt:
        q = pts(poly)
        draw.line([*q, q[0]], fill=(255, 255, 255), width=1)
    for poly, name, score in detections:
        q = pts(poly)
        colour = _class_colour(index.get(name, 0))
        draw.line([*q, q[0]], fill=colour, width=2)
        x, y = min(p[0] for p in q), min(p[1] for p in q)
        text = f"{name} {score:.2f}"
        box = draw.textbbox((x, y), text)
        ty = max(0.0, y - (box[3] - box[1]) - 2)
        draw.rectangle((x, ty, x + box[2] - box[0] + 2, ty + box[3] - box[1] + 2), fill=colour)
        draw.text((x + 1, ty), text, fill=(255, 255, 255))
    draw.text((4, 4), "white: ground truth", fill=(255, 255, 255))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    img.save(tmp, format="JPEG", quality=90)
    tmp.replace(out)
    return out


# ------------------------------------------------------------------------------------------ ablation.png
class _Stat(Protocol):
    @property
    def mean(self) -> float | None: ...
    @property
    def std(self) -> float | None: ...
    @property
    def n(self) -> int: ...
    @property
    def ci95(self) -> float | None: ...


class _Row(Protocol):
    @property
    def config(self) -> str: ...
    @property
    def map50(self) -> _Stat: ...


def plot_ablation(rows: Sequence[_Row], path: str | Path, title: str | None = None) -> Path:
    """``ablation.png``: a bar per configuration of its mean mAP50 over seeds, with the 95 % interval of
    the mean (Student's t with ``n - 1`` degrees of freedom: ``t * std / sqrt(n)``; no bar without two
    seeds) and the seed count under its name."""
    plt = _pyplot()
    names = [f"{r.config}\n(n={r.map50.n})" for r in rows]
    means = np.array([_num(r.map50.mean) for r in rows])
    errs = np.array([r.map50.ci95 or 0.0 for r in rows])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.8))
    x = np.arange(len(rows))
    colours = ["tab:gray" if r.config in ("baseline", "teacher") else "tab:blue" for r in rows]
    ax.bar(x, np.nan_to_num(means), yerr=errs, capsize=4, color=colours, alpha=0.85)
    for xi, m in zip(x.tolist(), means.tolist(), strict=True):
        if math.isfinite(m):
            ax.text(xi, m, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mAP50 (mean over seeds, 95 % CI)")
    ax.set_title(title or "ablation")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
