"""daik_core.plots and the data behind them: the evaluator's precision-recall curves and best-F1 point,
the confusion matrix on hand-built cases, and each picture a valid image file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daik_core import plots
from daik_core.ablation.table import RunRecord, summarize
from daik_core.data.dota import DotaLabel, DotaObject, Task1Detections
from daik_core.eval import evaluate_dota
from daik_core.eval.confusion import confusion_matrix, normalize_rows

CLASSES = ("plane", "ship")
PNG = b"\x89PNG\r\n\x1a\n"


def rect(x1: float, y1: float, x2: float, y2: float) -> tuple[float, ...]:
    return (x1, y1, x2, y1, x2, y2, x1, y2)


def dets(*rows: tuple[str, float, tuple[float, ...]]) -> Task1Detections:
    return Task1Detections(
        [r[0] for r in rows],
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] for r in rows], dtype=np.float64).reshape(-1, 8),
    )


A, B, C, FAR = rect(0, 0, 10, 10), rect(50, 50, 70, 60), rect(100, 0, 120, 10), rect(200, 200, 210, 210)


def assert_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG), path
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


# ------------------------------------------------------------------------------------------ PR curves
def test_pr_curves_are_the_evaluators_and_keep_its_aps() -> None:
    gt = {
        "i1": DotaLabel([DotaObject(A, "plane"), DotaObject(B, "plane"), DotaObject(C, "ship")]),
        "i2": DotaLabel([DotaObject(A, "plane")]),
    }
    d = {
        "plane": dets(("i1", 0.9, A), ("i1", 0.8, FAR), ("i2", 0.7, A), ("i1", 0.3, B)),
        "ship": dets(("i1", 0.6, FAR)),
    }
    r = evaluate_dota(gt, d, CLASSES)
    plane = r.curves["plane"]
    # tp fp tp tp: recall 1/3, 1/3, 2/3, 1; precision 1, 1/2, 2/3, 3/4
    np.testing.assert_allclose(plane.scores, [0.9, 0.8, 0.7, 0.3])
    np.testing.assert_allclose(plane.recall, [1 / 3, 1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(plane.precision, [1.0, 0.5, 2 / 3, 0.75])
    assert plane.recall[-1] == r.counts["plane"].tp / r.counts["plane"].npos
    assert r.curves["ship"].recall[-1] == 0.0
    # F1 per cut: 0.5, 0.4, 0.667, 0.857 -> the last (conf 0.3)
    best = r.best_f1()
    assert best["plane"] == pytest.approx({"conf": 0.3, "precision": 0.75, "recall": 1.0, "f1": 6 / 7})
    assert best["ship"] == pytest.approx({"conf": 0.6, "precision": 0.0, "recall": 0.0, "f1": 0.0})
    assert r.to_dict()["best_f1"] == best
    # the APs are those without curves: the hand-computed voc07 value of test_dota's case
    assert r.per_class["plane"] == pytest.approx((4 * 1.0 + 3 * 0.75 + 4 * 0.75) / 11)


def test_best_f1_skips_cuts_inside_equal_scores() -> None:
    gt = {"i": DotaLabel([DotaObject(A, "plane"), DotaObject(B, "plane")])}
    # the first two tie at 0.9 (tp, fp): a cut after the first alone is no threshold
    r = evaluate_dota(gt, {"plane": dets(("i", 0.9, A), ("i", 0.9, FAR), ("i", 0.5, B))}, CLASSES)
    assert r.best_f1()["plane"] == pytest.approx({"conf": 0.5, "precision": 2 / 3, "recall": 1.0, "f1": 0.8})
    assert r.best_f1()["ship"] is None  # no ground truth


# ---------------------------------------------------------------------------------- confusion matrix
def test_confusion_matrix_counts_by_hand() -> None:
    gt = {
        "i1": DotaLabel(
            [
                DotaObject(A, "plane"),  # found as plane
                DotaObject(B, "plane"),  # found as ship: a confusion
                DotaObject(C, "ship"),  # missed
                DotaObject(FAR, "ship", difficult=1),  # found, but difficult: not counted
            ]
        ),
        "i2": DotaLabel([DotaObject(A, "ship")]),  # found as ship, and a duplicate below the threshold
    }
    d = {
        "plane": dets(("i1", 0.9, A), ("i1", 0.5, rect(300, 300, 310, 310)), ("i1", 0.1, C)),
        "ship": dets(("i1", 0.8, B), ("i1", 0.7, FAR), ("i2", 0.95, A), ("i2", 0.2, A), ("i3", 0.6, A)),
    }
    m = confusion_matrix(gt, d, CLASSES, iou_thr=0.5, conf=0.25)
    # rows true (plane, ship, background), columns predicted
    assert m.tolist() == [
        [1, 1, 0],
        [0, 1, 1],
        [1, 1, 0],  # false alarms: the plane at 300 and the ship on an unannotated image i3
    ]
    norm = normalize_rows(m)
    np.testing.assert_allclose(norm[:2].sum(axis=1), 1.0)
    np.testing.assert_allclose(norm[0], [0.5, 0.5, 0.0])
    # a lower threshold lets the 0.2 duplicate and the 0.1 plane on C in: a false alarm and a confusion
    low = confusion_matrix(gt, d, CLASSES, iou_thr=0.5, conf=0.05)
    assert low.tolist() == [[1, 1, 0], [1, 1, 0], [1, 2, 0]]


def test_confusion_matrix_matches_highest_iou_first() -> None:
    gt = {"i": DotaLabel([DotaObject(rect(0, 0, 10, 10), "plane"), DotaObject(rect(6, 0, 16, 10), "ship")])}
    # the detection overlaps the plane by 0.54 and the ship by 0.82: it is matched to the ship
    d = {"plane": dets(("i", 0.9, rect(5, 0, 15, 10)))}
    m = confusion_matrix(gt, d, CLASSES)
    assert m.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 0]]


# ------------------------------------------------------------------------------------------ pictures
def test_every_picture_is_a_readable_file(tmp_path: Path) -> None:
    metrics = [
        {"epoch": 1, "loss": 3.0, "loss_cls": 1.0, "loss_box": 1.0, "loss_dfl": 0.5, "loss_angle": 0.5,
         "loss_ld": 0.2, "loss_cls_kd": 0.1, "map50": 0.1, "map50_95": 0.05},
        {"epoch": 2, "loss": 2.0, "loss_cls": 0.7, "loss_box": 0.6, "loss_dfl": 0.4, "loss_angle": 0.3,
         "loss_ld": 0.15, "loss_cls_kd": None},
        {"epoch": 3, "loss": 1.5, "loss_cls": 0.5, "loss_box": 0.5, "loss_dfl": 0.3, "loss_angle": 0.2,
         "loss_ld": 0.1, "loss_cls_kd": 0.05, "map50": 0.3, "map50_95": 0.12},
    ]  # fmt: skip
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("".join(json.dumps(m) + "\n" for m in metrics) + '{"torn')
    assert plots.read_metrics(jsonl) == metrics
    assert plots._loss_terms(metrics) == (
        ["loss_cls", "loss_box", "loss_dfl", "loss_angle"],
        ["loss_cls_kd", "loss_ld"],
    )
    assert_png(plots.plot_results(metrics, tmp_path / "results.png", "run"))

    gt = {"i1": DotaLabel([DotaObject(A, "plane"), DotaObject(C, "ship")])}
    r = evaluate_dota(gt, {"plane": dets(("i1", 0.9, A), ("i1", 0.4, FAR))}, CLASSES)
    assert_png(plots.plot_pr_curves(r.curves, tmp_path / "pr_curve.png", r.per_class))

    m = np.array([[3, 1, 0], [0, 2, 2], [1, 0, 0]])
    drawn = plots.plot_confusion_matrix(m, CLASSES, tmp_path / "confusion_matrix.png")
    np.testing.assert_allclose(drawn, [[0.75, 0.25, 0], [0, 0.5, 0.5], [1, 0, 0]])
    assert_png(tmp_path / "confusion_matrix.png")

    polys = np.array(
        [rect(0, 0, 40, 10), rect(0, 0, 10, 10), (0, 0, 5, 8.660254, -3.660254, 13.660254, -8.660254, 5)]
    )
    stats = plots.label_stats(polys, np.array([0, 1, 1]), 2)
    assert stats["counts"].tolist() == [1, 2]
    np.testing.assert_allclose(stats["width"], [40, 10, 10])
    np.testing.assert_allclose(stats["aspect"], [4, 1, 1])
    np.testing.assert_allclose(stats["angle"][[0, 2]], [0, 60], atol=1e-3)
    assert_png(plots.plot_labels(polys, np.array([0, 1, 1]), CLASSES, tmp_path / "labels.png"))

    rows = summarize(
        [RunRecord(c, s, m) for c, s, m in [("baseline", 0, 0.2), ("baseline", 1, 0.25), ("DAIK", 0, 0.3),
                                              ("DAIK", 1, 0.32), ("teacher", 0, 0.4)]]
    )  # fmt: skip
    assert_png(plots.plot_ablation(rows, tmp_path / "ablation.png"))

    from PIL import Image

    Image.new("RGB", (2000, 1000), (40, 60, 40)).save(tmp_path / "img.png")
    out = plots.draw_predictions(
        tmp_path / "img.png",
        tmp_path / "val_pred_0.jpg",
        classes=CLASSES,
        gt=[(A, "plane")],
        detections=[(rect(100, 100, 400, 300), "ship", 0.87)],
    )
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (1024, 512)
        # the ship's box is drawn in its class colour (tab10's orange) on the scaled-down image
        r_, g_, b_ = im.getpixel((int(250 * 0.512), int(300 * 0.512)))
        assert r_ > 200 and 100 < g_ < 170 and b_ < 80
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically


def test_plot_names() -> None:
    for name in [*plots.PLOT_FILES, "val_pred_12.jpg"]:
        assert plots.is_plot_name(name), name
    for bad in ("../results.png", "results.png/..", "x/results.png", "metrics.jsonl", "val_pred_.jpg",
                "results.PNG", "val_pred_1.jpg\n", "best.pt"):  # fmt: skip
        assert not plots.is_plot_name(bad), bad


def test_the_ablation_table_comes_with_its_chart(tmp_path: Path) -> None:
    from daik_core.ablation.runner import write_table

    records = [RunRecord("baseline", 0, 0.2), RunRecord("baseline", 1, 0.3), RunRecord("DAIK", 0, 0.4)]
    rows = write_table(tmp_path, records, ["baseline", "DAIK"], val="data/val")
    assert [r.config for r in rows] == ["baseline", "DAIK"]
    assert_png(tmp_path / "ablation.png")
    assert (tmp_path / "ablation.md").is_file()
