"""Benchmark: the sparse rotated task-aligned assigner against a dense anchors x objects baseline.

    .venv/bin/python bench/bench_assigner.py [--objects 10 100 1000] [--batch 2] [--size 1024]
        [--repeat 3] [--threads 1] [--device cpu] [--dense-max 1000]

Scene: a ``size`` px image (1024: 21504 anchor points at strides 8/16/32), ``batch`` images, M objects per
image with DOTA-like small boxes (long side 10..80 px, aspect 1..5, random angles, centres uniform), C = 15
classes; predictions: a box per anchor around the anchor (offset ~ N(0, 4 px), long side 8..60 px, random
angle), scores uniform. topk 13, alpha 1, beta 6.

Methods, all on the same inputs, each case in a fresh subprocess (so peak memory is per case):

* ``sparse rotated_iou``: :class:`RotatedTaskAlignedAssigner` with ``overlap="rotated_iou"``: candidates
  from the (x, y) index of the anchors, exact IoU only for (anchor inside GT) pairs;
* ``sparse probiou``: the same with the default ``overlap="probiou"``;
* ``dense rotated_iou`` (the baseline, TAL as usually written, e.g. ultralytics): per image, the dense
  (M, A) point-in-box mask, the (A, M) :func:`~daik_core.ops.rotated_iou` matrix of all predicted boxes
  against all GTs (which itself prunes pairs whose enclosing boxes miss), dense metric, ``topk`` over A,
  conflicts by argmax over M. Skipped above ``--dense-max`` objects.

Prints the median time per image, the ratio dense / sparse, the peak memory of the assign call (CPU:
growth of the process's peak RSS during the call; CUDA: ``torch.cuda.max_memory_allocated``), and the
agreement of the positives (fraction of anchors with the same fg / matched GT as the dense baseline; ties
in the metric, e.g. among zero-overlap candidates, may break differently).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import Tensor

from daik_core.assigners import AssignResult, RotatedTaskAlignedAssigner, points_in_obb
from daik_core.ops import rotated_iou
from daik_core.structures.targets import Targets

NUM_CLASSES = 15
TOPK = 13


def anchor_points(size: int, device: torch.device) -> Tensor:
    pts = []
    for s in (8, 16, 32):
        c = (torch.arange(size // s, dtype=torch.float32, device=device) + 0.5) * s
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        pts.append(torch.stack((xx, yy), -1).reshape(-1, 2))
    return torch.cat(pts)


def scene(
    size: int, bsz: int, m: int, seed: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Targets]:
    g = torch.Generator().manual_seed(seed)
    points = anchor_points(size, torch.device("cpu"))
    a = points.shape[0]
    w = 10 + torch.rand(bsz, m, generator=g) * 70
    h = w / (1 + 4 * torch.rand(bsz, m, generator=g))
    centre = torch.rand(bsz, m, 2, generator=g) * size
    angle = torch.rand(bsz, m, generator=g) * math.pi
    boxes = torch.cat((centre, w[..., None], h[..., None], angle[..., None]), -1)
    labels = torch.randint(0, NUM_CLASSES, (bsz, m), generator=g)
    targets = Targets(boxes, labels, torch.ones(bsz, m, dtype=torch.bool))
    pw = 8 + torch.rand(bsz, a, generator=g) * 52
    ph = pw / (1 + 3 * torch.rand(bsz, a, generator=g))
    pc = points.expand(bsz, a, 2) + torch.randn(bsz, a, 2, generator=g) * 4
    pa = torch.rand(bsz, a, generator=g) * math.pi
    pred_boxes = torch.cat((pc, pw[..., None], ph[..., None], pa[..., None]), -1)
    scores = torch.rand(bsz, a, NUM_CLASSES, generator=g)
    return scores.to(device), pred_boxes.to(device), points.to(device), targets.to(device)


@torch.no_grad()
def dense_assign(scores: Tensor, boxes: Tensor, points: Tensor, targets: Targets) -> AssignResult:
    """TAL the dense way, one image at a time: (M, A) masks and metrics, (A, M) exact rotated IoU."""
    bsz, a, c = scores.shape
    device = scores.device
    labels_out = torch.full((bsz, a), c, dtype=torch.long, device=device)
    boxes_out = torch.zeros(bsz, a, 5, device=device)
    scores_out = torch.zeros(bsz, a, c, device=device)
    fg = torch.zeros(bsz, a, dtype=torch.bool, device=device)
    matched = torch.zeros(bsz, a, dtype=torch.long, device=device)
    metric_out = torch.zeros(bsz, a, device=device)
    for b in range(bsz):
        gt, lab = targets.boxes[b][targets.mask[b]], targets.labels[b][targets.mask[b]]
        m = gt.shape[0]
        if m == 0:
            continue
        inside = points_in_obb(points[None], gt[:, None, :])  # (M, A)
        lonely = ~inside.any(1)
        if bool(lonely.any()):  # nearest anchor for GTs without any
            d2 = (gt[lonely, None, :2] - points[None]).square().sum(-1)
            inside[lonely.nonzero().squeeze(1), d2.argmin(1)] = True
        u = rotated_iou(boxes[b], gt).T.float().clamp(0, 1) * inside  # (M, A)
        s = scores[b][:, lab].T  # (M, A)
        t = s * u.pow(6.0) * inside
        t_masked = torch.where(inside, t, torch.full_like(t, -1.0))
        top = t_masked.topk(TOPK, dim=1).indices  # (M, k)
        pos = torch.zeros_like(inside).scatter_(1, top, True) & inside
        u_pos = torch.where(pos, u, torch.full_like(u, -1.0))
        best = u_pos.argmax(0)  # (A,) GT with the largest overlap
        is_fg = pos.any(0)
        pos = torch.zeros_like(pos).scatter_(0, best[None], is_fg[None])
        t_pos, u_keep = t * pos, u * pos
        norm = (t_pos * u_keep.amax(1, keepdim=True) / (t_pos.amax(1, keepdim=True) + 1e-9)).amax(0)  # (A,)
        idx = is_fg.nonzero().squeeze(1)
        j = best[idx]
        fg[b, idx] = True
        matched[b, idx] = j
        labels_out[b, idx] = lab[j]
        boxes_out[b, idx] = gt[j]
        scores_out[b, idx, lab[j]] = norm[idx]
        metric_out[b, idx] = t[j, idx]
    return AssignResult(labels_out, boxes_out, scores_out, fg, matched, metric_out)


def worker(args: argparse.Namespace) -> None:
    """One (method, M) case in this process; prints one JSON line."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    scores, boxes, points, targets = scene(args.size, args.batch, args.m, args.seed, device)
    if args.method == "dense":

        def fn() -> AssignResult:
            return dense_assign(scores, boxes, points, targets)

    else:
        assigner = RotatedTaskAlignedAssigner(NUM_CLASSES, topk=TOPK, overlap=args.method).to(device)

        def fn() -> AssignResult:
            return assigner.assign(scores, boxes, points, targets)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        fn()  # warm-up (kernels, allocator)
        sync()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the peak so far
    times, result = [], None
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert result is not None
    torch.save(
        {"fg": result.fg_mask.cpu(), "matched": result.matched_gt.cpu()}, f"{args.out}.{args.method}.pt"
    )
    print(
        json.dumps(
            {
                "time_per_image": statistics.median(times) / args.batch,
                "peak_mb": peak_mb,
                "positives": int(result.fg_mask.sum()),
            }
        )
    )


def run_case(args: argparse.Namespace, method: str, m: int, out: str) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--m",
        str(m),
        "--out",
        out,
        *("--size", str(args.size), "--batch", str(args.batch), "--seed", str(args.seed)),
        *("--threads", str(args.threads), "--device", args.device),
        *("--repeat", str(1 if method == "dense" else args.repeat)),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{method} M={m} failed:\n{proc.stderr}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def agreement(out: str, method: str) -> float:
    a, b = torch.load(f"{out}.{method}.pt"), torch.load(f"{out}.dense.pt")
    same = (a["fg"] == b["fg"]) & (~a["fg"] | (a["matched"] == b["matched"]))
    return float(same.float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the sparse assigner (median)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dense-max", type=int, default=1000, help="skip the dense baseline above this M")
    parser.add_argument("--worker", choices=["dense", "rotated_iou", "probiou"], help=argparse.SUPPRESS)
    parser.add_argument("--m", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="/tmp/bench_assigner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.method = args.worker
        worker(args)
        return

    a = anchor_points(args.size, torch.device("cpu")).shape[0]
    print(
        f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s); {args.size} px image, "
        f"{a} anchors, batch {args.batch}; sparse: median of {args.repeat}, dense: one run"
    )
    header = (
        f"{'M':>6} {'method':<20}{'ms / image':>12}{'vs dense':>10}{'peak MB':>10}{'positives':>11}"
        f"{'agree':>9}"
    )
    print(header)
    for m in args.objects:
        dense = run_case(args, "dense", m, args.out) if m <= args.dense_max else None
        if dense is not None:
            print(
                f"{m:>6} {'dense rotated_iou':<20}{1e3 * dense['time_per_image']:>12.1f}{'1.0x':>10}"
                f"{dense['peak_mb']:>10.1f}{int(dense['positives']):>11}{'ref':>9}"
            )
        for method in ("rotated_iou", "probiou"):
            r = run_case(args, method, m, args.out)
            ratio = f"{dense['time_per_image'] / r['time_per_image']:.1f}x" if dense else "-"
            agree = f"{100 * agreement(args.out, method):.2f}%" if dense else "-"
            print(
                f"{m:>6} {'sparse ' + method:<20}{1e3 * r['time_per_image']:>12.1f}{ratio:>10}"
                f"{r['peak_mb']:>10.1f}{int(r['positives']):>11}{agree:>9}"
            )


if __name__ == "__main__":
    main()
