"""Benchmark: class-aware rotated NMS (daik_core.ops.nms_rotated) against a plain greedy loop, same run.

    .venv/bin/python bench/bench_nms.py [--n 20000] [--objects 500] [--classes 15] [--thr 0.1] [--seed 0]

Data: detector-like output in a 1024 x 1024 image: ``n`` boxes, jittered copies of ``objects`` DOTA-like
objects (long side 8..200 px, aspect 1..6), random scores, ``classes`` random labels.

Baseline: the DOTA devkit's loop (``py_cpu_nms_poly_fast``), per class: visit boxes by descending score;
for each kept box, the remaining boxes whose axis-aligned boxes overlap it (numpy) get their exact IoU from
shapely (vectorised over those candidates), and those with IoU > thr are dropped. The kept sets must be
identical. ``--subset`` runs the baseline on the first k boxes only, when the full run is too slow.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import shapely
import torch

from daik_core.ops import nms_rotated
from daik_core.structures import obb_to_hbb, obb_to_poly


def detections(n: int, objects: int, classes: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    centre = torch.rand(objects, 2, generator=g, dtype=torch.float64) * 1024
    w = 8 + torch.rand(objects, generator=g, dtype=torch.float64) * 192
    h = w / (1 + 5 * torch.rand(objects, generator=g, dtype=torch.float64))
    angle = torch.rand(objects, generator=g, dtype=torch.float64) * math.pi
    base = torch.cat((centre, w[:, None], h[:, None], angle[:, None]), dim=1)
    pick = torch.randint(0, objects, (n,), generator=g)
    scale = torch.stack((base[pick, 3] / 4, base[pick, 3] / 4, base[pick, 2] / 10, base[pick, 3] / 10), dim=1)
    boxes = base[pick].clone()
    boxes[:, :4] += torch.randn(n, 4, generator=g, dtype=torch.float64) * scale
    boxes[:, 4] += torch.randn(n, generator=g, dtype=torch.float64) * 0.1
    boxes[:, 2:4] = boxes[:, 2:4].abs() + 1
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=g)
    return boxes, scores, labels


def devkit_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, thr: float) -> list[int]:
    """Greedy NMS per class, hbb pre-filter + shapely IoU, as the DOTA devkit does it. Kept indices."""
    polys = shapely.polygons(obb_to_poly(boxes).reshape(-1, 4, 2).numpy())
    areas = shapely.area(polys)
    hbb = obb_to_hbb(boxes).numpy()
    s, lab = scores.numpy(), labels.numpy()
    kept: list[int] = []
    for c in np.unique(lab):
        idx = np.flatnonzero(lab == c)
        order = idx[np.argsort(-s[idx], kind="stable")]
        while order.size:
            i, rest = order[0], order[1:]
            kept.append(int(i))
            near = (
                (hbb[rest, 0] < hbb[i, 2])
                & (hbb[i, 0] < hbb[rest, 2])
                & (hbb[rest, 1] < hbb[i, 3])
                & (hbb[i, 1] < hbb[rest, 3])
            )
            cand = rest[near]
            inter = shapely.area(shapely.intersection(polys[i], polys[cand]))
            iou = inter / (areas[i] + areas[cand] - inter)
            drop = np.zeros(rest.size, dtype=bool)
            drop[np.flatnonzero(near)[iou > thr]] = True
            order = rest[~drop]
    return sorted(kept, key=lambda k: (-s[k], k))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--classes", type=int, default=15)
    parser.add_argument("--thr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", type=int, default=None, help="run both on the first k boxes only")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the daik op (median reported)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1, as shapely)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    boxes, scores, labels = detections(args.n, args.objects, args.classes, g)
    if args.subset is not None:
        boxes, scores, labels = boxes[: args.subset], scores[: args.subset], labels[: args.subset]
    n = boxes.shape[0]
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), shapely {shapely.__version__}; "
        f"{n} boxes, {args.objects} objects, {args.classes} classes, iou_thr {args.thr}, seed {args.seed}"
    )

    start = time.perf_counter()
    expected = devkit_nms(boxes, scores, labels, args.thr)
    t_ref = time.perf_counter() - start

    nms_rotated(boxes[:100], scores[:100], args.thr, labels[:100])  # warm-up
    rows = []
    for name, b, s in (("float64", boxes, scores), ("float32", boxes.float(), scores.float())):
        times, keep = [], torch.zeros(0)
        for _ in range(args.repeat):
            start = time.perf_counter()
            keep = nms_rotated(b, s, args.thr, classes=labels)
            times.append(time.perf_counter() - start)
        same = keep.tolist() == expected
        differ = len(set(keep.tolist()) ^ set(expected))
        rows.append((f"daik nms_rotated, {name}", statistics.median(times), len(keep), same, differ))
        if name == "float64" and not same:
            raise SystemExit("float64 kept set differs from the reference loop")

    print(f"  {'method':<34}{'time (s)':>10}{'speed-up':>10}{'kept':>8}  same kept list as the reference")
    print(f"  {'DOTA-devkit loop (hbb + shapely)':<34}{t_ref:>10.3f}{'1.0x':>10}{len(expected):>8}  -")
    for name, t, kept, same, differ in rows:
        if same:
            verdict = "yes, identical"
        elif differ == 0:
            verdict = "same set, another order (score ties)"
        else:
            verdict = f"no: {differ} boxes differ"
        print(f"  {name:<34}{t:>10.3f}{t_ref / t:>9.1f}x{kept:>8}  {verdict}")
    print(
        "  (float32 rounds the boxes and scores themselves, so near-threshold pairs and near-ties may flip)"
    )


if __name__ == "__main__":
    main()
