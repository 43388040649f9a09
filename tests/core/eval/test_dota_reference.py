"""evaluate_dota against the loop reference of the devkit algorithm, on random scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daik_core.data.dota import DotaLabel, DotaObject, Task1Detections
from daik_core.eval import IOU_THRS_50_95, DotaResult, evaluate_dota
from tests.core.eval.devkit_reference import devkit_evaluate, random_case

CLASSES = ("plane", "ship", "small-vehicle")
pytestmark = pytest.mark.filterwarnings("ignore::daik_core.eval.DotaEvalWarning")


def assert_same(
    result: DotaResult,
    ref_map: float,
    ref_aps: dict[str, float | None],
    ref_counts: dict[str, tuple[int, int]],
) -> None:
    for name in CLASSES:
        ap, ref = result.per_class[name], ref_aps[name]
        if ref is None:
            assert ap is None, name
        else:
            assert ap == pytest.approx(ref, abs=1e-9), name
        c = result.counts[name]
        assert (c.tp, c.fp) == ref_counts[name], name
    if math.isnan(ref_map):
        assert math.isnan(result.map)
    else:
        assert result.map == pytest.approx(ref_map, abs=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_random_scenes_match_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt, dets = random_case(rng, CLASSES, num_images=int(rng.integers(1, 9)))
    for metric in ("voc07", "area"):
        for thr in (0.5, 0.3, 0.75):
            result = evaluate_dota(gt, dets, CLASSES, iou_thr=thr, metric=metric, map_50_95=False)
            assert_same(result, *devkit_evaluate(gt, dets, CLASSES, thr, metric))


@pytest.mark.parametrize("seed", range(3))
def test_map_50_95_is_the_mean_of_the_reference_over_the_thresholds(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    gt, dets = random_case(rng, CLASSES, num_images=5)
    result = evaluate_dota(gt, dets, CLASSES, metric="area")
    per_thr = [devkit_evaluate(gt, dets, CLASSES, float(t), "area") for t in IOU_THRS_50_95]
    assert result.map_50_95 == pytest.approx(float(np.mean([m for m, _, _ in per_thr])), abs=1e-9)
    assert result.per_class_50_95 is not None
    for name in CLASSES:
        refs = [aps[name] for _, aps, _ in per_thr]
        if refs[0] is None:
            assert result.per_class_50_95[name] is None
        else:
            assert result.per_class_50_95[name] == pytest.approx(float(np.mean(refs)), abs=1e-9)


def test_many_images_and_tiny_pair_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # batches of (detection, object) pairs and chunks of the IoU computation must not change anything
    import daik_core.eval._quad_iou as quad_iou
    import daik_core.eval.dota as dota

    rng = np.random.default_rng(7)
    gt, dets = random_case(rng, CLASSES, num_images=6)
    expected = evaluate_dota(gt, dets, CLASSES)
    monkeypatch.setattr(dota, "_PAIR_CHUNK", 7)
    monkeypatch.setattr(quad_iou, "_CHUNK", 5)
    got = evaluate_dota(gt, dets, CLASSES)
    assert got.per_class == expected.per_class
    assert got.counts == expected.counts
    assert_same(got, *devkit_evaluate(gt, dets, CLASSES, 0.5, "voc07"))


# integer axis-aligned boxes on a small grid: exact IoUs (0.5 and other thresholds hit exactly), IoU ties
# between objects, duplicates, and ties in score
box = st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(1, 4), st.integers(1, 4))


def _poly(b: tuple[int, int, int, int], turn: int) -> tuple[float, ...]:
    x, y, w, h = b
    pts = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    pts = pts[turn:] + pts[:turn]  # any starting corner
    return tuple(float(v) for p in pts for v in p)


@settings(max_examples=40, deadline=None)
@given(
    objects=st.lists(st.tuples(st.integers(0, 1), box, st.integers(0, 2), st.integers(0, 1)), max_size=8),
    detections=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 1), box, st.integers(0, 4), st.integers(0, 3)),
        max_size=12,
    ),
    thr=st.sampled_from([0.0, 0.25, 0.5, 0.6]),
    metric=st.sampled_from(["voc07", "area"]),
)
def test_exact_boxes_match_the_reference(
    objects: list[tuple[int, tuple[int, int, int, int], int, int]],
    detections: list[tuple[int, int, tuple[int, int, int, int], int, int]],
    thr: float,
    metric: str,
) -> None:
    images = ["a", "b"]
    classes = ("plane", "ship")
    gt = {image: DotaLabel([]) for image in images}
    for img, b, difficult, cls in objects:
        gt[images[img]].objects.append(DotaObject(_poly(b, 0), classes[cls], difficult))
    rows: dict[str, list[tuple[str, float, tuple[float, ...]]]] = {c: [] for c in classes}
    for img, cls, b, score, turn in detections:
        image = images[img] if img < 2 else "unannotated"
        rows[classes[cls]].append((image, score / 4, _poly(b, turn)))
    dets = {
        name: Task1Detections(
            [r[0] for r in rs], np.array([r[1] for r in rs]), np.array([r[2] for r in rs]).reshape(-1, 8)
        )
        for name, rs in rows.items()
    }
    result = evaluate_dota(gt, dets, classes, iou_thr=thr, metric=metric, map_50_95=False)
    ref_map, ref_aps, ref_counts = devkit_evaluate(gt, dets, classes, thr, metric)
    for name in classes:
        assert (result.counts[name].tp, result.counts[name].fp) == ref_counts[name]
        if ref_aps[name] is None:
            assert result.per_class[name] is None
        else:
            assert result.per_class[name] == pytest.approx(ref_aps[name], abs=1e-9)
    assert (math.isnan(result.map) and math.isnan(ref_map)) or result.map == pytest.approx(ref_map, abs=1e-9)
