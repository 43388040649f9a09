"""DOTA Task1 (oriented boxes) mAP: the DOTA devkit's ``dota_evaluation_task1.py`` protocol, vectorised.

The protocol, per class (``voc_eval`` of the devkit):

1. Ground truth: every object of the class in every annotated image; ``npos`` counts the objects whose
   difficult flag is 0 (a flag of 1, or 2 for objects cut by a patch edge, makes the object difficult).
2. Detections of the class are sorted by descending score. Ties keep the order of the detections in
   their Task1 file (a stable sort; the devkit's ``np.argsort(-score)`` leaves tie order unspecified).
3. Each detection, in that order, takes the ground-truth object of its image with the largest polygon
   IoU (ties: the first object in file order). If that IoU is *strictly* greater than ``iou_thr``: a
   difficult object makes the detection neither a true nor a false positive; a non-difficult object not
   yet matched makes it a true positive (and the object matched); an object already matched makes it a
   false positive (there is no fall-back to the second-best object). Otherwise it is a false positive.
4. ``rec = cumsum(tp) / npos``, ``prec = cumsum(tp) / max(cumsum(tp) + cumsum(fp), eps)`` and AP by
   :func:`daik_core.eval.ap.average_precision` (``voc07`` 11-point, or ``area`` all-point).
5. mAP: the mean of AP over the classes with ``npos > 0``.

Where this differs from the devkit, on purpose:

* A class without non-difficult ground truth (``npos == 0``) has AP ``None`` and is left out of the
  mean (the devkit divides by zero and averages the resulting ``nan`` into its mAP).
* Detections on an image that has no annotation file are false positives, reported by one
  :class:`DotaEvalWarning` (the devkit raises ``KeyError``); a class with no Task1 file or an empty one
  has AP 0 (the devkit fails on both).
* Ties in score are broken by file order (see 2.).
* The image set is the keys of ``gt`` (with :func:`evaluate_dota_dirs`: every ``*.txt`` of the annotation
  folder); the devkit reads it from an image-list file.
* mAP50:95 (not in the devkit) averages the AP over :data:`IOU_THRS_50_95`, the same protocol at each.

How it is fast: a detection's target object (step 3) does not depend on earlier matches, only whether
it is a true positive does. So the best object of every detection is found at once, for all classes
together:

* Candidate pairs: a (detection, object) pair of the same class and image can only have a positive IoU if
  their enclosing axis-aligned boxes overlap with a positive area (a pair without any has IoU 0, which
  never exceeds a threshold, so the devkit's ``+1`` pixel pre-filter keeps more pairs without changing any
  match). They are found by a sweep (:func:`_candidate_pairs`): boxes sorted by (class, image, horizontal
  band, x1), the objects with ``x1`` in a detection's ``[x1, x2)`` and the detections with ``x1`` in an
  object's ``(x1, x2)`` are contiguous ranges of the same band, found with ``np.searchsorted``; the
  y-overlap filters them.
* Exact polygon IoU (:mod:`daik_core.eval._quad_iou`: float64, bit for bit the values of
  :func:`daik_core.ops.poly_iou_aligned`, without torch), each quad prepared once.
* Only the pairs that can decide a match are computed. The intersection is at most the smaller area and
  the area of the boxes' overlap, which bounds the IoU from above (with the same floating point operations
  as the IoU, from a bound on the intersection whose margin is far above its rounding error, so the bound
  is never below the computed IoU). Pairs whose bound is at most every threshold in use never match;
  of the others, each detection's pair with the highest bound is computed first, then every pair whose
  bound reaches that IoU. A pair left out has an IoU strictly below the detection's best, so the maximum
  and its first arg-maximum (ties: the first object in file order) are those over all pairs.

A true positive is then the first detection, in score order, that targets each non-difficult object with
an IoU above the threshold. The targets do not depend on the threshold, so mAP50:95 reuses them for its
ten thresholds, each a few vectorised passes.

Nothing here imports torch: ``daik eval dota`` starts in a fraction of a second.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from daik_core.data.classes import resolve_classes
from daik_core.data.dota import (
    DotaLabel,
    LabelArrays,
    Task1Detections,
    label_to_arrays,
    read_label_dir_arrays,
    read_task1_dir,
)
from daik_core.errors import DaikError, DataFormatError
from daik_core.eval._quad_iou import Quads, prepare_quads, quad_pair_iou
from daik_core.eval.ap import METRICS, average_precision, precision_recall

__all__ = [
    "IOU_THRS_50_95",
    "ClassCounts",
    "DotaEvalWarning",
    "DotaResult",
    "PRCurve",
    "evaluate_dota",
    "evaluate_dota_dirs",
]

#: The ten IoU thresholds of mAP50:95: ``np.arange(0.5, 0.96, 0.05)``, exactly this expression (its values
#: drift above the decimals: 0.6000000000000001, ..., 0.9500000000000004).
IOU_THRS_50_95: np.ndarray = np.arange(0.5, 0.96, 0.05)

# candidate (detection, object) pairs held at once (groups of a class and an image are never split)
_PAIR_CHUNK = 1 << 20
# horizontal bands of the pair search over the y range of all boxes, at most
_MAX_BANDS = 1024
# the margin of a pair's IoU bound (module docstring): the bound on the intersection exceeds the boxes'
# overlap by this times the square of the pair's extent (the intersection's rounding error is ~1e-13 of it)
_BOUND_SLACK = 1e-6
# the union of the IoU is at least this (pixels squared), as in daik_core.ops.poly_iou_aligned
_UNION_EPS = 1e-7


class DotaEvalWarning(UserWarning):
    """Input that the evaluation accepts but that is probably not what the user meant."""


@dataclass(frozen=True)
class ClassCounts:
    """Counts of one class at the main IoU threshold.

    ``npos``: non-difficult objects; ``num_difficult``: difficult objects; ``num_dets``: detections;
    ``tp`` / ``fp``: true / false positives; ``ignored``: detections matched to a difficult object
    (``num_dets == tp + fp + ignored``).
    """

    npos: int
    num_difficult: int
    num_dets: int
    tp: int
    fp: int
    ignored: int

    def to_dict(self) -> dict[str, int]:
        return {
            "npos": self.npos,
            "num_difficult": self.num_difficult,
            "num_dets": self.num_dets,
            "tp": self.tp,
            "fp": self.fp,
            "ignored": self.ignored,
        }


@dataclass(frozen=True)
class PRCurve:
    """The precision-recall curve of one class at the main IoU threshold: after each detection in
    descending score order, its ``score``, the ``recall`` and ``precision`` so far (the arrays the AP is
    computed from; detections on difficult objects count as neither true nor false positives, so they
    repeat the previous point). ``npos``: non-difficult objects (0: the class has no curve, empty arrays)."""

    scores: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    npos: int

    def best_f1(self) -> tuple[float, float, float, float] | None:
        """``(confidence, precision, recall, f1)`` at the detection with the highest F1 (the first on
        ties, i.e. the highest such confidence): keeping the detections scoring at least ``confidence``
        gives that precision and recall. ``None`` without ground truth or detections."""
        if self.npos == 0 or len(self.scores) == 0:
            return None
        p, r = self.precision, self.recall
        f1 = 2.0 * p * r / np.maximum(p + r, 1e-16)
        # a cut inside a run of equal scores is not a threshold: only the last detection of each score
        last_of_score = np.r_[self.scores[1:] != self.scores[:-1], True]
        f1_at = np.where(last_of_score, f1, -1.0)
        i = int(np.argmax(f1_at))
        return float(self.scores[i]), float(p[i]), float(r[i]), float(f1[i])


@dataclass
class DotaResult:
    """The outcome of a DOTA Task1 evaluation.

    ``map`` is ``nan`` when no class has non-difficult ground truth (``None`` in :meth:`to_dict`).
    ``per_class`` AP is ``None`` for a class with ``npos == 0``. ``map_50_95`` / ``per_class_50_95``: the
    mean over :data:`IOU_THRS_50_95`, when computed.
    """

    map: float
    per_class: dict[str, float | None]
    counts: dict[str, ClassCounts]
    iou_thr: float
    metric: str
    map_50_95: float | None = None
    per_class_50_95: dict[str, float | None] | None = None
    num_images: int = 0
    unannotated_images: list[str] = field(default_factory=list)
    #: per class, the precision-recall curve at ``iou_thr`` (what ``pr_curve.png`` draws)
    curves: dict[str, PRCurve] = field(default_factory=dict, repr=False)

    def best_f1(self) -> dict[str, dict[str, float] | None]:
        """Per class, the confidence with the best F1 and the precision and recall there (``None`` for a
        class without ground truth or detections): see :meth:`PRCurve.best_f1`."""
        out: dict[str, dict[str, float] | None] = {}
        for name in self.per_class:
            curve = self.curves.get(name)
            best = curve.best_f1() if curve is not None else None
            out[name] = (
                None
                if best is None
                else {"conf": best[0], "precision": best[1], "recall": best[2], "f1": best[3]}
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: ``mAP``, ``per_class``, ``counts``, ``iou_thr``, ``metric`` (and ``mAP50_95``,
        ``per_class_50_95``, ``iou_thrs_50_95`` when computed)."""
        out: dict[str, Any] = {
            "mAP": _none_if_nan(self.map),
            "per_class": dict(self.per_class),
            "counts": {name: c.to_dict() for name, c in self.counts.items()},
            "iou_thr": self.iou_thr,
            "metric": self.metric,
            "num_images": self.num_images,
            "unannotated_images": list(self.unannotated_images),
        }
        if self.curves:
            out["best_f1"] = self.best_f1()
        if self.map_50_95 is not None:
            out["mAP50_95"] = _none_if_nan(self.map_50_95)
            out["per_class_50_95"] = dict(self.per_class_50_95 or {})
            out["iou_thrs_50_95"] = IOU_THRS_50_95.tolist()
        return out

    def format_best_f1(self) -> str:
        """Per class, the confidence with the best F1 and the precision and recall there, as a table."""
        width = max([len("class"), *(len(n) for n in self.per_class)])
        head = f"{'class':<{width}} {'conf':>6} {'P':>6} {'R':>6} {'F1':>6}"
        lines = [f"precision and recall at the best-F1 confidence (IoU > {self.iou_thr:g})", head]
        for name, best in self.best_f1().items():
            if best is None:
                lines.append(f"{name:<{width}} {'-':>6} {'-':>6} {'-':>6} {'-':>6}")
            else:
                lines.append(
                    f"{name:<{width}} {best['conf']:>6.3f} {best['precision']:>6.3f} {best['recall']:>6.3f} "
                    f"{best['f1']:>6.3f}"
                )
        return "\n".join(lines)

    def format_table(self) -> str:
        """A per-class table (counts, AP in percent) followed by the mAP line(s)."""
        ap_head = f"AP{_pct_label(self.iou_thr)}"
        width = max([len("class"), *(len(n) for n in self.per_class)])
        head = (
            f"{'class':<{width}} {'npos':>7} {'diff':>6} {'dets':>8} {'tp':>7} {'fp':>8} {'ignored':>7} "
            f"{ap_head:>7}"
        )
        if self.per_class_50_95 is not None:
            head += f" {'AP50:95':>7}"
        lines = [head, "-" * len(head)]
        for name, ap in self.per_class.items():
            c = self.counts[name]
            row = (
                f"{name:<{width}} {c.npos:>7} {c.num_difficult:>6} {c.num_dets:>8} {c.tp:>7} {c.fp:>8} "
                f"{c.ignored:>7} {_fmt_ap(ap):>7}"
            )
            if self.per_class_50_95 is not None:
                row += f" {_fmt_ap(self.per_class_50_95.get(name)):>7}"
            lines.append(row)
        lines.append("-" * len(head))
        lines.append(
            f"mAP{_pct_label(self.iou_thr)} ({self.metric}, IoU > {self.iou_thr:g}): {_fmt_map(self.map)}"
        )
        if self.map_50_95 is not None:
            lines.append(f"mAP50:95 ({self.metric}, IoU > 0.50:0.05:0.95): {_fmt_map(self.map_50_95)}")
        return "\n".join(lines)


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def _fmt_ap(ap: float | None) -> str:
    if ap is None or math.isnan(ap):
        return "-"
    return f"{100.0 * ap:.2f}"


def _fmt_map(m: float) -> str:
    if math.isnan(m):
        return "undefined (no class has non-difficult ground truth)"
    return f"{m:.4f} ({100.0 * m:.2f} %)"


def _pct_label(thr: float) -> str:
    return f"{round(100 * thr):d}" if abs(100 * thr - round(100 * thr)) < 1e-9 else f"@{thr:g}"


# ------------------------------------------------------------------------------------------ validation
def _check_args(iou_thr: float, metric: str) -> float:
    if metric not in METRICS:
        raise DaikError(f"metric: must be one of {', '.join(METRICS)}, got {metric!r}")
    if isinstance(iou_thr, bool) or not isinstance(iou_thr, (int, float, np.floating, np.integer)):
        raise DaikError(f"iou_thr: must be a number in [0, 1), got {iou_thr!r}")
    thr = float(iou_thr)
    if not (0.0 <= thr < 1.0):
        raise DaikError(f"iou_thr: must be in [0, 1), got {iou_thr!r}")
    return thr


# ------------------------------------------------------------------------------------------ arrays
@dataclass
class _GroundTruth:
    """All objects of the evaluated classes, sorted by (class, image, file order).

    Objects of group ``k = class * num_images + image`` are ``start[k]:end[k]``.
    """

    quads: Quads  # (G) prepared polygons
    cls: np.ndarray  # (G,) int64
    difficult: np.ndarray  # (G,) bool
    start: np.ndarray  # (C * I,) int64
    end: np.ndarray  # (C * I,) int64


def _label_arrays(
    image_id: str, label: DotaLabel | LabelArrays, index: Mapping[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(polys (N, 8), class ids (N,), difficult (N,))`` of the objects of evaluated classes."""
    if isinstance(label, DotaLabel):
        polys, ids, difficult = label_to_arrays(label, list(index))
    else:
        n = len(label.names)
        polys = np.asarray(label.polys, dtype=np.float64)
        difficult = np.asarray(label.difficult)
        if polys.shape != (n, 8) or difficult.shape != (n,):
            raise DaikError(
                f"ground truth of image {image_id!r}: {n} names, polys of shape {polys.shape} and difficult "
                f"flags of shape {difficult.shape} (expected ({n}, 8) and ({n},))"
            )
        ids = np.fromiter(map(index.get, label.names, repeat(-1)), dtype=np.int64, count=n)
        keep = ids >= 0
        polys, ids, difficult = polys[keep], ids[keep], difficult[keep].astype(np.int64)
    if not np.isfinite(polys).all():
        raise DaikError(f"ground truth of image {image_id!r}: non-finite polygon coordinates")
    return polys, ids, difficult


def _gather_gt(
    gt: Mapping[str, DotaLabel | LabelArrays], image_ids: list[str], classes: Sequence[str]
) -> _GroundTruth:
    index = {name: c for c, name in enumerate(classes)}
    polys_l, cls_l, diff_l, img_l = [], [], [], []
    for i, image_id in enumerate(image_ids):
        polys, ids, diff = _label_arrays(image_id, gt[image_id], index)
        polys_l.append(polys)
        cls_l.append(ids)
        diff_l.append(diff)
        img_l.append(np.full(len(ids), i, dtype=np.int64))
    polys = np.concatenate([np.zeros((0, 8)), *polys_l]).astype(np.float64)
    cls = np.concatenate([np.zeros(0, dtype=np.int64), *cls_l])
    difficult = np.concatenate([np.zeros(0, dtype=np.int64), *diff_l]) != 0
    img = np.concatenate([np.zeros(0, dtype=np.int64), *img_l])
    key = cls * len(image_ids) + img
    order = np.argsort(key, kind="stable")  # keeps file order inside a (class, image) group
    key = key[order]
    groups = np.arange(len(classes) * len(image_ids))
    return _GroundTruth(
        quads=prepare_quads(polys[order]),
        cls=cls[order],
        difficult=difficult[order],
        start=np.searchsorted(key, groups, side="left"),
        end=np.searchsorted(key, groups, side="right"),
    )


@dataclass
class _Detections:
    """All detections of the evaluated classes, sorted by class, then descending score, then file order."""

    quads: Quads  # (D) prepared polygons
    cls: np.ndarray  # (D,) int64
    img: np.ndarray  # (D,) int64, -1 for an image without annotation
    scores: np.ndarray  # (D,) float64
    class_start: np.ndarray  # (C + 1,) detections of class c are class_start[c]:class_start[c + 1]


def _gather_detections(
    detections: Mapping[str, Task1Detections], image_index: Mapping[str, int], classes: Sequence[str]
) -> tuple[_Detections, list[str]]:
    unknown_classes = sorted(set(detections) - set(classes))
    if unknown_classes:
        raise DaikError(f"detections: classes {unknown_classes} are not in the evaluated class list")
    polys_l, score_l, cls_l, img_l = [], [], [], []
    unannotated: set[str] = set()
    for c, name in enumerate(classes):
        det = detections.get(name)
        if det is None or len(det) == 0:
            continue
        scores = np.asarray(det.scores, dtype=np.float64)
        polys = np.asarray(det.polys, dtype=np.float64)
        n = len(det.image_ids)
        if scores.shape != (n,) or polys.shape != (n, 8):
            raise DaikError(
                f"detections of class {name!r}: {n} image ids, scores of shape {scores.shape} and polys of "
                f"shape {polys.shape} (expected ({n},) and ({n}, 8))"
            )
        if not (np.isfinite(scores).all() and np.isfinite(polys).all()):
            bad = int(np.flatnonzero(~(np.isfinite(scores) & np.isfinite(polys).all(axis=1)))[0])
            raise DaikError(
                f"detections of class {name!r}: detection {bad} has a non-finite score or polygon"
            )
        img = np.fromiter(map(image_index.get, det.image_ids, repeat(-1)), dtype=np.int64, count=n)
        if (img < 0).any():
            unannotated.update(det.image_ids[j] for j in np.flatnonzero(img < 0).tolist())
        polys_l.append(polys)
        score_l.append(scores)
        cls_l.append(np.full(n, c, dtype=np.int64))
        img_l.append(img)
    polys = np.concatenate([np.zeros((0, 8)), *polys_l])
    scores = np.concatenate([np.zeros(0), *score_l])
    cls = np.concatenate([np.zeros(0, dtype=np.int64), *cls_l])
    img = np.concatenate([np.zeros(0, dtype=np.int64), *img_l])
    # lexsort: last key first; the running index makes the tie order (file order) explicit
    order = np.lexsort((np.arange(len(scores)), -scores, cls))
    cls = cls[order]
    dets = _Detections(
        quads=prepare_quads(polys[order]),
        cls=cls,
        img=img[order],
        scores=scores[order],
        class_start=np.searchsorted(cls, np.arange(len(classes) + 1), side="left"),
    )
    return dets, sorted(unannotated)


# ------------------------------------------------------------------------------------------ matching
def _expand(lo: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(owner, position)`` for every ``position in [lo[owner], lo[owner] + count[owner])``."""
    owner = np.repeat(np.arange(len(count)), count)
    position = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count) + lo[owner]
    return owner, position


def _bands(dh: np.ndarray, gh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The horizontal bands spanned by the boxes ``dh (D, 4)`` and ``gh (G, 4)`` (xyxy): first and last band
    of each, ``(d_b1, d_b2, g_b1, g_b2)``. Bands are twice the median object height (at most
    ``_MAX_BANDS`` over the y range)."""
    origin = min(float(dh[:, 1].min()), float(gh[:, 1].min()))
    span = max(float(dh[:, 3].max()), float(gh[:, 3].max())) - origin
    height = max(2.0 * float(np.median(gh[:, 3] - gh[:, 1])), span / _MAX_BANDS)
    if not (math.isfinite(span) and math.isfinite(height) and height > 0.0):
        zd, zg = np.zeros(len(dh), dtype=np.int64), np.zeros(len(gh), dtype=np.int64)
        return zd, zd, zg, zg
    # floor is monotone: a box's bands are those of its y1 and y2, and band(max(a, b)) = max(bands)
    d_b1, d_b2, g_b1, g_b2 = (
        np.minimum(np.floor((y - origin) / height), _MAX_BANDS).astype(np.int64)
        for y in (dh[:, 1], dh[:, 3], gh[:, 1], gh[:, 3])
    )
    return d_b1, d_b2, g_b1, g_b2


def _candidate_pairs(
    dets: _Detections, gt: _GroundTruth, num_images: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(detection, object) pairs of the same class and image whose enclosing boxes overlap with a positive
    area, in batches of whole (class, image) groups of about ``_PAIR_CHUNK`` candidates each, every batch
    sorted by detection, then object.

    Boxes are sorted by (class, image, band, x1), a box being copied into every horizontal band it spans.
    In a band, the objects whose x1 lies in a detection's ``[x1, x2)`` and the detections whose x1 lies in
    an object's ``(x1, x2)`` are contiguous ranges (found with ``np.searchsorted`` on exact integer keys:
    the group and the rank of the coordinate). A pair is kept in one band only: the band of the top of
    the boxes' overlap, ``max(y1, y1')``.
    """
    det = np.flatnonzero(dets.img >= 0)
    if len(det) == 0 or len(gt.cls) == 0:
        return []
    dh, gh = dets.quads.hbb[det], gt.quads.hbb
    d_b1, d_b2, g_b1, g_b2 = _bands(dh, gh)
    num_bands = int(max(d_b2.max(), g_b2.max())) + 1
    # items: one per (box, band it spans); group = (class * num_images + image) * num_bands + band
    d_box, d_band = _expand(d_b1, d_b2 - d_b1 + 1)
    g_box, g_band = _expand(g_b1, g_b2 - g_b1 + 1)
    d_group = (dets.cls[det] * num_images + dets.img[det])[d_box] * num_bands + d_band
    g_group = np.repeat(np.arange(len(gt.start)), gt.end - gt.start)[g_box] * num_bands + g_band
    groups, group_id = np.unique(np.concatenate((d_group, g_group)), return_inverse=True)
    d_gid, g_gid = group_id[: len(d_group)], group_id[len(d_group) :]
    # exact integer keys: group, then the rank of the coordinate among all those compared
    num_obj = len(gh)
    _, rank = np.unique(np.concatenate((gh[:, 0], gh[:, 2], dh[:, 0], dh[:, 2])), return_inverse=True)
    width = int(rank.max()) + 1
    g_x1, g_x2 = rank[:num_obj][g_box], rank[num_obj : 2 * num_obj][g_box]
    d_x1, d_x2 = rank[2 * num_obj : 2 * num_obj + len(det)][d_box], rank[2 * num_obj + len(det) :][d_box]
    g_keys, d_keys = g_gid * width + g_x1, d_gid * width + d_x1
    g_order, d_order = np.argsort(g_keys), np.argsort(d_keys)
    g_keys, d_keys = g_keys[g_order], d_keys[d_order]  # sorted by group, then x1
    g_gid, d_gid = g_gid[g_order], d_gid[d_order]
    # sweep 1, per detection item: object items with x1 in [x1, x2) of the detection
    lo1 = np.searchsorted(g_keys, d_keys, side="left")
    n1 = np.maximum(np.searchsorted(g_keys, d_gid * width + d_x2[d_order], side="left") - lo1, 0)
    # sweep 2, per object item: detection items with x1 in (x1, x2) of the object
    lo2 = np.searchsorted(d_keys, g_keys, side="right")
    n2 = np.maximum(np.searchsorted(d_keys, g_gid * width + g_x2[g_order], side="left") - lo2, 0)
    # per sorted item: its box, its band, the first band of its box
    d_box, g_box = d_box[d_order], g_box[g_order]
    d_band, g_band = d_band[d_order], g_band[g_order]
    d_top, g_top = d_b1[d_box], g_b1[g_box]
    # batches of whole (class, image) groups: every pair of a detection is in the same batch
    per_group = np.bincount(d_gid, weights=n1, minlength=len(groups))
    per_group += np.bincount(g_gid, weights=n2, minlength=len(groups))
    first_of_image = np.flatnonzero(np.r_[True, groups[1:] // num_bands != groups[:-1] // num_bands])
    cum = np.cumsum(np.add.reduceat(per_group, first_of_image))
    bounds = np.r_[first_of_image, len(groups)]
    dx1, dy1, dx2, dy2 = dh.T
    gx1, gy1, gx2, gy2 = gh.T
    batches = []
    lo = 0
    while lo < len(first_of_image):
        base = cum[lo - 1] if lo > 0 else 0.0
        hi = max(int(np.searchsorted(cum, base + _PAIR_CHUNK, side="right")), lo + 1)
        d0, d1 = np.searchsorted(d_gid, (bounds[lo], bounds[hi]), side="left")
        o0, o1 = np.searchsorted(g_gid, (bounds[lo], bounds[hi]), side="left")
        owner, position = _expand(lo1[d0:d1], n1[d0:d1])  # sweep 1: owners are detection items
        d_it, o_it = d0 + owner, position
        owner, position = _expand(lo2[o0:o1], n2[o0:o1])  # sweep 2: owners are object items
        d_it, o_it = np.concatenate((d_it, position)), np.concatenate((o_it, o0 + owner))
        # the band of the top of the overlap only (both items are in the same band)
        in_band = d_band[d_it] == np.maximum(d_top[d_it], g_top[o_it])
        d, o = d_box[d_it[in_band]], g_box[o_it[in_band]]
        keep = (dx1[d] < gx2[o]) & (gx1[o] < dx2[d]) & (dy1[d] < gy2[o]) & (gy1[o] < dy2[d])
        d, o = det[d[keep]], o[keep]
        if len(d):
            order = np.argsort(d * num_obj + o)
            batches.append((d[order], o[order]))
        lo = hi
    return batches


def _iou_bound(dq: Quads, d: np.ndarray, gq: Quads, o: np.ndarray) -> np.ndarray:
    """An upper bound of the IoU that :func:`quad_pair_iou` computes for the pairs ``dq[d], gq[o]``, whose
    enclosing boxes overlap (see the module docstring)."""
    a, b = dq.hbb[d], gq.hbb[o]
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    extent = np.maximum(
        np.maximum(a[:, 2], b[:, 2]) - np.minimum(a[:, 0], b[:, 0]),
        np.maximum(a[:, 3], b[:, 3]) - np.minimum(a[:, 1], b[:, 1]),
    )
    area1, area2 = dq.area[d], gq.area[o]
    inter = np.minimum(iw * ih + _BOUND_SLACK * extent * extent, np.minimum(area1, area2))
    return inter / np.maximum(area1 + area2 - inter, _UNION_EPS)


def _best_overlaps(
    dets: _Detections, gt: _GroundTruth, num_images: int, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection: the largest polygon IoU with an object of its class and image and that object's
    index (the first in file order on ties), where that IoU is greater than ``floor`` (>= 0); 0 and -1
    elsewhere. Pairs whose IoU bound is at most ``floor`` are not computed: they match at no threshold
    >= ``floor``."""
    num = len(dets.cls)
    best_iou = np.zeros(num)
    best_gt = np.full(num, -1, dtype=np.int64)
    for d, o in _candidate_pairs(dets, gt, num_images):
        bound = _iou_bound(dets.quads, d, gt.quads, o)
        keep = bound > floor
        d, o, bound = d[keep], o[keep], bound[keep]
        if len(d) == 0:
            continue
        seg_start = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
        seg_len = np.diff(np.r_[seg_start, len(d)])
        iou = np.full(len(d), -np.inf)
        # first round: each detection's pair with the highest bound
        at_max = np.flatnonzero(bound == np.repeat(np.maximum.reduceat(bound, seg_start), seg_len))
        first = at_max[np.r_[True, d[at_max][1:] != d[at_max][:-1]]]
        iou[first] = quad_pair_iou(dets.quads, d[first], gt.quads, o[first], _UNION_EPS)
        # second round: every other pair whose bound reaches that IoU (the others are below the best)
        rest = np.flatnonzero((bound >= np.repeat(iou[first], seg_len)) & np.isinf(iou))
        iou[rest] = quad_pair_iou(dets.quads, d[rest], gt.quads, o[rest], _UNION_EPS)
        seg_max = np.repeat(np.maximum.reduceat(iou, seg_start), seg_len)
        # first arg-maximum per detection, where the maximum is above the floor
        at_max = np.flatnonzero((iou == seg_max) & (iou > floor))
        first = at_max[np.r_[True, d[at_max][1:] != d[at_max][:-1]]] if len(at_max) else at_max
        best_iou[d[first]] = iou[first]
        best_gt[d[first]] = o[first]
    return best_iou, best_gt


@dataclass
class _Targets:
    """The detections that target an object, grouped by object (detections in score order inside a
    group): what :meth:`classify` needs at any threshold, computed once."""

    best_iou: np.ndarray  # (D,)
    order: np.ndarray  # (T,) detections with a target, by (object, score order)
    on_difficult: np.ndarray  # (T,) their object is difficult
    group_start: np.ndarray  # (T,) index in ``order`` of the first detection of the same object

    @staticmethod
    def build(best_iou: np.ndarray, best_gt: np.ndarray, difficult: np.ndarray) -> _Targets:
        targeted = np.flatnonzero(best_gt >= 0)
        order = targeted[np.argsort(best_gt[targeted], kind="stable")]
        obj = best_gt[order]
        new_group = np.r_[True, obj[1:] != obj[:-1]] if len(obj) else np.zeros(0, dtype=bool)
        starts = np.flatnonzero(new_group)
        group_start = np.repeat(starts, np.diff(np.r_[starts, len(obj)]))
        return _Targets(best_iou, order, difficult[obj], group_start)

    def classify(self, iou_thr: float) -> tuple[np.ndarray, np.ndarray]:
        """True/false positive flags of the detections (in sorted order) at one threshold: a detection
        whose best IoU exceeds ``iou_thr`` is ignored on a difficult object, a true positive if it is the
        first (in score order) to hit a non-difficult object, and a false positive otherwise."""
        hit = self.best_iou[self.order] > iou_thr
        hits_before = np.cumsum(hit) - hit  # hits earlier in the order
        first_hit = hit & (hits_before == hits_before[self.group_start])
        tp = np.zeros(len(self.best_iou), dtype=bool)
        tp[self.order[first_hit & ~self.on_difficult]] = True
        ignored = np.zeros(len(self.best_iou), dtype=bool)
        ignored[self.order[hit & self.on_difficult]] = True
        return tp, ~tp & ~ignored


def _class_aps(
    tp: np.ndarray,
    fp: np.ndarray,
    class_start: np.ndarray,
    npos: np.ndarray,
    metric: str,
    curves: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[float | None]:
    """AP per class; ``curves`` (when given) receives each class's ``(recall, precision)``."""
    aps: list[float | None] = []
    for c in range(len(npos)):
        if npos[c] == 0:
            aps.append(None)
            if curves is not None:
                curves.append((np.zeros(0), np.zeros(0)))
            continue
        s, e = int(class_start[c]), int(class_start[c + 1])
        rec, prec = precision_recall(tp[s:e], fp[s:e], int(npos[c]))
        aps.append(average_precision(rec, prec, metric))
        if curves is not None:
            curves.append((rec, prec))
    return aps


def _mean(aps: Sequence[float | None]) -> float:
    vals = [a for a in aps if a is not None]
    if not vals:
        return math.nan
    total = 0.0
    for a in vals:
        total += a
    return total / len(vals)


# ------------------------------------------------------------------------------------------ public API
def evaluate_dota(
    gt: Mapping[str, DotaLabel | LabelArrays],
    detections: Mapping[str, Task1Detections],
    classes: Sequence[str],
    iou_thr: float = 0.5,
    metric: str = "voc07",
    map_50_95: bool = True,
) -> DotaResult:
    """DOTA Task1 mAP of in-memory detections against in-memory ground truth.

    ``gt``: labels (:class:`~daik_core.data.dota.DotaLabel` or
    :class:`~daik_core.data.dota.LabelArrays`) keyed by image id (the annotated image set); objects of
    classes not in ``classes`` are ignored. ``detections``: per class name (a missing class has no
    detections); their ``image_ids`` refer to keys of ``gt`` (others count as false positives, with one
    :class:`DotaEvalWarning`).
    ``metric``: ``voc07`` (11-point, the DOTA server's) or ``area`` (all-point). ``map_50_95``: also
    compute the mean over the IoU thresholds :data:`IOU_THRS_50_95` (the IoUs are shared, so this is
    cheap). A detection matches when its IoU is strictly greater than the threshold.
    """
    thr = _check_args(iou_thr, metric)
    classes = resolve_classes(classes)
    image_ids = list(gt)
    image_index = {name: i for i, name in enumerate(image_ids)}
    gtruth = _gather_gt(gt, image_ids, classes)
    dets, unannotated = _gather_detections(detections, image_index, classes)
    if unannotated:
        shown = ", ".join(unannotated[:5]) + (", ..." if len(unannotated) > 5 else "")
        warnings.warn(
            f"detections on {len(unannotated)} image(s) without annotation count as false positives: {shown}",
            DotaEvalWarning,
            stacklevel=2,
        )

    num_classes = len(classes)
    npos = np.bincount(gtruth.cls[~gtruth.difficult], minlength=num_classes)
    num_difficult = np.bincount(gtruth.cls[gtruth.difficult], minlength=num_classes)
    # IoUs at or below every threshold used never decide a match
    floor = min(thr, float(IOU_THRS_50_95[0])) if map_50_95 else thr
    best_iou, best_gt = _best_overlaps(dets, gtruth, len(image_ids), floor)

    targets = _Targets.build(best_iou, best_gt, gtruth.difficult)
    tp, fp = targets.classify(thr)
    pr: list[tuple[np.ndarray, np.ndarray]] = []
    aps = _class_aps(tp, fp, dets.class_start, npos, metric, pr)
    result = DotaResult(
        map=_mean(aps),
        per_class=dict(zip(classes, aps, strict=True)),
        counts=_class_counts(classes, dets.class_start, tp, fp, npos, num_difficult),
        iou_thr=thr,
        metric=metric,
        num_images=len(image_ids),
        unannotated_images=unannotated,
        curves=_pr_curves(classes, dets, npos, pr),
    )
    if map_50_95:
        per_class_50_95 = _per_class_50_95(classes, targets, dets.class_start, npos, metric)
        result.per_class_50_95 = per_class_50_95
        result.map_50_95 = _mean(list(per_class_50_95.values()))
    return result


def _class_counts(
    classes: Sequence[str],
    class_start: np.ndarray,
    tp: np.ndarray,
    fp: np.ndarray,
    npos: np.ndarray,
    num_difficult: np.ndarray,
) -> dict[str, ClassCounts]:
    """Per class: ground truth, detections and how the detections were judged at the main threshold."""
    counts = {}
    for c, name in enumerate(classes):
        s, e = int(class_start[c]), int(class_start[c + 1])
        n_tp, n_fp = int(tp[s:e].sum()), int(fp[s:e].sum())
        counts[name] = ClassCounts(
            npos=int(npos[c]),
            num_difficult=int(num_difficult[c]),
            num_dets=e - s,
            tp=n_tp,
            fp=n_fp,
            ignored=e - s - n_tp - n_fp,
        )
    return counts


def _pr_curves(
    classes: Sequence[str], dets: _Detections, npos: np.ndarray, pr: list[tuple[np.ndarray, np.ndarray]]
) -> dict[str, PRCurve]:
    return {
        name: PRCurve(
            scores=dets.scores[dets.class_start[c] : dets.class_start[c + 1]] if npos[c] else np.zeros(0),
            recall=pr[c][0],
            precision=pr[c][1],
            npos=int(npos[c]),
        )
        for c, name in enumerate(classes)
    }


def _per_class_50_95(
    classes: Sequence[str], targets: _Targets, class_start: np.ndarray, npos: np.ndarray, metric: str
) -> dict[str, float | None]:
    """Per class, the mean AP over :data:`IOU_THRS_50_95` (``None`` for a class without ground truth)."""
    per_thr = []
    for t in IOU_THRS_50_95.tolist():
        tp_t, fp_t = targets.classify(t)
        per_thr.append(_class_aps(tp_t, fp_t, class_start, npos, metric))
    per_class: dict[str, float | None] = {}
    for c, name in enumerate(classes):
        vals = [row[c] for row in per_thr]
        per_class[name] = None if vals[0] is None else _mean(vals)
    return per_class


def evaluate_dota_dirs(
    ann_dir: str | Path,
    det_dir: str | Path,
    classes: Sequence[str],
    iou_thr: float = 0.5,
    metric: str = "voc07",
    map_50_95: bool = True,
) -> DotaResult:
    """DOTA Task1 mAP of a folder of ``Task1_<class>.txt`` files against a labelTxt folder.

    The annotated image set is every ``*.txt`` of ``ann_dir`` (objects of other classes are ignored). A
    class without a Task1 file has no detections (AP 0 when it has ground truth). Malformed files raise
    :class:`~daik_core.errors.DataFormatError` naming the file and line.
    """
    _check_args(iou_thr, metric)
    classes = resolve_classes(classes)
    ann_dir, det_dir = Path(ann_dir), Path(det_dir)
    gt = read_label_dir_arrays(ann_dir)
    if not gt:
        hint = " (did you mean its labelTxt/ folder?)" if (ann_dir / "labelTxt").is_dir() else ""
        raise DataFormatError(ann_dir, None, f"no *.txt annotation files in the annotation folder{hint}")
    detections = read_task1_dir(det_dir, classes)
    known = set(classes)
    others = sorted(
        p.name for p in det_dir.glob("Task1_*.txt") if p.is_file() and p.stem[len("Task1_") :] not in known
    )
    if others:
        warnings.warn(
            f"{det_dir}: ignored {len(others)} Task1 file(s) of classes not in the class list: "
            + ", ".join(others[:5])
            + (", ..." if len(others) > 5 else ""),
            DotaEvalWarning,
            stacklevel=2,
        )
    return evaluate_dota(gt, detections, classes, iou_thr=iou_thr, metric=metric, map_50_95=map_50_95)
