"""evaluate_dota on hand-made cases whose AP is computed by hand in the comments."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from daik_core.data.dota import DotaLabel, DotaObject, Task1Detections
from daik_core.errors import DaikError
from daik_core.eval import IOU_THRS_50_95, DotaEvalWarning, evaluate_dota

CLASSES = ("plane", "ship")


def rect(x1: float, y1: float, x2: float, y2: float) -> tuple[float, ...]:
    return (x1, y1, x2, y1, x2, y2, x1, y2)


def obj(poly: tuple[float, ...], name: str = "plane", difficult: int = 0) -> DotaObject:
    return DotaObject(poly, name, difficult)


def dets(*rows: tuple[str, float, tuple[float, ...]]) -> Task1Detections:
    return Task1Detections(
        [r[0] for r in rows],
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] for r in rows], dtype=np.float64).reshape(-1, 8),
    )


# voc07 sums 11 levels of p / 11: a perfect class scores 1.0000000000000002, as in the devkit
ONE = pytest.approx(1.0, abs=1e-12)
A = rect(0, 0, 10, 10)
B = rect(50, 50, 70, 60)
FAR = rect(200, 200, 210, 210)


def test_tp_fp_tp_gives_hand_computed_ap() -> None:
    gt = {"img": DotaLabel([obj(A), obj(B)])}
    d = {"plane": dets(("img", 0.9, A), ("img", 0.8, FAR), ("img", 0.7, rect(51, 50, 70, 60)))}
    # TP, FP, TP with npos 2: voc07 = (6 * 1 + 5 * 2/3) / 11 = 28/33, area = 1/2 + 1/2 * 2/3 = 5/6
    r07 = evaluate_dota(gt, d, CLASSES, metric="voc07")
    assert r07.per_class["plane"] == pytest.approx(28 / 33, abs=1e-12)
    assert r07.per_class["ship"] is None  # no ground truth: excluded from the mean
    assert r07.map == pytest.approx(28 / 33, abs=1e-12)
    c = r07.counts["plane"]
    assert (c.npos, c.num_difficult, c.num_dets, c.tp, c.fp, c.ignored) == (2, 0, 3, 2, 1, 0)
    rarea = evaluate_dota(gt, d, CLASSES, metric="area")
    assert rarea.per_class["plane"] == pytest.approx(5 / 6, abs=1e-12)


def test_file_order_does_not_matter_only_scores() -> None:
    gt = {"img": DotaLabel([obj(A), obj(B)])}
    d = {"plane": dets(("img", 0.7, rect(51, 50, 70, 60)), ("img", 0.8, FAR), ("img", 0.9, A))}
    assert evaluate_dota(gt, d, CLASSES).per_class["plane"] == pytest.approx(28 / 33, abs=1e-12)


def test_detection_of_a_difficult_object_is_ignored() -> None:
    gt = {"img": DotaLabel([obj(A), obj(B, difficult=1)])}
    d = {"plane": dets(("img", 0.9, B), ("img", 0.8, A))}
    # ignored, then TP: prec (0, 1), rec (0, 1) -> AP 1 (an FP first would give 0.5)
    r = evaluate_dota(gt, d, CLASSES)
    assert r.per_class["plane"] == ONE
    c = r.counts["plane"]
    assert (c.npos, c.num_difficult, c.tp, c.fp, c.ignored) == (1, 1, 1, 0, 1)
    # the flag 2 (cut objects) is difficult too
    gt2 = {"img": DotaLabel([obj(A), obj(B, difficult=2)])}
    assert evaluate_dota(gt2, d, CLASSES).counts["plane"].ignored == 1


def test_second_detection_of_an_object_is_fp_without_fallback_to_the_next_best() -> None:
    a2 = rect(2, 0, 12, 10)  # IoU(A, a2) = 80 / 120 = 2/3 > 0.5
    gt = {"img": DotaLabel([obj(A), obj(a2)])}
    d = {"plane": dets(("img", 0.9, A), ("img", 0.8, A))}
    # both target A; the second is FP although a2 would match: TP, FP with npos 2
    # rec (.5, .5), prec (1, .5): voc07 = 6/11, area = 1/2
    r = evaluate_dota(gt, d, CLASSES)
    assert r.per_class["plane"] == pytest.approx(6 / 11, abs=1e-12)
    assert (r.counts["plane"].tp, r.counts["plane"].fp) == (1, 1)
    assert evaluate_dota(gt, d, CLASSES, metric="area").per_class["plane"] == pytest.approx(0.5, abs=1e-12)


def test_argmax_ties_go_to_the_first_object_in_file_order() -> None:
    # two identical annotations; the first is difficult: both detections target it and are ignored
    gt = {"img": DotaLabel([obj(A, difficult=1), obj(A)])}
    d = {"plane": dets(("img", 0.9, A), ("img", 0.8, A))}
    r = evaluate_dota(gt, d, CLASSES)
    assert (r.counts["plane"].tp, r.counts["plane"].fp, r.counts["plane"].ignored) == (0, 0, 2)
    assert r.per_class["plane"] == 0.0
    # the other way round: the first (non-difficult) is matched once, the second detection is FP
    gt = {"img": DotaLabel([obj(A), obj(A, difficult=1)])}
    r = evaluate_dota(gt, d, CLASSES)
    assert (r.counts["plane"].tp, r.counts["plane"].fp, r.counts["plane"].ignored) == (1, 1, 0)


def test_iou_exactly_at_the_threshold_is_not_a_match() -> None:
    gt = {"img": DotaLabel([obj(rect(0, 0, 2, 1))])}
    d = {"plane": dets(("img", 0.9, rect(0, 0, 1, 1)))}  # IoU = 1 / 2 exactly
    assert evaluate_dota(gt, d, CLASSES, iou_thr=0.5).per_class["plane"] == 0.0
    assert evaluate_dota(gt, d, CLASSES, iou_thr=0.4999).per_class["plane"] == ONE


def test_ties_in_score_keep_file_order() -> None:
    gt = {"img": DotaLabel([obj(A)])}
    hit, miss = ("img", 0.5, A), ("img", 0.5, FAR)
    # TP then FP: rec (1, 1), prec (1, .5) -> 1; FP then TP: rec (0, 1), prec (0, .5) -> 0.5
    assert evaluate_dota(gt, {"plane": dets(hit, miss)}, CLASSES).per_class["plane"] == ONE
    assert evaluate_dota(gt, {"plane": dets(miss, hit)}, CLASSES).per_class["plane"] == pytest.approx(0.5)


def test_detections_of_another_class_do_not_match() -> None:
    gt = {"img": DotaLabel([obj(A, "plane"), obj(B, "ship")])}
    d = {"plane": dets(("img", 0.9, B)), "ship": dets(("img", 0.9, B))}
    r = evaluate_dota(gt, d, CLASSES)
    assert r.per_class == {"plane": 0.0, "ship": ONE}
    assert r.map == pytest.approx(0.5)


def test_class_with_only_difficult_objects_is_none_and_excluded() -> None:
    gt = {"img": DotaLabel([obj(A, "plane"), obj(B, "ship", difficult=1)])}
    d = {"plane": dets(("img", 0.9, A)), "ship": dets(("img", 0.9, B), ("img", 0.8, FAR))}
    r = evaluate_dota(gt, d, CLASSES)
    assert r.per_class == {"plane": ONE, "ship": None}
    assert r.map == ONE
    c = r.counts["ship"]
    assert (c.npos, c.num_difficult, c.tp, c.fp, c.ignored) == (0, 1, 0, 1, 1)
    assert r.to_dict()["per_class"]["ship"] is None


def test_missing_or_empty_detections_give_zero_and_no_ground_truth_gives_nan() -> None:
    gt = {"img": DotaLabel([obj(A, "plane"), obj(B, "ship")])}
    r = evaluate_dota(gt, {"ship": Task1Detections.empty()}, CLASSES)
    assert r.per_class == {"plane": 0.0, "ship": 0.0}
    assert r.map == 0.0
    assert r.map_50_95 == 0.0
    # no image has objects of the classes: every AP is None and the mean is undefined
    r = evaluate_dota({"img": DotaLabel([]), "img2": DotaLabel([obj(A, "car")])}, {}, CLASSES)
    assert r.per_class == {"plane": None, "ship": None}
    assert math.isnan(r.map)
    assert r.to_dict()["mAP"] is None
    # nothing at all
    r = evaluate_dota({}, {}, CLASSES)
    assert math.isnan(r.map)


def test_detections_on_unannotated_images_are_fp_with_one_warning() -> None:
    gt = {"img": DotaLabel([obj(A)])}
    d = {
        "plane": dets(("ghost1", 0.95, A), ("img", 0.9, A), ("ghost2", 0.5, A)),
        "ship": dets(("ghost1", 0.5, A)),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = evaluate_dota(gt, d, CLASSES)
    ours = [w for w in caught if issubclass(w.category, DotaEvalWarning)]
    assert len(ours) == 1
    assert "2 image(s)" in str(ours[0].message) and "ghost1" in str(ours[0].message)
    # FP, TP, FP with npos 1: rec (0, 1, 1), prec (0, .5, 1/3) -> 0.5 for both metrics
    assert r.per_class["plane"] == pytest.approx(0.5)
    assert (r.counts["plane"].tp, r.counts["plane"].fp) == (1, 2)
    assert r.unannotated_images == ["ghost1", "ghost2"]


def test_map_50_95_averages_the_ten_thresholds() -> None:
    assert len(IOU_THRS_50_95) == 10
    np.testing.assert_array_equal(IOU_THRS_50_95, np.arange(0.5, 0.96, 0.05))
    gt = {"img": DotaLabel([obj(rect(0, 0, 100, 10))])}
    d = {"plane": dets(("img", 0.9, rect(0, 0, 72, 10)))}  # IoU 0.72: a match at 0.50 .. 0.70 only
    r = evaluate_dota(gt, d, CLASSES)
    assert r.map == ONE
    assert r.map_50_95 == pytest.approx(0.5)
    assert r.per_class_50_95 == {"plane": pytest.approx(0.5), "ship": None}
    assert r.to_dict()["mAP50_95"] == pytest.approx(0.5)
    assert evaluate_dota(gt, d, CLASSES, map_50_95=False).map_50_95 is None


def test_result_dict_and_table() -> None:
    gt = {"img": DotaLabel([obj(A), obj(B)])}
    d = {"plane": dets(("img", 0.9, A), ("img", 0.8, FAR), ("img", 0.7, rect(51, 50, 70, 60)))}
    r = evaluate_dota(gt, d, CLASSES)
    out = r.to_dict()
    assert {"mAP", "per_class", "counts", "iou_thr", "metric", "mAP50_95"} <= set(out)
    assert out["counts"]["plane"] == {
        "npos": 2,
        "num_difficult": 0,
        "num_dets": 3,
        "tp": 2,
        "fp": 1,
        "ignored": 0,
    }
    assert out["iou_thr"] == 0.5 and out["metric"] == "voc07"
    table = r.format_table()
    assert "plane" in table and "84.85" in table  # 28/33
    assert "mAP50 (voc07" in table and "mAP50:95" in table


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"metric": "coco"}, "metric"),
        ({"iou_thr": 1.0}, "iou_thr"),
        ({"iou_thr": -0.1}, "iou_thr"),
        ({"iou_thr": math.nan}, "iou_thr"),
        ({"iou_thr": "0.5"}, "iou_thr"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(DaikError, match=name):
        evaluate_dota({}, {}, CLASSES, **kwargs)


def test_bad_detections_are_errors() -> None:
    gt = {"img": DotaLabel([obj(A)])}
    with pytest.raises(DaikError, match="not in the evaluated class list"):
        evaluate_dota(gt, {"car": dets(("img", 0.9, A))}, CLASSES)
    bad = Task1Detections(["img"], np.array([math.nan]), np.array([A], dtype=np.float64))
    with pytest.raises(DaikError, match="non-finite"):
        evaluate_dota(gt, {"plane": bad}, CLASSES)
    bad = Task1Detections(["img", "img"], np.array([0.5]), np.array([A], dtype=np.float64))
    with pytest.raises(DaikError, match="shape"):
        evaluate_dota(gt, {"plane": bad}, CLASSES)
    with pytest.raises(DaikError, match="duplicate"):
        evaluate_dota(gt, {}, ("plane", "plane"))
