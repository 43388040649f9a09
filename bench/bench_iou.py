"""Benchmark: exact pairwise rotated IoU (daik_core.ops.rotated_iou) against shapely 2, in the same run.

    .venv/bin/python bench/bench_iou.py [--n 2000] [--dense-n 500] [--dense-span 100] [--seed 0] [--threads 1]

Cases (boxes DOTA-like: long side 8..200 px, aspect 1..6, random angles):
  * sparse: n x n boxes with centres uniform in a 1024 x 1024 image (pruning skips most pairs);
  * dense:  dense-n x dense-n boxes with centres in a 100 x 100 area (most pairs overlap: pruning barely
    helps; small boxes still miss each other).

Baselines, over the same pairs and the same float64 corner polygons:
  * shapely, all pairs: vectorised ``shapely.intersection`` / ``shapely.area`` broadcast over the pair grid
    (row blocks, to bound memory);
  * shapely + STRtree: the tree finds the pairs whose envelopes intersect, then the same vectorised calls
    on those pairs only (the strongest shapely baseline; reported for honesty).

Prints wall times, speed-ups and the largest |IoU difference| to shapely (must be <= 1e-5).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import shapely
import torch

from daik_core.ops import rotated_iou
from daik_core.structures import obb_to_poly


def dota_like_boxes(n: int, span: float, offset: float, g: torch.Generator) -> torch.Tensor:
    centre = offset + torch.rand(n, 2, generator=g, dtype=torch.float64) * span
    w = 8 + torch.rand(n, generator=g, dtype=torch.float64) * 192
    h = w / (1 + 5 * torch.rand(n, generator=g, dtype=torch.float64))
    angle = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    return torch.cat((centre, w[:, None], h[:, None], angle[:, None]), dim=1)


def shapely_all_pairs(p1: np.ndarray, p2: np.ndarray, block: int = 100) -> np.ndarray:
    a, b = shapely.polygons(p1), shapely.polygons(p2)
    area_a, area_b = shapely.area(a), shapely.area(b)
    out = np.empty((len(a), len(b)))
    for s in range(0, len(a), block):
        inter = shapely.area(shapely.intersection(a[s : s + block, None], b[None, :]))
        out[s : s + block] = inter / (area_a[s : s + block, None] + area_b[None, :] - inter)
    return out


def shapely_strtree(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    a, b = shapely.polygons(p1), shapely.polygons(p2)
    i, j = shapely.STRtree(b).query(a)  # pairs with intersecting envelopes
    inter = shapely.area(shapely.intersection(a[i], b[j]))
    out = np.zeros((len(a), len(b)))
    out[i, j] = inter / (shapely.area(a[i]) + shapely.area(b[j]) - inter)
    return out


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def run_case(name: str, b1: torch.Tensor, b2: torch.Tensor, repeat: int) -> list[str]:
    p1 = obb_to_poly(b1).reshape(-1, 4, 2).numpy()
    p2 = obb_to_poly(b2).reshape(-1, 4, 2).numpy()
    t_all, ref = timed(lambda: shapely_all_pairs(p1, p2), 1)
    t_tree, ref_tree = timed(lambda: shapely_strtree(p1, p2), 1)
    rotated_iou(b1[:50], b2[:50])  # warm-up
    t64, out64 = timed(lambda: rotated_iou(b1, b2), repeat)
    b1f, b2f = b1.float(), b2.float()
    t32, out32 = timed(lambda: rotated_iou(b1f, b2f), repeat)
    assert isinstance(ref, np.ndarray) and isinstance(ref_tree, np.ndarray)
    assert isinstance(out64, torch.Tensor) and isinstance(out32, torch.Tensor)
    diff64 = float(np.abs(out64.numpy() - ref).max())
    diff32 = float(np.abs(out32.double().numpy() - ref).max())
    diff_tree = float(np.abs(ref_tree - ref).max())
    if diff64 > 1e-5:
        raise SystemExit(f"{name}: max |IoU - shapely| = {diff64:.2e} > 1e-5")
    pairs = ref.size
    overlapping = int((ref > 0).sum())
    return [
        f"{name}: {b1.shape[0]} x {b2.shape[0]} = {pairs} pairs, {overlapping} overlapping "
        f"({100 * overlapping / pairs:.1f}%)",
        f"  {'method':<34}{'time (s)':>10}{'vs shapely all pairs':>22}{'max |diff|':>12}",
        f"  {'shapely 2, all pairs (vectorised)':<34}{t_all:>10.3f}{'1.0x':>22}{'ref':>12}",
        f"  {'shapely 2 + STRtree pruning':<34}{t_tree:>10.3f}{t_all / t_tree:>21.1f}x{diff_tree:>12.1e}",
        f"  {'daik rotated_iou, float64':<34}{t64:>10.3f}{t_all / t64:>21.1f}x{diff64:>12.1e}",
        f"  {'daik rotated_iou, float32':<34}{t32:>10.3f}{t_all / t32:>21.1f}x{diff32:>12.1e}",
        f"  daik float64 vs shapely + STRtree: {t_tree / t64:.1f}x",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="boxes per side, sparse case (default 2000)")
    parser.add_argument("--dense-n", type=int, default=500, help="boxes per side, dense case (default 500)")
    parser.add_argument("--dense-span", type=float, default=100.0, help="side of the dense centres' square")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the daik op (median reported)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1, as shapely)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), shapely {shapely.__version__} "
        f"(GEOS {shapely.geos_version_string}), seed {args.seed}; shapely times are one run, daik the median "
        f"of {args.repeat}"
    )
    sparse = dota_like_boxes(args.n, 1024.0, 0.0, g), dota_like_boxes(args.n, 1024.0, 0.0, g)
    offset = 512.0 - args.dense_span / 2
    dense = (
        dota_like_boxes(args.dense_n, args.dense_span, offset, g),
        dota_like_boxes(args.dense_n, args.dense_span, offset, g),
    )
    for line in run_case("sparse (1024 x 1024 image)", *sparse, args.repeat):
        print(line)
    span = f"{args.dense_span:g}"
    for line in run_case(f"dense (centres in {span} x {span})", *dense, args.repeat):
        print(line)


if __name__ == "__main__":
    main()
