"""The evaluator's numpy quad IoU (daik_core.eval._quad_iou): hand values, shapely, and bit-for-bit the
torch op it mirrors (daik_core.ops.poly_iou_aligned) on convex, non-convex, bow-tie and degenerate quads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
import torch

from daik_core.eval import _quad_iou
from daik_core.eval._quad_iou import prepare_quads, quad_iou_aligned
from daik_core.ops import poly_iou_aligned

SQUARE = (0.0, 0.0, 2.0, 0.0, 2.0, 2.0, 0.0, 2.0)


def iou(p: tuple[float, ...], q: tuple[float, ...]) -> float:
    return float(quad_iou_aligned(np.array([p]), np.array([q]))[0])


def torch_iou(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return poly_iou_aligned(torch.from_numpy(p), torch.from_numpy(q)).numpy()


def shapely_iou(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    a, b = shapely.polygons(p.reshape(-1, 4, 2)), shapely.polygons(q.reshape(-1, 4, 2))
    inter = shapely.area(shapely.intersection(a, b))
    return inter / (shapely.area(a) + shapely.area(b) - inter)


def rect(x1: float, y1: float, x2: float, y2: float) -> tuple[float, ...]:
    return (x1, y1, x2, y1, x2, y2, x1, y2)


def rotated_rects(rng: np.random.Generator, n: int, span: float) -> np.ndarray:
    cx, cy = rng.uniform(0, span, n), rng.uniform(0, span, n)
    w, h, a = rng.uniform(4, 40, n), rng.uniform(2, 20, n), rng.uniform(0, math.pi, n)
    c, s = np.cos(a), np.sin(a)
    lx = np.array([-1.0, 1.0, 1.0, -1.0])[None] * w[:, None] / 2
    ly = np.array([-1.0, -1.0, 1.0, 1.0])[None] * h[:, None] / 2
    x, y = cx[:, None] + c[:, None] * lx - s[:, None] * ly, cy[:, None] + s[:, None] * lx + c[:, None] * ly
    return np.stack((x, y), axis=2).reshape(n, 8)


def general_quads(rng: np.random.Generator, n: int, span: float, convex: bool) -> np.ndarray:
    """Simple quads (checked by shapely): rectangles with every corner moved, or darts (non-convex)."""
    pts = rotated_rects(rng, n, span).reshape(n, 4, 2)
    pts = pts + rng.normal(0, 1.5, pts.shape)
    if not convex:  # corner 0 pushed past the diagonal 1-3
        mid = (pts[:, 1] + pts[:, 3]) / 2
        pts[:, 0] = mid + (mid - pts[:, 0]) * 0.3
    flip = rng.random(n) < 0.5
    pts[flip] = pts[flip, ::-1]  # both orientations
    polys = shapely.polygons(pts)
    hull = shapely.area(shapely.convex_hull(polys))
    ok = shapely.is_valid(polys) & ((hull <= shapely.area(polys) * (1 + 1e-12)) == convex)
    return pts[ok].reshape(-1, 8)


# --- hand values -----------------------------------------------------------------------------------------


def test_hand_values() -> None:
    assert iou(rect(0, 0, 1, 1), rect(0.5, 0, 1.5, 1)) == pytest.approx(1 / 3, abs=1e-15)
    assert iou(SQUARE, SQUARE) == 1.0  # identical: exactly 1
    assert iou(SQUARE, SQUARE[2:] + SQUARE[:2]) == 1.0  # another starting corner
    assert iou(SQUARE, rect(0.5, 0.5, 1.5, 1.0)) == pytest.approx(0.5 / 4, abs=1e-15)  # contained
    assert iou(SQUARE, rect(5, 5, 6, 6)) == 0.0  # disjoint
    assert iou(SQUARE, rect(2, 0, 4, 2)) == 0.0  # a shared edge, outside each other
    assert iou(SQUARE, rect(2, 2, 3, 3)) == 0.0  # a shared corner
    # a diamond in the square: area 2 of 4
    assert iou(SQUARE, (1, 0, 2, 1, 1, 2, 0, 1)) == pytest.approx(0.5, abs=1e-15)
    # a square and itself turned by 45 degrees about its centre: an octagon, IoU 1 / sqrt(2)
    r = math.sqrt(2)
    assert iou(SQUARE, (1, 1 - r, 1 + r, 1, 1, 1 + r, 1 - r, 1)) == pytest.approx(1 / r, abs=1e-15)


def test_non_convex_quads_are_split_exactly() -> None:
    dart = (0, 0, 2, 0, 0.5, 0.5, 0, 2)  # reflex vertex at (0.5, 0.5): area 1, inside the square
    unit = rect(0, 0, 1, 1)
    for q in (dart, dart[2:] + dart[:2], tuple(np.array(dart).reshape(4, 2)[::-1].reshape(8))):
        assert iou(SQUARE, q) == pytest.approx(1 / 4, abs=1e-15)
        assert iou(q, dart) == pytest.approx(1.0, abs=1e-15)
        assert iou(unit, q) == pytest.approx(1 / 2, abs=1e-15)  # 2/3 / (1 + 1 - 2/3)
    assert iou(dart, (2, 2, 0, 2, 1.5, 1.5, 2, 0)) == 0.0  # the mirrored dart touches it at two corners
    q = prepare_quads(np.array([dart, SQUARE]))
    assert q.convex.tolist() == [False, True]


def test_degenerate_quads_give_zero_without_nan() -> None:
    degenerate = np.array(
        [
            [1, 1, 1, 1, 1, 1, 1, 1],  # a point
            [0, 0, 1, 1, 2, 2, 0.5, 0.5],  # collinear corners
            [0, 0, 2, 0, 2, 0, 0, 0],  # a segment along an edge of the square
            [0, 0, 2, 0, 2, 0, 2, 0],  # repeated corners
        ],
        dtype=np.float64,
    )
    square = np.repeat(np.array([SQUARE]), len(degenerate), axis=0)
    for a, b in ((degenerate, square), (square, degenerate), (degenerate, degenerate)):
        out = quad_iou_aligned(a, b)
        assert np.isfinite(out).all() and out.max() == 0.0
    # a triangle stored as a quad (a repeated corner) is its triangle
    triangle = (0, 0, 2, 0, 2, 0, 0, 2)
    assert iou(triangle, SQUARE) == pytest.approx(0.5, abs=1e-15)
    assert iou(triangle, rect(0, 0, 1, 1)) == pytest.approx(1 / 2, abs=1e-15)  # 1 / (2 + 1 - 1)


def test_bow_ties_are_replaced_by_their_convex_hull() -> None:
    for bow_tie in ((0, 0, 2, 2, 2, 0, 0, 2), (0, 0, 2, 0, 0, 2, 2, 2)):
        assert iou(bow_tie, SQUARE) == pytest.approx(1.0, abs=1e-15)
        assert prepare_quads(np.array([bow_tie])).area[0] == pytest.approx(4.0, abs=1e-15)


def test_bad_shapes_are_rejected_with_the_shape() -> None:
    with pytest.raises(ValueError, match=r"quads must have shape \(N, 8\), got \(3, 5\)"):
        prepare_quads(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"got \(2, 8\) and \(3, 8\)"):
        quad_iou_aligned(np.zeros((2, 8)), np.zeros((3, 8)))
    assert quad_iou_aligned(np.zeros((0, 8)), np.zeros((0, 8))).shape == (0,)


# --- against shapely -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_matches_shapely_on_rectangles_and_convex_and_non_convex_quads(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cases = {
        "rectangles": (rotated_rects(rng, 3000, 40), rotated_rects(rng, 3000, 40)),
        "convex": (general_quads(rng, 3000, 40, True), general_quads(rng, 3000, 40, True)),
        "non-convex x convex": (general_quads(rng, 3000, 40, False), general_quads(rng, 3000, 40, True)),
        "non-convex": (general_quads(rng, 3000, 40, False), general_quads(rng, 3000, 40, False)),
    }
    for name, (a, b) in cases.items():
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        assert n > 500, name
        ref = shapely_iou(a, b)
        assert (ref > 0).mean() > 0.2, name
        np.testing.assert_allclose(quad_iou_aligned(a, b), ref, rtol=0, atol=1e-12, err_msg=name)


def test_far_from_the_origin_and_axis_aligned_touching_or_contained() -> None:
    rng = np.random.default_rng(5)
    a, b = general_quads(rng, 2000, 40, True), general_quads(rng, 2000, 40, True)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    far = np.tile([1e6, 2e6], 4)
    np.testing.assert_allclose(quad_iou_aligned(a + far, b + far), shapely_iou(a, b), rtol=0, atol=1e-9)
    # integer rectangles on a small grid: shared edges, containment, touching corners, identical boxes
    corners = rng.integers(0, 6, (8000, 4))
    x1, y1 = corners[:, 0], corners[:, 1]
    x2, y2 = x1 + 1 + corners[:, 2] % 3, y1 + 1 + corners[:, 3] % 3
    rects = np.stack((x1, y1, x2, y1, x2, y2, x1, y2), axis=1).astype(np.float64)
    other = np.roll(rects, 1, axis=0)
    np.testing.assert_allclose(quad_iou_aligned(rects, other), shapely_iou(rects, other), rtol=0, atol=1e-15)


# --- bit for bit the torch op ----------------------------------------------------------------------------


def test_bit_for_bit_the_torch_op() -> None:
    rng = np.random.default_rng(11)
    grid = rng.integers(0, 5, (15000, 8)).astype(np.float64)  # convex, non-convex, bow-ties, degenerate
    grid2 = rng.integers(0, 5, (15000, 8)).astype(np.float64)
    rects = rotated_rects(rng, 8000, 50)
    shifted = rects + np.tile(rects[:, 2:4] - rects[:, 0:2], 4)  # neighbours sharing an edge
    quads = general_quads(rng, 8000, 50, True)
    darts = general_quads(rng, 8000, 50, False)
    n = min(len(quads), len(darts))
    slivers = rects.reshape(-1, 4, 2).copy()
    slivers[:, 2:] = slivers[:, 1::-1] + (slivers[:, 2:] - slivers[:, 1::-1]) * 1e-9  # height ~1e-8
    nearly = quads.reshape(-1, 4, 2).copy()  # corner 0 on the line through its neighbours, give or take
    nearly[:, 0] = (nearly[:, 1] + nearly[:, 3]) / 2 + rng.normal(0, 1e-12, (len(nearly), 2))
    m = min(len(slivers), len(nearly))
    cases = {
        "slivers x nearly collinear corners": (slivers.reshape(-1, 8)[:m], nearly.reshape(-1, 8)[:m]),
        "nearly collinear corners x rectangles": (nearly.reshape(-1, 8)[:m], rects[:m]),
        "integer grid": (grid, grid2),
        "touching rectangles": (rects, shifted),
        "identical, rolled": (rects, np.roll(rects, 2, axis=1)),
        "convex x non-convex": (quads[:n], darts[:n]),
        "reversed orientation": (quads, quads.reshape(-1, 4, 2)[:, ::-1].reshape(-1, 8)),
    }
    for name, (a, b) in cases.items():
        a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
        assert np.array_equal(quad_iou_aligned(a, b), torch_iou(a, b)), name


def test_chunks_do_not_change_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    a = np.concatenate((general_quads(rng, 500, 30, True), general_quads(rng, 500, 30, False)))
    b = a[rng.permutation(len(a))]
    expected = quad_iou_aligned(a, b)
    monkeypatch.setattr(_quad_iou, "_CHUNK", 7)
    monkeypatch.setattr(_quad_iou, "_PREPARE_BLOCK", 5)
    assert np.array_equal(quad_iou_aligned(a, b), expected)
