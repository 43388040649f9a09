"""DOTA Task1 mAP the way the DOTA devkit's ``dota_evaluation_task1.py`` computes it, from the command line:
the baseline of ``bench_eval.py``'s end-to-end measurement.

The devkit's protocol, one detection at a time: labelTxt files parsed line by line into per-object
records; per class, the detections of ``Task1_<class>.txt`` sorted by descending score (stable: ties keep
file order, as in ``daik eval dota``); each detection takes the objects of its image, keeps those whose
enclosing axis-aligned box overlaps its own (the ``+1`` pixel convention), computes the polygon IoU with
them and takes the best; 11-point (``voc07``) or all-point AP. Differences from the devkit, all in its
favour or neutral: shapely 2 computes the polygon IoU (vectorised over the kept objects of a detection,
each object's polygon built once) in place of the devkit's compiled ``polyiou`` called once per pair;
a detection on an image without annotation is a false positive, and a class without non-difficult
objects has no AP and is left out of the mean (as in ``daik eval dota``).

    python bench/devkit_style_eval.py ANN_DIR DET_DIR --classes a,b,c [--iou-thr 0.5] [--metric voc07]
        [--json FILE]

It imports numpy and shapely only (not daik_core).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import shapely


def parse_labels(path: Path) -> list[tuple[str, int, list[float]]]:
    """(class name, difficult, 8 coordinates) per object line; header and short lines are skipped."""
    objects = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        fields = line.strip().split()
        if len(fields) < 9:
            continue  # imagesource:, gsd:, blank
        difficult = int(fields[9]) if len(fields) > 9 else 0
        objects.append((fields[8], difficult, [float(v) for v in fields[:8]]))
    return objects


class ImageObjects:
    """The objects of one class in one image: polygons, enclosing boxes, difficult and matched flags."""

    def __init__(self, polys: list[list[float]], difficult: list[int]) -> None:
        self.polys = np.array(polys, dtype=np.float64).reshape(-1, 8)
        self.shapes = shapely.polygons(self.polys.reshape(-1, 4, 2))
        xs, ys = self.polys[:, 0::2], self.polys[:, 1::2]
        self.x1, self.y1 = xs.min(axis=1), ys.min(axis=1)
        self.x2, self.y2 = xs.max(axis=1), ys.max(axis=1)
        self.difficult = np.array(difficult, dtype=bool)
        self.matched = np.zeros(len(self.polys), dtype=bool)


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool) -> float:
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = float(np.max(prec[rec >= t])) if np.any(rec >= t) else 0.0
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


Labels = dict[str, list[tuple[str, int, list[float]]]]  # image id -> (class, difficult, 8 coordinates)
Detections = tuple[list[str], np.ndarray, np.ndarray]  # image ids, scores (N,), polygons (N, 8)


def read_task1(path: Path) -> Detections:
    lines = path.read_text().splitlines() if path.is_file() else []
    rows = [line.strip().split() for line in lines if line.strip()]
    scores = np.array([float(r[1]) for r in rows])
    polys = np.array([[float(v) for v in r[2:]] for r in rows]).reshape(-1, 8)
    return [r[0] for r in rows], scores, polys


def eval_class(
    labels: Labels, dets: Detections, name: str, iou_thr: float, use_07_metric: bool
) -> float | None:
    records: dict[str, ImageObjects] = {}
    npos = 0
    for image_id, objects in labels.items():
        mine = [o for o in objects if o[0] == name]
        records[image_id] = ImageObjects([o[2] for o in mine], [int(o[1] != 0) for o in mine])
        npos += sum(1 for o in mine if o[1] == 0)
    image_ids, confidence, boxes = dets
    order = np.argsort(-confidence, kind="stable")
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for k, d in enumerate(order):
        rec = records.get(image_ids[d])
        bb = boxes[d]
        ovmax, jmax = -math.inf, -1
        if rec is not None and len(rec.polys):
            x1, y1, x2, y2 = bb[0::2].min(), bb[1::2].min(), bb[0::2].max(), bb[1::2].max()
            iw = np.maximum(np.minimum(rec.x2, x2) - np.maximum(rec.x1, x1) + 1.0, 0.0)
            ih = np.maximum(np.minimum(rec.y2, y2) - np.maximum(rec.y1, y1) + 1.0, 0.0)
            kept = np.flatnonzero(iw * ih > 0)
            if len(kept):
                det_shape = shapely.polygons(bb.reshape(4, 2))
                others = rec.shapes[kept]
                inter = shapely.area(shapely.intersection(det_shape, others))
                union = shapely.area(det_shape) + shapely.area(others) - inter
                ious = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
                j = int(np.argmax(ious))
                ovmax, jmax = float(ious[j]), int(kept[j])
        if ovmax > iou_thr:
            assert rec is not None
            if not rec.difficult[jmax]:
                if not rec.matched[jmax]:
                    tp[k] = 1.0
                    rec.matched[jmax] = True
                else:
                    fp[k] = 1.0
        else:
            fp[k] = 1.0
    if npos == 0:
        return None
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(fp)
    rec_curve = tp_cum / float(npos)
    prec_curve = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    return voc_ap(rec_curve, prec_curve, use_07_metric)


def evaluate(
    labels: Labels, detections: dict[str, Detections], classes: list[str], iou_thr: float, metric: str
) -> dict[str, float | None]:
    """AP per class (None without non-difficult objects)."""
    empty: Detections = ([], np.zeros(0), np.zeros((0, 8)))
    return {
        name: eval_class(labels, detections.get(name, empty), name, iou_thr, metric == "voc07")
        for name in classes
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ann_dir", type=Path)
    parser.add_argument("det_dir", type=Path)
    parser.add_argument("--classes", required=True, help="comma-separated class names")
    parser.add_argument("--iou-thr", type=float, default=0.5)
    parser.add_argument("--metric", choices=("voc07", "area"), default="voc07")
    parser.add_argument("--json", type=Path, default=None, help="write mAP and per-class AP here")
    args = parser.parse_args()
    classes = args.classes.split(",")
    labels = {p.stem: parse_labels(p) for p in sorted(args.ann_dir.glob("*.txt"))}
    detections = {name: read_task1(args.det_dir / f"Task1_{name}.txt") for name in classes}
    per_class = evaluate(labels, detections, classes, args.iou_thr, args.metric)
    aps = [ap for ap in per_class.values() if ap is not None]
    result: dict[str, Any] = {"mAP": sum(aps) / len(aps) if aps else None, "per_class": per_class}
    for name, ap in per_class.items():
        print(f"{name:<24} {'-' if ap is None else f'{100 * ap:.2f}'}")
    print(f"mAP: {result['mAP']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
