"""Average precision: hand-computed curves, the 11-point grid boundaries, the all-point envelope."""

import numpy as np
import pytest

from daik_core.eval import VOC07_RECALL_GRID, average_precision, precision_recall
from tests.core.eval.devkit_reference import devkit_voc_ap


def test_grid_is_the_devkits_arange_not_the_decimals() -> None:
    assert len(VOC07_RECALL_GRID) == 11
    assert VOC07_RECALL_GRID[3] == 0.30000000000000004 != 0.3
    assert VOC07_RECALL_GRID[6] == 0.6000000000000001
    assert VOC07_RECALL_GRID[7] == 0.7000000000000001
    assert VOC07_RECALL_GRID[10] == 1.0


def test_tp_fp_tp_with_two_objects() -> None:
    # detections in score order: TP, FP, TP; 2 objects -> rec (.5, .5, 1), prec (1, .5, 2/3)
    rec, prec = precision_recall(np.array([1, 0, 1]), np.array([0, 1, 0]), npos=2)
    np.testing.assert_array_equal(rec, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(prec, [1.0, 0.5, 2 / 3], rtol=0, atol=1e-15)
    # voc07: levels 0 .. 0.5 (6 of them) see precision 1, levels 0.6 .. 1 (5) see 2/3
    assert average_precision(rec, prec, "voc07") == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-15)
    # all-point: envelope (1, 2/3) on recall steps of .5 each -> 0.5 + 1/3
    assert average_precision(rec, prec, "area") == pytest.approx(5 / 6, abs=1e-15)


def test_recall_of_exactly_three_tenths_does_not_reach_the_fourth_level() -> None:
    # 10 objects, 3 found by the 3 best detections: rec = 0.1, 0.2, 0.3 (3/10 < 0.30000000000000004)
    rec, prec = precision_recall(np.ones(3), np.zeros(3), npos=10)
    assert rec[2] == 0.3
    assert average_precision(rec, prec, "voc07") == pytest.approx(3 / 11, abs=1e-15)  # not 4/11
    assert average_precision(rec, prec, "area") == pytest.approx(0.3, abs=1e-15)


def test_first_detection_on_difficult_gives_zero_precision_not_nan() -> None:
    # neither TP nor FP first (a difficult object): precision 0 / eps = 0, then TP
    rec, prec = precision_recall(np.array([0, 1]), np.array([0, 0]), npos=1)
    np.testing.assert_array_equal(prec, [0.0, 1.0])
    # the 11 levels sum to 1.0000000000000002 in floating point, as in the devkit
    assert average_precision(rec, prec, "voc07") == pytest.approx(1.0, abs=1e-15)
    assert average_precision(rec, prec, "area") == 1.0


def test_no_detections_and_no_true_positives() -> None:
    empty = np.zeros(0)
    assert average_precision(empty, empty, "voc07") == 0.0
    assert average_precision(empty, empty, "area") == 0.0
    rec, prec = precision_recall(np.zeros(4), np.ones(4), npos=3)
    assert average_precision(rec, prec, "voc07") == 0.0
    assert average_precision(rec, prec, "area") == 0.0


def test_envelope_uses_the_best_precision_to_the_right() -> None:
    # FP, TP, TP with 2 objects: prec (0, .5, 2/3), rec (0, .5, 1) -> envelope 2/3 everywhere
    rec, prec = precision_recall(np.array([0, 1, 1]), np.array([1, 0, 0]), npos=2)
    assert average_precision(rec, prec, "area") == pytest.approx(2 / 3, abs=1e-15)
    assert average_precision(rec, prec, "voc07") == pytest.approx(2 / 3, abs=1e-15)


@pytest.mark.parametrize("seed", range(20))
def test_agrees_bit_for_bit_with_the_devkit_loops(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    tp = rng.random(n) < 0.5
    fp = ~tp & (rng.random(n) < 0.8)
    npos = int(tp.sum() + rng.integers(0, 5)) or 1
    rec, prec = precision_recall(tp, fp, npos)
    assert average_precision(rec, prec, "voc07") == devkit_voc_ap(rec, prec, True)
    assert average_precision(rec, prec, "area") == pytest.approx(devkit_voc_ap(rec, prec, False), abs=1e-15)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="metric"):
        average_precision(np.zeros(1), np.zeros(1), "coco")
    with pytest.raises(ValueError, match="npos"):
        precision_recall(np.zeros(1), np.zeros(1), 0)
