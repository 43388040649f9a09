"""evaluate_dota on crowded scenes of general quadrilaterals: identical to the per-detection devkit loop
that uses the exact polygon IoU of daik_core.ops (what the evaluator computed before it went torch-free),
whatever the batches, bands and coordinates; the IoU bound that skips pairs is never below the IoU; and
``daik eval dota`` never imports torch."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from daik_core.data.dota import (
    DotaLabel,
    DotaObject,
    LabelArrays,
    Task1Detections,
    write_label_file,
    write_task1_dir,
)
from daik_core.eval import IOU_THRS_50_95, average_precision, evaluate_dota, precision_recall
from daik_core.eval import dota as dota_eval
from daik_core.eval._quad_iou import prepare_quads, quad_pair_iou
from daik_core.ops import poly_iou_aligned
from tests.core.eval.devkit_reference import devkit_eval_class

CLASSES = ("plane", "ship", "small-vehicle")
pytestmark = pytest.mark.filterwarnings("ignore::daik_core.eval.DotaEvalWarning")


_TORCH_IOU_CACHE: dict[bytes, np.ndarray] = {}


def torch_iou(det: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """The torch op, detection first (what the evaluator used before); cached, as the reference loop asks
    for the same pairs again at every threshold."""
    det = np.asarray(det, dtype=np.float64)
    objects = np.ascontiguousarray(objects, dtype=np.float64)
    key = det.tobytes() + objects.tobytes()
    if key not in _TORCH_IOU_CACHE:
        with torch.inference_mode():
            d = torch.from_numpy(np.repeat(det[None], len(objects), axis=0))
            _TORCH_IOU_CACHE[key] = poly_iou_aligned(d, torch.from_numpy(objects)).numpy()
    return _TORCH_IOU_CACHE[key]


def moved_rects(rng: np.random.Generator, cx: np.ndarray, cy: np.ndarray, sigma: float) -> np.ndarray:
    n = len(cx)
    w, h, a = rng.uniform(6, 30, n), rng.uniform(3, 12, n), rng.uniform(0, math.pi, n)
    c, s = np.cos(a), np.sin(a)
    lx = np.array([-1.0, 1.0, 1.0, -1.0])[None] * w[:, None] / 2
    ly = np.array([-1.0, -1.0, 1.0, 1.0])[None] * h[:, None] / 2
    x, y = cx[:, None] + c[:, None] * lx - s[:, None] * ly, cy[:, None] + s[:, None] * lx + c[:, None] * ly
    pts = np.stack((x, y), axis=2) + rng.normal(0, sigma, (n, 4, 2))
    return pts.reshape(n, 8)


def crowded_quads(
    rng: np.random.Generator, num_images: int = 3, per_image: int = 40
) -> tuple[dict[str, DotaLabel], dict[str, Task1Detections]]:
    """Crowded images of general quads (every corner moved; some non-convex, some bow-ties, some repeated
    objects), detections that are moved copies (some exact copies), other-class detections and false
    positives; scores with ties."""
    gt: dict[str, DotaLabel] = {}
    rows: dict[str, list[tuple[str, np.ndarray]]] = {c: [] for c in CLASSES}
    for i in range(num_images):
        image_id = f"I{i}"
        cx, cy = rng.uniform(0, 80, per_image), rng.uniform(0, 80, per_image)
        polys = moved_rects(rng, cx, cy, 0.8)
        pts = polys.reshape(-1, 4, 2)
        kind = rng.random(per_image)
        dart = kind < 0.08  # corner 0 pushed past the diagonal 1-3
        mid = (pts[dart, 1] + pts[dart, 3]) / 2
        pts[dart, 0] = mid + (mid - pts[dart, 0]) * 0.3
        bow = (kind > 0.08) & (kind < 0.11)  # corners 1 and 2 swapped
        pts[bow] = pts[bow][:, [0, 2, 1, 3]]
        polys = np.round(polys, 1)
        names = [CLASSES[int(k)] for k in rng.integers(0, len(CLASSES), per_image)]
        objects = [
            DotaObject(tuple(p), n, int(d))
            for p, n, d in zip(polys.tolist(), names, rng.choice([0, 0, 0, 1, 2], per_image), strict=True)
        ]
        for k in rng.choice(per_image, 2, replace=False):  # repeated annotations: IoU ties between objects
            objects.append(DotaObject(objects[k].poly, objects[k].name, 0))
        gt[image_id] = DotaLabel(objects)
        for obj in objects:
            for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
                p = np.array(obj.poly)
                if rng.random() > 0.1:  # else an exact copy
                    p = p + rng.normal(0, rng.uniform(0.1, 3.0), 8)
                name = obj.name if rng.random() < 0.9 else CLASSES[int(rng.integers(len(CLASSES)))]
                rows[name].append((image_id, np.round(p, 2)))
        fp = moved_rects(rng, rng.uniform(0, 80, 8), rng.uniform(0, 80, 8), 0.5)
        for p in fp:
            rows[CLASSES[int(rng.integers(len(CLASSES)))]].append((image_id, np.round(p, 2)))
    detections = {}
    for name, rs in rows.items():
        scores = np.round(rng.random(len(rs)), 2)  # ties: file order decides
        detections[name] = Task1Detections(
            [r[0] for r in rs], scores, np.array([r[1] for r in rs], dtype=np.float64).reshape(-1, 8)
        )
    return gt, detections


def assert_identical(result: dota_eval.DotaResult, gt: dict, dets: dict, thr: float, metric: str) -> None:
    """Same true/false positive flags as the loop, hence the same precision/recall curves and, integrated
    by the library, bit for bit the same APs."""
    empty = Task1Detections.empty()
    aps = []
    for name in CLASSES:
        _, tp, fp = devkit_eval_class(gt, dets.get(name, empty), name, thr, metric == "voc07", torch_iou)
        c = result.counts[name]
        assert (c.tp, c.fp, c.num_dets) == (int(tp.sum()), int(fp.sum()), len(tp)), (name, thr, metric)
        ap = None if c.npos == 0 else average_precision(*precision_recall(tp, fp, c.npos), metric)
        assert result.per_class[name] == ap, (name, thr, metric)
        aps.append(ap)
    assert result.map == dota_eval._mean(aps) or math.isnan(result.map)


@pytest.mark.parametrize("seed", range(3))
def test_crowded_general_quads_match_the_loop_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt, dets = crowded_quads(rng)
    for metric in ("voc07", "area"):
        for thr in (0.0, 0.3, 0.5, 0.8):
            result = evaluate_dota(gt, dets, CLASSES, iou_thr=thr, metric=metric, map_50_95=False)
            assert_identical(result, gt, dets, thr, metric)
    # with mAP50:95, pairs whose IoU cannot exceed min(thr, 0.5) are skipped: nothing changes
    full = evaluate_dota(gt, dets, CLASSES, iou_thr=0.7, metric="area")
    assert_identical(full, gt, dets, 0.7, "area")
    per_thr = [
        evaluate_dota(gt, dets, CLASSES, iou_thr=t, metric="area", map_50_95=False) for t in IOU_THRS_50_95
    ]
    for t, r in zip(IOU_THRS_50_95.tolist(), per_thr, strict=True):
        assert_identical(r, gt, dets, t, "area")
    assert full.per_class_50_95 is not None
    for name in CLASSES:
        refs = [r.per_class[name] for r in per_thr]
        expected = None if refs[0] is None else dota_eval._mean(refs)
        assert full.per_class_50_95[name] == expected, name


def test_batches_bands_and_far_coordinates_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    gt, dets = crowded_quads(rng, num_images=4, per_image=50)
    expected = evaluate_dota(gt, dets, CLASSES).to_dict()
    assert_identical(evaluate_dota(gt, dets, CLASSES, map_50_95=False), gt, dets, 0.5, "voc07")
    for chunk, bands in ((5, 1024), (1 << 20, 1), (50, 3)):
        monkeypatch.setattr(dota_eval, "_PAIR_CHUNK", chunk)
        monkeypatch.setattr(dota_eval, "_MAX_BANDS", bands)
        assert evaluate_dota(gt, dets, CLASSES).to_dict() == expected, (chunk, bands)
    monkeypatch.undo()
    # far from the origin (the pair search ranks coordinates; the IoU works relative to each quad)
    shift = np.tile([3.0e5, -7.0e5], 4)
    far_gt = {
        k: DotaLabel([DotaObject(tuple(np.array(o.poly) + shift), o.name, o.difficult) for o in v.objects])
        for k, v in gt.items()
    }
    far_dets = {k: Task1Detections(v.image_ids, v.scores, v.polys + shift) for k, v in dets.items()}
    far = evaluate_dota(far_gt, far_dets, CLASSES)
    assert far.counts == evaluate_dota(gt, dets, CLASSES).counts


def test_label_arrays_are_accepted_as_ground_truth() -> None:
    gt, dets = crowded_quads(np.random.default_rng(3))
    arrays = {k: LabelArrays.from_label(v) for k, v in gt.items()}
    assert evaluate_dota(arrays, dets, CLASSES).to_dict() == evaluate_dota(gt, dets, CLASSES).to_dict()
    bad = {"I0": LabelArrays(np.zeros((2, 8)), ["plane"], np.zeros(2, dtype=np.int64))}
    with pytest.raises(Exception, match=r"ground truth of image 'I0': 1 names, polys of shape \(2, 8\)"):
        evaluate_dota(bad, {}, CLASSES)


def test_iou_bound_is_never_below_the_iou() -> None:
    rng = np.random.default_rng(1)
    gt, dets = crowded_quads(rng, num_images=2, per_image=60)
    polys_a = np.concatenate([d.polys for d in dets.values()])
    polys_b = np.array([o.poly for label in gt.values() for o in label.objects])
    # adversarial pairs: identical, axis-aligned (the boxes' overlap is the intersection), slivers,
    # nearly parallel, tiny and huge, far from the origin
    x = rng.uniform(0, 50, (400, 2))
    size = rng.uniform(0.5, 20, (400, 2))
    aligned = np.column_stack((x, x + size))[:, [0, 1, 2, 1, 2, 3, 0, 3]]
    aligned2 = aligned + np.tile(rng.uniform(-3, 3, (400, 2)), 4)
    sliver = aligned.copy()
    sliver[:, [5, 7]] = sliver[:, [1, 1]] + 1e-9
    turned = aligned + rng.normal(0, 1e-10, aligned.shape)
    pairs_a = np.concatenate((polys_a[: len(polys_b)], aligned, aligned, sliver, turned, aligned * 1e4 + 1e6))
    pairs_b = np.concatenate(
        (polys_b[: len(polys_a)], aligned, aligned2, aligned2, aligned, aligned2 * 1e4 + 1e6)
    )
    n = min(len(pairs_a), len(pairs_b))
    # every (a, b) pair of the first 300 of each, plus the aligned lists
    i = np.concatenate((np.repeat(np.arange(300), 300), np.arange(n)))
    j = np.concatenate((np.tile(np.arange(300), 300), np.arange(n)))
    qa, qb = prepare_quads(pairs_a), prepare_quads(pairs_b)
    ha, hb = qa.hbb[i], qb.hbb[j]
    overlap = (ha[:, 0] < hb[:, 2]) & (hb[:, 0] < ha[:, 2]) & (ha[:, 1] < hb[:, 3]) & (hb[:, 1] < ha[:, 3])
    i, j = i[overlap], j[overlap]
    bound = dota_eval._iou_bound(qa, i, qb, j)
    iou = quad_pair_iou(qa, i, qb, j, dota_eval._UNION_EPS)
    assert len(i) > 2000 and (iou > 0.5).sum() > 500
    assert (bound >= iou).all(), np.max(iou - bound)


def test_cli_does_not_import_torch(tmp_path: Path) -> None:
    gt, dets = crowded_quads(np.random.default_rng(0), num_images=2, per_image=20)
    ann, det = tmp_path / "labelTxt", tmp_path / "task1"
    for image_id, label in gt.items():
        write_label_file(ann / f"{image_id}.txt", label)
    det.mkdir()
    write_task1_dir(det, dets)
    out = tmp_path / "map.json"
    code = (
        "import sys\n"
        "from daik_core.cli import main\n"
        f"rc = main(['eval', 'dota', '--ann-dir', {str(ann)!r}, '--det-dir', {str(det)!r}, "
        f"'--classes', {','.join(CLASSES)!r}, '--json', {str(out)!r}])\n"
        "assert rc == 0, rc\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
        "import daik_core.eval, daik_core.data.dota\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "mAP50" in proc.stdout and json.loads(out.read_text())["mAP"] is not None
