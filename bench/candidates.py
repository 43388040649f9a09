"""How many candidate anchors each object has (anchor points inside its rotated box, the assigner's
candidates), and so how often SAD can change an assignment: SAD only re-ranks the candidates of an object
that has more than ``topk`` of them.

    .venv/bin/python bench/candidates.py data/synth-kd/train --imgsz 256 [--topk 13] [--classes a,b,...]

Prints, over the dataset's objects (no augmentation): candidates per object (mean, median, quartiles),
the share with fewer than 3, with more than ``topk`` (where SAD can act), and those with no anchor inside
(the assigner's nearest-anchor fallback); then the same per class.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from daik_core.assigners import candidate_pairs, points_in_obb
from daik_core.data.classes import resolve_classes
from daik_core.data.dataset import DotaDataset
from daik_core.data.loader import build_dataloader
from daik_core.models.head import make_anchor_points


def candidate_counts(folder: Path, classes: tuple[str, ...], imgsz: int) -> dict[str, list[int]]:
    """Candidates per object, by class name (objects without an anchor inside count 0)."""
    data = DotaDataset(folder, classes, imgsz, augment=None, train=False)
    loader = build_dataloader(data, 8, workers=0, shuffle=False, seed=0)
    feats = [torch.zeros(1, 1, imgsz // s, imgsz // s) for s in (8, 16, 32)]
    points, _ = make_anchor_points(feats, (8, 16, 32))
    counts: dict[str, list[int]] = defaultdict(list)
    for batch in loader:
        t = batch.targets
        pairs = candidate_pairs(points, t)
        # the assigner gives a GT with no anchor inside its nearest anchor: that one is not inside
        inside = points_in_obb(points[pairs.anchor], t.boxes[pairs.batch, pairs.gt])
        per = torch.zeros(t.boxes.shape[:2], dtype=torch.long)
        per.index_put_(
            (pairs.batch[inside], pairs.gt[inside]), torch.ones_like(pairs.gt[inside]), accumulate=True
        )
        for b, j in t.mask.nonzero().tolist():
            counts[classes[int(t.labels[b, j])]].append(int(per[b, j]))
    return counts


def describe(xs: list[int], topk: int) -> str:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    n = len(xs)
    return (
        f"{n:6d} objects  mean {statistics.fmean(xs):6.1f}  median {statistics.median(xs):5.0f}  "
        f"q1 {q[0]:4.0f}  q3 {q[2]:5.0f}  <3: {100 * sum(x < 3 for x in xs) / n:5.1f} %  "
        f">{topk}: {100 * sum(x > topk for x in xs) / n:5.1f} %  "
        f"none: {100 * sum(x == 0 for x in xs) / n:5.1f} %"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a DOTA folder (images/, labelTxt/)")
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--topk", type=int, default=13)
    ap.add_argument(
        "--classes",
        default="plane,small-vehicle,large-vehicle,ship,tennis-court,basketball-court,storage-tank,harbor,"
        "helicopter",
    )
    args = ap.parse_args()
    classes = resolve_classes(args.classes)
    counts = candidate_counts(args.folder, classes, args.imgsz)
    every = [x for xs in counts.values() for x in xs]
    print(f"{args.folder} at {args.imgsz} px, candidates = anchor points inside the rotated box")
    print(f"{'all':18s} {describe(every, args.topk)}")
    for name in classes:
        if counts.get(name):
            print(f"{name:18s} {describe(counts[name], args.topk)}")


if __name__ == "__main__":
    main()
