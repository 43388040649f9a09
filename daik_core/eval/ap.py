"""Precision, recall and average precision, computed exactly as the DOTA devkit (PASCAL VOC) does.

Two integrations of the precision/recall curve (``metric``):

``voc07``
    The 11-point interpolation of VOC 2007: the mean over the recall levels of :data:`VOC07_RECALL_GRID`
    of the best precision at a recall ``>=`` the level (0 when the curve never reaches it). The grid is
    ``numpy.arange(0.0, 1.1, 0.1)``, bit for bit: its values are not the decimals they print as
    (``0.30000000000000004``, ``0.6000000000000001``, ``0.7000000000000001``), so a recall of exactly
    ``3/10`` does *not* reach the fourth level. Keeping the devkit's expression keeps its results.
``area``
    The all-point interpolation (VOC 2010+): the area under the precision envelope (precision made
    non-increasing from the right) with sentinels ``recall 0 -> precision 0`` and ``recall 1 -> 0``.

Both return exactly the same floating-point value as the devkit's ``voc_ap`` (same operations, same
order), without its Python loops.
"""

from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "VOC07_RECALL_GRID", "average_precision", "precision_recall"]

#: The AP integrations understood by :func:`average_precision`.
METRICS: tuple[str, ...] = ("voc07", "area")

#: Recall levels of the 11-point metric: the devkit's ``np.arange(0., 1.1, 0.1)``, not ``0.1 * k``.
VOC07_RECALL_GRID: np.ndarray = np.arange(0.0, 1.1, 0.1)

_EPS = np.finfo(np.float64).eps


def precision_recall(tp: np.ndarray, fp: np.ndarray, npos: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each detection, detections in descending score order.

    ``tp``, ``fp``: (N,) flags (a detection matched to a difficult object is neither); ``npos`` > 0: the
    number of non-difficult ground-truth objects. ``rec = cumsum(tp) / npos``,
    ``prec = cumsum(tp) / max(cumsum(tp) + cumsum(fp), eps)`` (float64).
    """
    if npos <= 0:
        raise ValueError(f"npos must be positive, got {npos}")
    tp_cum = np.cumsum(np.asarray(tp, dtype=np.float64))
    fp_cum = np.cumsum(np.asarray(fp, dtype=np.float64))
    rec = tp_cum / float(npos)
    prec = tp_cum / np.maximum(tp_cum + fp_cum, _EPS)
    return rec, prec


def average_precision(rec: np.ndarray, prec: np.ndarray, metric: str = "voc07") -> float:
    """AP of a precision/recall curve (``rec`` non-decreasing, as :func:`precision_recall` returns it)."""
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if rec.shape != prec.shape or rec.ndim != 1:
        raise ValueError(f"rec and prec must be 1-d of the same length, got {rec.shape} and {prec.shape}")
    if metric == "voc07":
        # best precision at recall >= t is the maximum over a suffix (recall is non-decreasing)
        suffix_max = np.maximum.accumulate(prec[::-1])[::-1]
        first = np.searchsorted(rec, VOC07_RECALL_GRID, side="left")  # first index with rec >= t
        ap = 0.0
        for i in first.tolist():  # 11 levels, summed in the devkit's order
            p = suffix_max[i] if i < len(rec) else 0.0
            ap = ap + p / 11.0
        return float(ap)
    if metric == "area":
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
        i = np.flatnonzero(mrec[1:] != mrec[:-1])  # where recall changes
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
