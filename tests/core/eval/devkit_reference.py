"""A straightforward reference of the DOTA devkit's Task1 evaluation, for the tests.

Written from the protocol (``voc_eval`` + ``voc_ap`` of ``dota_evaluation_task1.py``): one loop over
the detections of a class in descending score order, shapely polygon IoU, the devkit's axis-aligned
pre-filter with its +1 pixel convention, and ``voc_ap`` as loops. Only the points where the evaluator
documents a choice of its own are adapted: ties in score keep file order (a stable sort), a detection on
an unannotated image is a false positive, and a class with ``npos == 0`` has AP ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from shapely.geometry import Polygon

from daik_core.data.dota import DotaLabel, DotaObject, Task1Detections

IouFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (8,), (K, 8) -> (K,)


def shapely_iou(det: np.ndarray, gts: np.ndarray) -> np.ndarray:
    p = Polygon(np.asarray(det, dtype=np.float64).reshape(4, 2))
    out = np.zeros(len(gts))
    for k, g in enumerate(gts):
        q = Polygon(np.asarray(g, dtype=np.float64).reshape(4, 2))
        inter = p.intersection(q).area
        union = p.area + q.area - inter
        out[k] = inter / union if union > 0 else 0.0
    return out


def devkit_voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool) -> float:
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            reached = rec >= t
            p = float(np.max(prec[reached])) if reached.any() else 0.0
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(len(mrec) - 1):
        if mrec[i + 1] != mrec[i]:
            ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1]
    return ap


def devkit_eval_class(
    gt: Mapping[str, DotaLabel],
    dets: Task1Detections,
    name: str,
    iou_thr: float,
    use_07_metric: bool,
    iou_fn: IouFn = shapely_iou,
) -> tuple[float | None, np.ndarray, np.ndarray]:
    """(AP or None when npos == 0, tp flags, fp flags in score order) of one class."""
    recs: dict[str, tuple[np.ndarray, np.ndarray, list[bool]]] = {}
    npos = 0
    for image_id, label in gt.items():
        objs = [o for o in label.objects if o.name == name]
        polys = np.array([o.poly for o in objs], dtype=np.float64).reshape(-1, 8)
        difficult = np.array([o.difficult != 0 for o in objs], dtype=bool)
        recs[image_id] = (polys, difficult, [False] * len(objs))
        npos += int((~difficult).sum())

    order = np.argsort(-np.asarray(dets.scores), kind="stable")
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for k, d in enumerate(order.tolist()):
        bb = np.asarray(dets.polys[d], dtype=np.float64)
        ovmax, jmax = -math.inf, -1
        rec = recs.get(dets.image_ids[d])
        if rec is not None and len(rec[0]) > 0:
            polys = rec[0]
            gx1, gy1 = polys[:, 0::2].min(1), polys[:, 1::2].min(1)
            gx2, gy2 = polys[:, 0::2].max(1), polys[:, 1::2].max(1)
            bx1, by1, bx2, by2 = bb[0::2].min(), bb[1::2].min(), bb[0::2].max(), bb[1::2].max()
            iw = np.maximum(np.minimum(gx2, bx2) - np.maximum(gx1, bx1) + 1.0, 0.0)
            ih = np.maximum(np.minimum(gy2, by2) - np.maximum(gy1, by1) + 1.0, 0.0)
            inters = iw * ih
            uni = (bx2 - bx1 + 1.0) * (by2 - by1 + 1.0) + (gx2 - gx1 + 1.0) * (gy2 - gy1 + 1.0) - inters
            kept = np.flatnonzero(inters / uni > 0)
            if len(kept) > 0:
                ious = iou_fn(bb, polys[kept])
                j = int(np.argmax(ious))
                ovmax, jmax = float(ious[j]), int(kept[j])
        if ovmax > iou_thr:
            assert rec is not None
            if not rec[1][jmax]:
                if not rec[2][jmax]:
                    tp[k] = 1.0
                    rec[2][jmax] = True
                else:
                    fp[k] = 1.0
        else:
            fp[k] = 1.0
    if npos == 0:
        return None, tp, fp
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(fp)
    rec_curve = tp_cum / float(npos)
    prec_curve = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    return devkit_voc_ap(rec_curve, prec_curve, use_07_metric), tp, fp


def devkit_evaluate(
    gt: Mapping[str, DotaLabel],
    detections: Mapping[str, Task1Detections],
    classes: Sequence[str],
    iou_thr: float,
    metric: str,
    iou_fn: IouFn = shapely_iou,
) -> tuple[float, dict[str, float | None], dict[str, tuple[int, int]]]:
    """(mAP over classes with npos > 0, AP per class, (tp, fp) per class)."""
    per_class: dict[str, float | None] = {}
    counts: dict[str, tuple[int, int]] = {}
    for name in classes:
        dets = detections.get(name, Task1Detections.empty())
        ap, tp, fp = devkit_eval_class(gt, dets, name, iou_thr, metric == "voc07", iou_fn)
        per_class[name] = ap
        counts[name] = (int(tp.sum()), int(fp.sum()))
    aps = [a for a in per_class.values() if a is not None]
    return (sum(aps) / len(aps) if aps else math.nan), per_class, counts


# ----------------------------------------------------------------------------------- random scenes
def rect_poly(cx: float, cy: float, w: float, h: float, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    local = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    pts = local @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])
    return pts.reshape(8)


def random_case(
    rng: np.random.Generator,
    classes: Sequence[str] = ("plane", "ship", "small-vehicle"),
    num_images: int = 6,
    size: float = 300.0,
    unannotated: bool = True,
) -> tuple[dict[str, DotaLabel], dict[str, Task1Detections]]:
    """Images of rotated boxes (some clustered, some duplicated, difficult flags 0/1/2), detections that
    are jittered copies (0-3 per object, sometimes of another class), random false positives, and
    optionally detections on images without annotation. Scores are distinct."""
    gt: dict[str, DotaLabel] = {}
    det_rows: dict[str, list[tuple[str, np.ndarray]]] = {c: [] for c in classes}
    for i in range(num_images):
        image_id = f"P{i:04d}"
        objs: list[DotaObject] = []
        boxes: list[tuple[float, float, float, float, float]] = []
        for _ in range(int(rng.integers(0, 12))):
            if boxes and rng.random() < 0.3:  # a neighbour of an earlier object (overlapping objects)
                cx, cy, w, h, a = boxes[int(rng.integers(len(boxes)))]
                box = (cx + rng.normal(0, w / 3), cy + rng.normal(0, h / 3), w, h, a + rng.normal(0, 0.3))
            else:
                box = (
                    rng.uniform(0, size),
                    rng.uniform(0, size),
                    rng.uniform(6, 60),
                    rng.uniform(4, 40),
                    rng.uniform(0, math.pi),
                )
            name = classes[int(rng.integers(len(classes)))]
            difficult = int(rng.choice([0, 1, 2], p=[0.75, 0.15, 0.1]))
            objs.append(DotaObject(tuple(rect_poly(*box).tolist()), name, difficult))
            boxes.append(box)
            if rng.random() < 0.05:  # an exact duplicate annotation (IoU ties between objects)
                objs.append(DotaObject(objs[-1].poly, name, int(rng.choice([0, 1]))))
                boxes.append(box)
        gt[image_id] = DotaLabel(objs)
        for obj, (cx, cy, w, h, a) in zip(objs, boxes, strict=True):
            for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
                sigma = rng.uniform(0.0, 0.25)
                jittered = rect_poly(
                    cx + rng.normal(0, sigma * w / 2),
                    cy + rng.normal(0, sigma * h / 2),
                    w * math.exp(rng.normal(0, sigma)),
                    h * math.exp(rng.normal(0, sigma)),
                    a + rng.normal(0, sigma),
                )
                name = obj.name if rng.random() < 0.9 else classes[int(rng.integers(len(classes)))]
                det_rows[name].append((image_id, jittered))
        for _ in range(int(rng.integers(0, 6))):  # false positives anywhere
            name = classes[int(rng.integers(len(classes)))]
            box = (rng.uniform(0, size), rng.uniform(0, size), rng.uniform(6, 60), rng.uniform(4, 40), 0.0)
            det_rows[name].append((image_id, rect_poly(*box[:4], rng.uniform(0, math.pi))))
    if unannotated and rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 4))):
            name = classes[int(rng.integers(len(classes)))]
            det_rows[name].append(("ghost", rect_poly(50.0, 50.0, 20.0, 10.0, 0.3)))
    detections: dict[str, Task1Detections] = {}
    total = sum(len(rows) for rows in det_rows.values())
    scores = rng.permutation(total) / max(total, 1) + 0.001  # distinct
    k = 0
    for name, rows in det_rows.items():
        if not rows and rng.random() < 0.5:
            continue  # a class absent from the mapping: no detections
        perm = rng.permutation(len(rows))  # file order unrelated to score order
        rows = [rows[j] for j in perm]
        detections[name] = Task1Detections(
            [r[0] for r in rows],
            scores[k : k + len(rows)].astype(np.float64),
            np.array([r[1] for r in rows], dtype=np.float64).reshape(-1, 8),
        )
        k += len(rows)
    return gt, detections
