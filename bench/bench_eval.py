"""Benchmark: the vectorised DOTA Task1 evaluator against a per-detection loop of the same algorithm.

Two scenes (``--case``):

``rects`` (default)
    500 images of rotated boxes in 5 classes (scattered objects and dense parked-car-like clusters,
    10 % difficult), detections = jittered copies of the objects (0-3 each, a few of another class) plus
    random false positives, about 50k in all. The loop uses :func:`daik_core.ops.poly_iou_aligned`
    (float64, called with the detection first), whose values the evaluator's numpy IoU gives bit for
    bit, and the same AP integration, so their APs must agree exactly; the loop differs only in
    matching one detection at a time, like the devkit. ``--shapely`` also times the loop with shapely's
    polygon IoU (the devkit's ``polyiou`` stand-in).
``quads``
    A crowded scene of general quadrilaterals, as DOTA's ground truth is (four clicked corners, not a
    rectangle): 240 images x 600 objects (a third scattered, the rest in parking-lot grids of small
    vehicles), every corner of every object and detection moved independently, 1 % of the objects
    non-convex; about 215k detections. In process: ``evaluate_dota`` against the per-detection loop with
    shapely's polygon IoU. ``--cli`` adds the end-to-end measurement from the command line: the scene is
    written to a temporary folder (labelTxt and Task1 files) and ``daik eval dota`` is timed as a
    subprocess against ``bench/devkit_style_eval.py`` (the devkit's per-detection loop and file parsing,
    shapely IoU), both from the command line; their APs must agree to 1e-12.

    .venv/bin/python bench/bench_eval.py [--images 500] [--seed 0] [--shapely] [--threads N]
    .venv/bin/python bench/bench_eval.py --case quads [--images 240] [--objects 600] [--cli] [--threads 1]

On a shared machine, torch's intra-op threads stall when another process holds a core (each op waits
for a descheduled thread); ``--threads 1`` gives stable timings there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from daik_core.data.dota import DotaLabel, DotaObject, Task1Detections, write_label_file, write_task1_dir
from daik_core.eval import IOU_THRS_50_95, DotaResult, average_precision, evaluate_dota, precision_recall
from daik_core.ops import poly_iou_aligned

CLASSES = ("plane", "ship", "small-vehicle", "large-vehicle", "storage-tank")
IouFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # det (8,), objects (K, 8) -> (K,)


def rect_polys(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray, a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    ux, uy, vx, vy = c * w / 2, s * w / 2, -s * h / 2, c * h / 2
    return np.stack(
        [
            cx - ux - vx,
            cy - uy - vy,
            cx + ux - vx,
            cy + uy - vy,
            cx + ux + vx,
            cy + uy + vy,
            cx - ux + vx,
            cy - uy + vy,
        ],
        axis=1,
    )


def make_scene(
    rng: np.random.Generator, num_images: int, size: float = 1024.0
) -> tuple[dict[str, DotaLabel], dict[str, Task1Detections]]:
    gt: dict[str, DotaLabel] = {}
    rows: dict[str, tuple[list[str], list[np.ndarray]]] = {c: ([], []) for c in CLASSES}
    for i in range(num_images):
        image_id = f"P{i:04d}"
        n_free = int(rng.integers(5, 40))
        cx, cy = rng.uniform(0, size, n_free), rng.uniform(0, size, n_free)
        w, h = rng.uniform(15, 120, n_free), rng.uniform(8, 60, n_free)
        a = rng.uniform(0, math.pi, n_free)
        cls = rng.integers(0, len(CLASSES), n_free)
        # a parking-lot cluster: a row of similar small vehicles side by side
        n_row = int(rng.integers(0, 30))
        x0, y0, ang = rng.uniform(100, size - 100), rng.uniform(100, size - 100), rng.uniform(0, math.pi)
        k = np.arange(n_row)
        cx = np.r_[cx, x0 + k * 11 * math.cos(ang + math.pi / 2)]
        cy = np.r_[cy, y0 + k * 11 * math.sin(ang + math.pi / 2)]
        w, h = np.r_[w, rng.uniform(18, 24, n_row)], np.r_[h, rng.uniform(8, 10, n_row)]
        a = np.r_[a, ang + rng.normal(0, 0.05, n_row)]
        cls = np.r_[cls, np.full(n_row, CLASSES.index("small-vehicle"))]
        polys = rect_polys(cx, cy, w, h, a)
        difficult = (rng.random(len(polys)) < 0.1).astype(int)
        gt[image_id] = DotaLabel(
            [
                DotaObject(tuple(p), CLASSES[c], d)
                for p, c, d in zip(polys.tolist(), cls, difficult, strict=True)
            ]
        )
        # detections: jittered copies, a few with the wrong class, then false positives
        copies = rng.choice([0, 1, 1, 2, 3], size=len(polys))
        src = np.repeat(np.arange(len(polys)), copies)
        sigma = rng.uniform(0, 0.2, len(src))
        det_polys = rect_polys(
            cx[src] + rng.normal(0, 1, len(src)) * sigma * w[src] / 2,
            cy[src] + rng.normal(0, 1, len(src)) * sigma * h[src] / 2,
            w[src] * np.exp(rng.normal(0, 1, len(src)) * sigma),
            h[src] * np.exp(rng.normal(0, 1, len(src)) * sigma),
            a[src] + rng.normal(0, 1, len(src)) * sigma,
        )
        det_cls = np.where(rng.random(len(src)) < 0.95, cls[src], rng.integers(0, len(CLASSES), len(src)))
        n_fp = int(rng.integers(20, 80))
        fp_polys = rect_polys(
            rng.uniform(0, size, n_fp),
            rng.uniform(0, size, n_fp),
            rng.uniform(15, 120, n_fp),
            rng.uniform(8, 60, n_fp),
            rng.uniform(0, math.pi, n_fp),
        )
        for p, c in zip(
            np.r_[det_polys, fp_polys], np.r_[det_cls, rng.integers(0, len(CLASSES), n_fp)], strict=True
        ):
            rows[CLASSES[c]][0].append(image_id)
            rows[CLASSES[c]][1].append(p)
    detections = {}
    for name, (ids, polys_l) in rows.items():
        detections[name] = Task1Detections(ids, rng.random(len(ids)), np.array(polys_l, dtype=np.float64))
    return gt, detections


def move_corners(rng: np.random.Generator, polys: np.ndarray, frac: float) -> np.ndarray:
    """Every corner moved independently by a normal offset of ``frac`` times the quad's shorter side; a
    quad that would not be a simple polygon keeps its corners."""
    import shapely

    pts = polys.reshape(-1, 4, 2)
    side = np.minimum(np.hypot(*(pts[:, 1] - pts[:, 0]).T), np.hypot(*(pts[:, 2] - pts[:, 1]).T))
    moved = pts + rng.normal(0.0, 1.0, pts.shape) * frac * side[:, None, None]
    simple = shapely.is_valid(shapely.polygons(moved))
    return np.where(simple[:, None, None], moved, pts).reshape(-1, 8)


def make_quad_scene(
    rng: np.random.Generator, num_images: int, per_image: int = 600, size: float = 1024.0
) -> tuple[dict[str, DotaLabel], dict[str, Task1Detections]]:
    """The crowded scene of general quadrilaterals (module docstring)."""
    gt: dict[str, DotaLabel] = {}
    rows: dict[str, tuple[list[str], list[np.ndarray]]] = {c: ([], []) for c in CLASSES}
    vehicle = CLASSES.index("small-vehicle")
    for i in range(num_images):
        image_id = f"Q{i:04d}"
        n_free = per_image // 3
        cx, cy = rng.uniform(0, size, n_free), rng.uniform(0, size, n_free)
        w, h = rng.uniform(15, 90, n_free), rng.uniform(8, 45, n_free)
        a = rng.uniform(0, math.pi, n_free)
        cls = rng.integers(0, len(CLASSES), n_free)
        while len(cx) < per_image:  # parking lots: rows x columns of small vehicles, 11 px apart
            n_rows, n_cols = int(rng.integers(2, 6)), int(rng.integers(5, 25))
            k = min(n_rows * n_cols, per_image - len(cx))
            x0, y0, ang = rng.uniform(50, size - 50), rng.uniform(50, size - 50), rng.uniform(0, math.pi)
            row, col = np.divmod(np.arange(k), n_cols)
            ux, uy = math.cos(ang), math.sin(ang)
            cx = np.r_[cx, x0 + row * 26 * ux - col * 11 * uy]
            cy = np.r_[cy, y0 + row * 26 * uy + col * 11 * ux]
            w, h = np.r_[w, rng.uniform(18, 24, k)], np.r_[h, rng.uniform(8, 10, k)]
            a = np.r_[a, ang + rng.normal(0, 0.05, k)]
            cls = np.r_[cls, np.full(k, vehicle)]
        polys = move_corners(rng, rect_polys(cx, cy, w, h, a), 0.06)
        dart = rng.random(per_image) < 0.01  # non-convex: corner 0 pushed past the diagonal 1-3
        pts = polys.reshape(-1, 4, 2)
        mid = (pts[dart, 1] + pts[dart, 3]) / 2
        pts[dart, 0] = mid + (mid - pts[dart, 0]) * 0.3
        polys = np.round(polys, 1)  # labelTxt precision
        difficult = (rng.random(per_image) < 0.1).astype(int)
        gt[image_id] = DotaLabel(
            [
                DotaObject(tuple(p), CLASSES[c], d)
                for p, c, d in zip(polys.tolist(), cls.tolist(), difficult.tolist(), strict=True)
            ]
        )
        copies = rng.choice([0, 1, 1, 2, 3], size=per_image)
        src = np.repeat(np.arange(per_image), copies)
        sigma = rng.uniform(0, 0.2, len(src))
        det_polys = rect_polys(
            cx[src] + rng.normal(0, 1, len(src)) * sigma * w[src] / 2,
            cy[src] + rng.normal(0, 1, len(src)) * sigma * h[src] / 2,
            w[src] * np.exp(rng.normal(0, 1, len(src)) * sigma),
            h[src] * np.exp(rng.normal(0, 1, len(src)) * sigma),
            a[src] + rng.normal(0, 1, len(src)) * sigma,
        )
        det_cls = np.where(rng.random(len(src)) < 0.95, cls[src], rng.integers(0, len(CLASSES), len(src)))
        n_fp = int(rng.integers(20, 80))
        fp_polys = rect_polys(
            rng.uniform(0, size, n_fp),
            rng.uniform(0, size, n_fp),
            rng.uniform(15, 90, n_fp),
            rng.uniform(8, 45, n_fp),
            rng.uniform(0, math.pi, n_fp),
        )
        all_polys = np.round(move_corners(rng, np.r_[det_polys, fp_polys], 0.04), 2)  # Task1 precision
        for p, c in zip(all_polys, np.r_[det_cls, rng.integers(0, len(CLASSES), n_fp)], strict=True):
            rows[CLASSES[c]][0].append(image_id)
            rows[CLASSES[c]][1].append(p)
    detections = {}
    for name, (ids, polys_l) in rows.items():
        # scores with 6 significant digits, as Task1 files hold them
        scores = np.array([float(f"{v:.6g}") for v in rng.random(len(ids))])
        detections[name] = Task1Detections(ids, scores, np.array(polys_l, dtype=np.float64).reshape(-1, 8))
    return gt, detections


def ops_iou(det: np.ndarray, objects: np.ndarray) -> np.ndarray:
    d = torch.from_numpy(np.repeat(det[None], len(objects), axis=0))
    return poly_iou_aligned(d, torch.from_numpy(np.ascontiguousarray(objects))).numpy()


def shapely_iou(det: np.ndarray, objects: np.ndarray) -> np.ndarray:
    import shapely

    a = shapely.polygons(np.broadcast_to(det, objects.shape).reshape(-1, 4, 2))
    b = shapely.polygons(objects.reshape(-1, 4, 2))
    inter = shapely.area(shapely.intersection(a, b))
    union = shapely.area(a) + shapely.area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def loop_evaluate(
    gt: Mapping[str, DotaLabel],
    detections: Mapping[str, Task1Detections],
    classes: Sequence[str],
    iou_thr: float,
    metric: str,
    iou_fn: IouFn,
) -> dict[str, float | None]:
    """The devkit's voc_eval, one detection at a time (hbb pre-filter with +1, then polygon IoU)."""
    aps: dict[str, float | None] = {}
    for name in classes:
        objects: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        npos = 0
        for image_id, label in gt.items():
            objs = [o for o in label.objects if o.name == name]
            polys = np.array([o.poly for o in objs], dtype=np.float64).reshape(-1, 8)
            hard = np.array([o.difficult != 0 for o in objs], dtype=bool)
            hbb = np.stack(
                [polys[:, 0::2].min(1), polys[:, 1::2].min(1), polys[:, 0::2].max(1), polys[:, 1::2].max(1)],
                1,
            )
            objects[image_id] = (polys, hbb, hard, np.zeros(len(objs), dtype=bool))
            npos += int((~hard).sum())
        det = detections.get(name, Task1Detections.empty())
        order = np.argsort(-det.scores, kind="stable")
        tp, fp = np.zeros(len(order)), np.zeros(len(order))
        for k, d in enumerate(order.tolist()):
            entry = objects.get(det.image_ids[d])
            bb = det.polys[d]
            ovmax, jmax = -math.inf, -1
            if entry is not None and len(entry[0]):
                polys, hbb, _, _ = entry
                x1, y1, x2, y2 = bb[0::2].min(), bb[1::2].min(), bb[0::2].max(), bb[1::2].max()
                iw = np.minimum(hbb[:, 2], x2) - np.maximum(hbb[:, 0], x1) + 1.0
                ih = np.minimum(hbb[:, 3], y2) - np.maximum(hbb[:, 1], y1) + 1.0
                kept = np.flatnonzero((iw > 0) & (ih > 0))
                if len(kept):
                    ious = iou_fn(bb, polys[kept])
                    j = int(np.argmax(ious))
                    ovmax, jmax = float(ious[j]), int(kept[j])
            if ovmax > iou_thr:
                assert entry is not None
                if not entry[2][jmax]:
                    if entry[3][jmax]:
                        fp[k] = 1.0
                    else:
                        tp[k] = 1.0
                        entry[3][jmax] = True
            else:
                fp[k] = 1.0
        aps[name] = None if npos == 0 else average_precision(*precision_recall(tp, fp, npos), metric)
    return aps


def max_ap_diff(a: Mapping[str, float | None], b: Mapping[str, float | None]) -> float:
    diff = 0.0
    for name in a:
        x, y = a[name], b[name]
        assert (x is None) == (y is None), name
        if x is not None and y is not None:
            diff = max(diff, abs(x - y))
    return diff


class Timing(NamedTuple):
    """Wall-clock and CPU seconds (this process's, or its finished children's for a command)."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:8.3f} s (cpu {self.cpu:7.3f} s)"

    def ratio(self, fast: Timing) -> str:
        return f"ratio {self.wall / fast.wall:6.1f}x (cpu {self.cpu / fast.cpu:.1f}x)"


def measure(fn: Callable[[], object]) -> tuple[Timing, object]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return Timing(time.perf_counter() - t0, time.process_time() - c0), out


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[Timing, object]:
    """The shortest of ``repeats`` runs (wall and CPU separately: the machine may be shared) and the last
    result."""
    runs = [measure(fn) for _ in range(repeats)]
    return Timing(min(t.wall for t, _ in runs), min(t.cpu for t, _ in runs)), runs[-1][1]


def run_rects(args: argparse.Namespace) -> None:
    gt, dets = make_scene(np.random.default_rng(args.seed), args.images or 500)
    n_obj = sum(len(label.objects) for label in gt.values())
    n_det = sum(len(d) for d in dets.values())
    print(f"scene: {len(gt)} images, {n_obj} objects, {n_det} detections, {len(CLASSES)} classes")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; vectorised: best of {args.repeats}")

    evaluate_dota(gt, dets, CLASSES)  # warm-up
    t_fast, fast = best_of(args.repeats, lambda: evaluate_dota(gt, dets, CLASSES, map_50_95=False))
    t_range, full = best_of(args.repeats, lambda: evaluate_dota(gt, dets, CLASSES, map_50_95=True))
    assert isinstance(fast, DotaResult) and isinstance(full, DotaResult)
    print(f"evaluate_dota, mAP50:                  {t_fast}   mAP50 = {fast.map:.6f}")
    print(f"evaluate_dota, mAP50 + mAP50:95:       {t_range}   mAP50:95 = {full.map_50_95:.6f}")

    t_slow, slow = measure(lambda: loop_evaluate(gt, dets, CLASSES, 0.5, "voc07", ops_iou))
    assert isinstance(slow, dict)
    diff = max_ap_diff(fast.per_class, slow)
    print(f"per-detection loop, same ops IoU:      {t_slow}   {t_slow.ratio(t_fast)}")
    print(f"max |AP difference| vs the loop:       {diff:.3g}")
    assert diff == 0.0, diff

    # other thresholds and the all-point metric, on the first 100 images (the loop is slow)
    sub_gt = dict(list(gt.items())[:100])
    sub_dets = {
        name: Task1Detections([d.image_ids[i] for i in keep], d.scores[keep], d.polys[keep])
        for name, d in dets.items()
        for keep in [np.array([i for i, image in enumerate(d.image_ids) if image in sub_gt], dtype=np.int64)]
    }
    for thr in (0.3, float(IOU_THRS_50_95[4]), float(IOU_THRS_50_95[9])):
        check = evaluate_dota(sub_gt, sub_dets, CLASSES, iou_thr=thr, metric="area", map_50_95=False)
        ref = loop_evaluate(sub_gt, sub_dets, CLASSES, thr, "area", ops_iou)
        d = max_ap_diff(check.per_class, ref)
        print(f"  100 images, iou_thr={thr!r:<20} area: max |AP difference| {d:.3g}")
        assert d == 0.0, d

    if args.shapely:
        t_shp, ref = measure(lambda: loop_evaluate(gt, dets, CLASSES, 0.5, "voc07", shapely_iou))
        assert isinstance(ref, dict)
        d = max_ap_diff(fast.per_class, ref)
        print(f"per-detection loop, shapely IoU:       {t_shp}   {t_shp.ratio(t_fast)}")
        print(f"max |AP difference| vs shapely loop:   {d:.3g}")
        assert d < 1e-12, d


def daik_command() -> list[str]:
    """``daik`` of this Python's environment (``python -m daik_core.cli`` if the script is not there)."""
    script = Path(sys.executable).with_name("daik")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "daik_core.cli"]


def timed_run(command: list[str], env: Mapping[str, str]) -> Timing:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(command, check=True, env=dict(env), stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Timing(wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))


def run_quads(args: argparse.Namespace) -> None:
    import devkit_style_eval as devkit  # bench/, next to this script

    t0 = time.perf_counter()
    gt, dets = make_quad_scene(np.random.default_rng(args.seed), args.images or 240, args.objects)
    n_obj = sum(len(label.objects) for label in gt.values())
    n_det = sum(len(d) for d in dets.values())
    import shapely

    shapes = shapely.polygons(
        np.array([o.poly for label in gt.values() for o in label.objects]).reshape(-1, 4, 2)
    )
    non_convex = shapely.area(shapely.convex_hull(shapes)) > shapely.area(shapes) * (1 + 1e-9)
    print(
        f"scene: {len(gt)} images x {args.objects} objects, general quadrilaterals ({n_obj} objects, "
        f"{non_convex.mean():.1%} non-convex), {n_det} detections, {len(CLASSES)} classes "
        f"({time.perf_counter() - t0:.1f} s to generate)"
    )
    print(f"vectorised: best of {args.repeats}; loops: one run each")

    # in process: evaluate_dota against the devkit-style loop, both on the scene in memory
    evaluate_dota(gt, dets, CLASSES)  # warm-up
    t_fast, fast = best_of(args.repeats, lambda: evaluate_dota(gt, dets, CLASSES, map_50_95=False))
    t_range, full = best_of(args.repeats, lambda: evaluate_dota(gt, dets, CLASSES, map_50_95=True))
    assert isinstance(fast, DotaResult) and isinstance(full, DotaResult)
    print(f"evaluate_dota, mAP50:                  {t_fast}   mAP50 = {fast.map:.6f}")
    print(f"evaluate_dota, mAP50 + mAP50:95:       {t_range}   mAP50:95 = {full.map_50_95:.6f}")
    labels = {
        image_id: [(o.name, o.difficult, list(o.poly)) for o in label.objects]
        for image_id, label in gt.items()
    }
    loop_dets = {name: (d.image_ids, d.scores, d.polys) for name, d in dets.items()}
    t_loop, ref = measure(lambda: devkit.evaluate(labels, loop_dets, list(CLASSES), 0.5, "voc07"))
    assert isinstance(ref, dict)
    d = max_ap_diff(fast.per_class, ref)
    print(f"per-detection loop, shapely IoU:       {t_loop}   {t_loop.ratio(t_fast)}, in process")
    print(f"max |AP difference| vs the loop:       {d:.3g}")
    assert d < 1e-12, d
    if not args.cli:
        return

    # end to end: files on disk, both from the command line
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads or 1)}
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        ann, det = Path(tmp) / "labelTxt", Path(tmp) / "task1"
        for image_id, label in gt.items():
            write_label_file(ann / f"{image_id}.txt", label)
        det.mkdir()
        write_task1_dir(det, dets)
        classes = ",".join(CLASSES)
        daik = [*daik_command(), "eval", "dota", "--ann-dir", str(ann), "--det-dir", str(det)]
        daik += ["--classes", classes, "--json", str(Path(tmp) / "daik.json")]
        loop = [sys.executable, str(Path(__file__).with_name("devkit_style_eval.py")), str(ann), str(det)]
        loop += ["--classes", classes, "--json", str(Path(tmp) / "loop.json")]
        runs = [timed_run(daik, env) for _ in range(args.repeats)]
        t_cli = Timing(min(t.wall for t in runs), min(t.cpu for t in runs))
        t_cli_loop = timed_run(loop, env)
        got = json.loads((Path(tmp) / "daik.json").read_text())["per_class"]
        want = json.loads((Path(tmp) / "loop.json").read_text())["per_class"]
    d = max_ap_diff(got, want)
    print(f"daik eval dota (command line):         {t_cli}   mAP50 + mAP50:95, from the files")
    print(f"devkit_style_eval.py (command line):   {t_cli_loop}   {t_cli_loop.ratio(t_cli)}, end to end")
    print(f"max |AP difference| between the two:   {d:.3g}")
    assert d < 1e-12, d


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=("rects", "quads"), default="rects", help="scene (docstring)")
    parser.add_argument("--images", type=int, default=None, help="images (rects: 500, quads: 240)")
    parser.add_argument("--objects", type=int, default=600, help="objects per image (quads)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="runs of the vectorised evaluator (best kept)")
    parser.add_argument("--shapely", action="store_true", help="rects: also time the loop with shapely IoU")
    parser.add_argument("--cli", action="store_true", help="quads: also time both from the command line")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.case == "rects":
        run_rects(args)
    else:
        run_quads(args)


if __name__ == "__main__":
    main()
