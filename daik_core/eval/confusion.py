"""A detection confusion matrix with a background row and column (torch-free, like the evaluator).

Per image, every detection scoring at least ``conf`` is compared with every ground-truth object of the
image, *whatever their classes*, by exact polygon IoU; pairs with an IoU strictly above ``iou_thr`` are
matched greedily, highest IoU first, each detection and each object at most once (as Ultralytics does).
Then, with rows the true class and columns the predicted class (the last of each: background):

* a matched pair adds 1 at ``[true class, predicted class]`` (off the diagonal: a class confusion);
* an object left unmatched adds 1 at ``[true class, background]`` (missed);
* a detection left unmatched adds 1 at ``[background, predicted class]`` (a false alarm).

Difficult objects take part in the matching (a detection on one is not a false alarm) but are not
counted: neither the pair nor the object, when missed. Objects and detections of classes outside
``classes`` are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from daik_core.data.dota import DotaLabel, LabelArrays, Task1Detections, label_to_arrays
from daik_core.eval._quad_iou import prepare_quads, quad_pair_iou

__all__ = ["confusion_matrix", "normalize_rows"]


def _gt_arrays(
    label: DotaLabel | LabelArrays, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(label, DotaLabel):
        return label_to_arrays(label, list(classes))
    index = {name: c for c, name in enumerate(classes)}
    ids = np.array([index.get(n, -1) for n in label.names], dtype=np.int64)
    keep = ids >= 0
    polys = np.asarray(label.polys, dtype=np.float64).reshape(-1, 8)
    return polys[keep], ids[keep], np.asarray(label.difficult, dtype=np.int64)[keep]


def confusion_matrix(
    gt: Mapping[str, DotaLabel | LabelArrays],
    detections: Mapping[str, Task1Detections],
    classes: Sequence[str],
    *,
    iou_thr: float = 0.5,
    conf: float = 0.25,
) -> np.ndarray:
    """Counts ``(C + 1, C + 1)`` int64: rows the true class, columns the predicted class, index ``C`` the
    background (see the module docstring). ``gt`` is keyed by image id; detections on images outside it
    are false alarms."""
    num = len(classes)
    matrix = np.zeros((num + 1, num + 1), dtype=np.int64)
    per_image: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for c, name in enumerate(classes):
        det = detections.get(name)
        if det is None or len(det) == 0:
            continue
        scores = np.asarray(det.scores, dtype=np.float64)
        polys = np.asarray(det.polys, dtype=np.float64).reshape(-1, 8)
        ids = np.asarray(det.image_ids, dtype=object)
        keep = scores >= conf
        for image_id in np.unique(ids[keep]).tolist() if keep.any() else []:
            sel = keep & (ids == image_id)
            per_image.setdefault(str(image_id), []).append((polys[sel], np.full(int(sel.sum()), c)))
    for image_id in set(gt) | set(per_image):
        if image_id in gt:
            g_polys, g_cls, g_diff = _gt_arrays(gt[image_id], classes)
        else:
            g_polys, g_cls, g_diff = np.zeros((0, 8)), np.zeros(0, dtype=np.int64), np.zeros(0, np.int64)
        parts = per_image.get(image_id, [])
        d_polys = np.concatenate([np.zeros((0, 8)), *(p for p, _ in parts)])
        d_cls = np.concatenate([np.zeros(0, dtype=np.int64), *(k for _, k in parts)]).astype(np.int64)
        g_matched = np.zeros(len(g_cls), dtype=bool)
        d_matched = np.zeros(len(d_cls), dtype=bool)
        if len(g_cls) and len(d_cls):
            gq, dq = prepare_quads(g_polys), prepare_quads(d_polys)
            gh, dh = gq.hbb[:, None, :], dq.hbb[None, :, :]
            # only pairs whose enclosing boxes overlap can have a positive IoU (a crowded image has many)
            overlap = (
                (gh[..., 0] < dh[..., 2])
                & (dh[..., 0] < gh[..., 2])
                & (gh[..., 1] < dh[..., 3])
                & (dh[..., 1] < gh[..., 3])
            )
            gi, di = np.nonzero(overlap)
            iou = quad_pair_iou(gq, gi, dq, di)
            hit = np.flatnonzero(iou > iou_thr)
            order = hit[np.argsort(-iou[hit], kind="stable")]
            for k in order.tolist():
                g, d = int(gi[k]), int(di[k])
                if g_matched[g] or d_matched[d]:
                    continue
                g_matched[g] = d_matched[d] = True
                if not g_diff[g]:
                    matrix[g_cls[g], d_cls[d]] += 1
        missed = ~g_matched & (g_diff == 0)
        matrix[:num, num] += np.bincount(g_cls[missed], minlength=num)
        matrix[num, :num] += np.bincount(d_cls[~d_matched], minlength=num)
    return matrix


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (per true class; a row without any count stays 0)."""
    m = np.asarray(matrix, dtype=np.float64)
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)
