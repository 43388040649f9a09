import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from daik_core.ops import (
    poly_iou,
    poly_iou_aligned,
    rotated_iou,
    rotated_iou_aligned,
    rotated_iou_loss,
)
from daik_core.structures import obb_to_poly
from tests.core.ops._data import random_obb, random_quads, shapely_iou, shapely_obb_iou
from tests.core.ops._reference import exact_convex_iou

PI = math.pi
F64 = torch.float64
DTYPES = [torch.float32, torch.float64]


def cuda(test: Any) -> Any:
    """Marks ``test`` as a GPU test, skipped without a CUDA device."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(test))


def obb(*rows: tuple[float, ...], dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


def iou1(b1: tuple[float, ...], b2: tuple[float, ...], dtype: torch.dtype = F64) -> float:
    value = rotated_iou(obb(b1, dtype=dtype), obb(b2, dtype=dtype))
    assert value.shape == (1, 1)
    return float(value[0, 0])


# --- hand-computed values ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_hand_computed_values(dtype: torch.dtype) -> None:
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    # unit squares overlapping by half: 0.5 / 1.5
    assert iou1((0.5, 0.5, 1, 1, 0), (1, 0.5, 1, 1, 0), dtype) == pytest.approx(1 / 3, abs=tol)
    # a 100x20 box and the same box turned by 90 degrees: 20*20 / (2000 + 2000 - 400)
    assert iou1((0, 0, 100, 20, 0), (0, 0, 100, 20, PI / 2), dtype) == pytest.approx(1 / 9, abs=tol)
    # a square and itself turned by 45 degrees: octagon 2(sqrt2 - 1) / (2 - 2(sqrt2 - 1)) = 1/sqrt2
    assert iou1((3, 4, 1, 1, 0), (3, 4, 1, 1, PI / 4), dtype) == pytest.approx(0.70710678, abs=max(tol, 1e-8))
    assert iou1((3, 4, 1, 1, 0), (3, 4, 1, 1, PI / 4), dtype) == pytest.approx(1 / math.sqrt(2), abs=tol)
    # identical, disjoint, containment (area ratio), touching edges and corners
    assert iou1((10, 10, 40, 10, 0.3), (10, 10, 40, 10, 0.3), dtype) == pytest.approx(1.0, abs=tol)
    assert iou1((0, 0, 2, 1, 0.2), (10, 10, 2, 1, 1.2), dtype) == 0.0
    assert iou1((0, 0, 10, 10, 0.2), (1, -1, 4, 2, 1.1), dtype) == pytest.approx(8 / 100, abs=tol)
    assert iou1((0, 0, 2, 2, 0), (2, 0, 2, 2, 0), dtype) == pytest.approx(0.0, abs=tol)
    assert iou1((0, 0, 2, 2, 0.7), (2 * math.cos(0.7), 2 * math.sin(0.7), 2, 2, 0.7), dtype) == pytest.approx(
        0.0, abs=tol
    )
    assert iou1((0, 0, 2, 2, 0), (2, 2, 2, 2, 0), dtype) == pytest.approx(0.0, abs=tol)


def test_shared_edges_and_nested_boxes_are_exact() -> None:
    # same-side shared edge (inside), opposite-side shared edge (touching), overlap along the long axis
    assert iou1((0, 0, 4, 2, 0.4), (0, 0, 2, 2, 0.4)) == pytest.approx(0.5, abs=1e-12)
    c, s = math.cos(0.4), math.sin(0.4)
    assert iou1((0, 0, 4, 2, 0.4), (c, s, 2, 2, 0.4)) == pytest.approx(0.5, abs=1e-12)
    assert iou1((0, 0, 4, 2, 0.4), (2 * c, 2 * s, 2, 2, 0.4)) == pytest.approx(2 / 10, abs=1e-12)
    assert iou1((0, 0, 4, 2, 0.4), (3 * c, 3 * s, 2, 2, 0.4)) == pytest.approx(0.0, abs=1e-12)
    assert iou1((0, 0, 4, 2, 0.4), (c, s, 4, 2, 0.4)) == pytest.approx(6 / 10, abs=1e-12)
    assert iou1((0, 0, 4, 2, 0.4), (-2 * s, 2 * c, 4, 2, 0.4)) == pytest.approx(0.0, abs=1e-12)


def test_degenerate_boxes_give_zero_without_nan() -> None:
    # rows 0-2 and columns 2-3 are degenerate (a point, segments); (1, 1, 2, 2, 0) x (0, 0, 1, 1, 0) is not
    b1 = obb((0, 0, 0, 0, 0), (0, 0, 5, 0, 0.3), (0, 0, 0, 3, 1.0), (1, 1, 2, 2, 0))
    b2 = obb((0, 0, 1, 1, 0), (0, 0, 2, 2, 0.3), (0, 0, 0, 0, 0), (1, 1, 0, 0, 0))
    out = rotated_iou(b1, b2)
    assert torch.isfinite(out).all()
    assert float(out[:3].abs().max()) < 1e-12 and float(out[:, 2:].abs().max()) < 1e-12
    assert float(out[3, 0]) == pytest.approx(0.25 / 4.75, abs=1e-12)
    assert torch.equal(rotated_iou_aligned(b1[:3], b2[:3]), torch.zeros(3, dtype=F64))


def test_empty_inputs_give_shaped_empties() -> None:
    b = random_obb(3, seed=0)
    e = b[:0]
    assert rotated_iou(e, b).shape == (0, 3)
    assert rotated_iou(b, e).shape == (3, 0)
    assert rotated_iou_aligned(e, e).shape == (0,)
    p = obb_to_poly(b)
    assert poly_iou(p[:0], p).shape == (0, 3)
    assert poly_iou(p, p[:0]).shape == (3, 0)
    assert poly_iou_aligned(p[:0], p[:0]).shape == (0,)


def test_bad_shapes_are_rejected_with_the_shape() -> None:
    with pytest.raises(ValueError, match=r"boxes1 must have shape \(N, 5\), got \(3, 4\)"):
        rotated_iou(torch.zeros(3, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="as many"):
        rotated_iou_aligned(torch.zeros(3, 5), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"polys2 must have shape \(N, 8\)"):
        poly_iou(torch.zeros(3, 8), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="chunk_size"):
        rotated_iou(torch.zeros(3, 5), torch.zeros(2, 5), chunk_size=0)


def test_dtypes_follow_the_input() -> None:
    b = random_obb(4, seed=1)
    assert rotated_iou(b, b).dtype == F64
    assert rotated_iou(b.float(), b.float()).dtype == torch.float32
    assert rotated_iou(b.half(), b.half()).dtype == torch.float32  # computed in float32
    assert rotated_iou(b.float(), b).dtype == F64


# --- references ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("span", [1024.0, 80.0])  # sparse (DOTA-like) and dense (everything overlaps)
def test_matches_shapely_on_random_boxes(span: float) -> None:
    n = 300 if span > 100 else 150
    b1, b2 = random_obb(n, seed=2, span=span), random_obb(n - 20, seed=3, span=span)
    ref = shapely_obb_iou(b1, b2)
    assert (ref > 0).mean() > (0.01 if span > 100 else 0.5)
    np.testing.assert_allclose(rotated_iou(b1, b2).numpy(), ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(rotated_iou(b1.float(), b2.float()).double().numpy(), ref, rtol=0, atol=2e-5)
    np.testing.assert_allclose(poly_iou(obb_to_poly(b1), obb_to_poly(b2)).numpy(), ref, rtol=0, atol=1e-9)


def test_matches_exact_rational_reference_on_shared_edges() -> None:
    """Boxes on a half-integer grid at multiples of 22.5 degrees: shared edges, corners and identical boxes.

    Shapely (GEOS overlay) itself is unreliable on such inputs (it returns a point set for some nested boxes
    with a shared edge), so the reference is Sutherland-Hodgman clipping in exact rational arithmetic.
    """
    g = torch.Generator().manual_seed(4)
    n = 300
    angle = torch.randint(0, 8, (n,), generator=g).to(F64) * PI / 8
    sides = torch.randint(1, 6, (n, 4), generator=g).to(F64)
    centre = torch.randint(0, 10, (n, 2), generator=g).to(F64) / 2
    shift = torch.randint(-6, 7, (n, 2), generator=g).to(F64) / 2  # along the first box's axes
    cos, sin = torch.cos(angle), torch.sin(angle)
    centre2 = centre + torch.stack(
        (shift[:, 0] * cos - shift[:, 1] * sin, shift[:, 0] * sin + shift[:, 1] * cos), 1
    )
    turn = torch.randint(0, 2, (n,), generator=g).to(F64) * PI / 2
    b1 = torch.cat((centre, sides[:, :2], angle[:, None]), dim=1)
    b2 = torch.cat((centre2, sides[:, 2:], (angle + turn)[:, None]), dim=1)
    b2[::10] = b1[::10]
    p1, p2 = obb_to_poly(b1), obb_to_poly(b2)
    ref = np.array([exact_convex_iou(a.tolist(), b.tolist()) for a, b in zip(p1, p2, strict=True)])
    assert 0.3 < (ref > 0).mean() < 0.95
    np.testing.assert_allclose(rotated_iou_aligned(b1, b2).numpy(), ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(poly_iou_aligned(p1, p2).numpy(), ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(rotated_iou_aligned(b1.float(), b2.float()).double().numpy(), ref, atol=2e-6)


def test_nearly_parallel_nearly_shared_edges() -> None:
    """Long edges on (almost) the same line, turned by 1e-5..1e-15 rad: the crossing point of the two edges
    is ill-conditioned, and both polygons' boundaries must be split at the same point."""
    g = torch.Generator().manual_seed(14)
    rows1, rows2 = [], []
    for k in range(120):
        a = float(torch.rand(1, generator=g)) * PI
        turn = 10 ** (-5 - 10 * float(torch.rand(1, generator=g))) * (1 if k % 2 else -1)
        along = float(torch.rand(1, generator=g)) * 600 - 300
        # P: 1000 x 3 centred at 0; Q: 700 x 2 whose edge starts on P's long edge, inside or outside P
        rows1.append((0.0, 0.0, 1000.0, 3.0, a))
        side = -1.0 if k % 4 < 2 else 1.0
        cx = along * math.cos(a) - (1.5 + side) * math.sin(a)
        cy = along * math.sin(a) + (1.5 + side) * math.cos(a)
        rows2.append((cx, cy, 700.0, 2.0, a + turn))
    p1, p2 = obb_to_poly(obb(*rows1)), obb_to_poly(obb(*rows2))
    ref = np.array([exact_convex_iou(a.tolist(), b.tolist()) for a, b in zip(p1, p2, strict=True)])
    assert (ref > 0.1).sum() > 50 and (ref < 1e-4).sum() > 50
    np.testing.assert_allclose(poly_iou_aligned(p1, p2).numpy(), ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(rotated_iou_aligned(obb(*rows1), obb(*rows2)).numpy(), ref, rtol=0, atol=1e-9)


def test_float32_stays_accurate_far_from_the_origin() -> None:
    b1, b2 = random_obb(120, seed=5, span=60.0), random_obb(120, seed=6, span=60.0)
    b1[:, 2:4] /= 10  # small boxes (1..20 px) ...
    b2[:, 2:4] /= 10
    b1[:, :2] = b1[:, :2] / 6 + 4000  # ... around (4000, 4000)
    b2[:, :2] = b2[:, :2] / 6 + 4000
    ref = rotated_iou(b1, b2)
    assert (ref > 0).float().mean() > 0.3
    torch.testing.assert_close(rotated_iou(b1.float(), b2.float()).double(), ref, rtol=0, atol=1e-4)


def test_aligned_and_chunked_agree_with_the_matrix() -> None:
    b1, b2 = random_obb(50, seed=7, span=200.0), random_obb(50, seed=8, span=200.0)
    full = rotated_iou(b1, b2)
    assert (full > 0).sum() > 200
    torch.testing.assert_close(rotated_iou(b1, b2, chunk_size=37), full, rtol=0, atol=0)
    torch.testing.assert_close(rotated_iou_aligned(b1, b2, chunk_size=5), full.diagonal(), rtol=0, atol=1e-15)
    torch.testing.assert_close(rotated_iou_loss(b1, b2), 1 - full.diagonal(), rtol=0, atol=1e-15)
    p1, p2 = obb_to_poly(b1), obb_to_poly(b2)
    torch.testing.assert_close(poly_iou(p1, p2, chunk_size=29), full, rtol=0, atol=1e-12)
    torch.testing.assert_close(poly_iou_aligned(p1, p2, chunk_size=3), full.diagonal(), rtol=0, atol=1e-12)


# --- quadrilaterals --------------------------------------------------------------------------------------


def test_poly_iou_matches_shapely_on_convex_and_non_convex_quads() -> None:
    convex, dart = random_quads(150, seed=9, convex=True), random_quads(150, seed=10, convex=False)
    assert convex.shape[0] > 100 and dart.shape[0] > 100
    q1 = torch.cat((convex[:60], dart[:60]))
    q2 = torch.cat((dart[60:120], convex[60:120]))
    ref = shapely_iou(q1, q2)
    assert (ref > 0).mean() > 0.2
    np.testing.assert_allclose(poly_iou(q1, q2).numpy(), ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(poly_iou(q1.float(), q2.float()).double().numpy(), ref, rtol=0, atol=2e-5)
    np.testing.assert_allclose(poly_iou_aligned(q1, q2).numpy(), np.diagonal(ref), rtol=0, atol=1e-9)


def test_poly_iou_hand_cases_and_orientation() -> None:
    square = torch.tensor([[0, 0, 2, 0, 2, 2, 0, 2]], dtype=F64)
    unit = torch.tensor([[0, 0, 1, 0, 1, 1, 0, 1]], dtype=F64)
    # a dart (non-convex) with its reflex vertex at (0.5, 0.5): area 1, inside the square
    dart = torch.tensor([[0, 0, 2, 0, 0.5, 0.5, 0, 2]], dtype=F64)
    # every orientation and starting vertex gives the same values
    for q in (
        dart,
        dart.reshape(1, 4, 2).flip(1).reshape(1, 8),
        dart.reshape(1, 4, 2).roll(1, 1).reshape(1, 8),
        dart.reshape(1, 4, 2).roll(2, 1).flip(1).reshape(1, 8),
    ):
        assert float(poly_iou(square, q)) == pytest.approx(1 / 4, abs=1e-12)
        assert float(poly_iou(q, dart)) == pytest.approx(1.0, abs=1e-12)
        # the unit square minus the notch (a quad of area 1/3): 2/3 / (1 + 1 - 2/3)
        assert float(poly_iou(unit, q)) == pytest.approx(1 / 2, abs=1e-12)
        assert float(poly_iou_aligned(q, unit)) == pytest.approx(1 / 2, abs=1e-12)
    # the mirrored dart only touches it at two corners
    mirrored = torch.tensor([[2, 2, 0, 2, 1.5, 1.5, 2, 0]], dtype=F64)
    assert float(poly_iou(dart, mirrored)) == pytest.approx(0.0, abs=1e-12)


def test_poly_iou_degenerate_and_bow_tie_quads() -> None:
    square = torch.tensor([[0, 0, 2, 0, 2, 2, 0, 2]], dtype=F64)
    degenerate = torch.tensor(
        [
            [1, 1, 1, 1, 1, 1, 1, 1],  # a point
            [0, 0, 1, 1, 2, 2, 0.5, 0.5],  # collinear corners
            [0, 0, 2, 0, 2, 0, 0, 0],  # a segment along an edge
        ],
        dtype=F64,
    )
    out = poly_iou(degenerate, square)
    assert torch.isfinite(out).all() and float(out.abs().max()) < 1e-12
    assert torch.equal(poly_iou_aligned(degenerate, degenerate), torch.zeros(3, dtype=F64))
    # a bow-tie (corners of the square in crossing order) is replaced by the convex hull: the square
    bow_ties = torch.tensor([[0, 0, 2, 2, 2, 0, 0, 2], [0, 0, 2, 0, 0, 2, 2, 2]], dtype=F64)
    out = poly_iou(bow_ties, square)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.ones(2, 1, dtype=F64), rtol=0, atol=1e-12)


# --- properties ------------------------------------------------------------------------------------------

coord = st.floats(-50, 50, allow_nan=False, width=64)
side = st.floats(0.5, 40, allow_nan=False, width=64)
angle = st.floats(0, PI, allow_nan=False, exclude_max=True, width=64)
box = st.tuples(coord, coord, side, side, angle)


@settings(max_examples=60, deadline=None)
@given(b1=box, b2=box, shift=st.tuples(coord, coord), turn=st.floats(-PI, PI), pivot=st.tuples(coord, coord))
def test_properties(
    b1: tuple[float, ...],
    b2: tuple[float, ...],
    shift: tuple[float, float],
    turn: float,
    pivot: tuple[float, float],
) -> None:
    a, b = obb(b1), obb(b2)
    ab, ba = float(rotated_iou(a, b)), float(rotated_iou(b, a))
    assert 0.0 <= ab <= 1.0
    assert ab == pytest.approx(ba, abs=1e-9)
    assert float(rotated_iou(a, a)) == pytest.approx(1.0, abs=1e-9)
    both = torch.cat((a, b))
    moved = both.clone()
    moved[:, :2] += torch.tensor(shift, dtype=F64)
    assert float(rotated_iou(moved[:1], moved[1:])) == pytest.approx(ab, abs=1e-9)
    # rotate the centres about a pivot and turn both boxes by the same angle
    c, s = math.cos(turn), math.sin(turn)
    rel = both[:, :2] - torch.tensor(pivot, dtype=F64)
    turned = both.clone()
    turned[:, 0] = pivot[0] + c * rel[:, 0] - s * rel[:, 1]
    turned[:, 1] = pivot[1] + s * rel[:, 0] + c * rel[:, 1]
    turned[:, 4] += turn
    assert float(rotated_iou(turned[:1], turned[1:])) == pytest.approx(ab, abs=1e-9)
    # the quad path agrees, whatever the corner order
    p = obb_to_poly(both)
    assert float(poly_iou(p[:1], p[1:].reshape(1, 4, 2).flip(1).reshape(1, 8))) == pytest.approx(ab, abs=1e-9)


# --- gradients -------------------------------------------------------------------------------------------


def test_gradcheck_on_generic_pairs() -> None:
    g = torch.Generator().manual_seed(11)
    n = 8
    b1 = torch.cat((torch.rand(n, 2, generator=g) * 10, 5 + torch.rand(n, 2, generator=g) * 10), 1)
    b2 = torch.cat((torch.rand(n, 2, generator=g) * 10, 5 + torch.rand(n, 2, generator=g) * 10), 1)
    a1, a2 = torch.rand(n, 1, generator=g) * PI, torch.rand(n, 1, generator=g) * PI
    b1 = torch.cat((b1, a1), 1).to(F64).requires_grad_()
    b2 = torch.cat((b2, a2), 1).to(F64).requires_grad_()
    assert (rotated_iou_aligned(b1, b2) > 0).sum() > n // 2
    assert torch.autograd.gradcheck(rotated_iou_aligned, (b1, b2))
    p1 = obb_to_poly(b1.detach()).requires_grad_()
    p2 = obb_to_poly(b2.detach()).requires_grad_()
    assert torch.autograd.gradcheck(poly_iou_aligned, (p1, p2), fast_mode=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_are_finite_in_degenerate_cases(dtype: torch.dtype) -> None:
    c, s = math.cos(0.4), math.sin(0.4)
    pred = obb(
        (0, 0, 4, 2, 0.3),  # identical
        (0, 0, 4, 2, 0.3),  # nearly identical angle
        (0, 0, 4, 2, 0.4),  # nested with a shared edge
        (0, 0, 4, 2, 0.4),  # touching along an edge
        (0, 0, 4, 2, 0.0),  # same box turned by 90 degrees
        (0, 0, 0, 0, 0.0),  # zero size
        (0, 0, 6, 6, 0.0),  # containment
        (0, 0, 4, 2, 0.0),  # disjoint
        dtype=dtype,
    ).requires_grad_()
    target = obb(
        (0, 0, 4, 2, 0.3),
        (0, 0, 4, 2, 0.3 + 1e-6),
        (c, s, 2, 2, 0.4),
        (-2 * s, 2 * c, 4, 2, 0.4),
        (0, 0, 4, 2, PI / 2),
        (0, 0, 1, 1, 0.0),
        (0.5, 0.5, 2, 1, 0.7),
        (50, 50, 4, 2, 0.0),
        dtype=dtype,
    ).requires_grad_()
    loss = rotated_iou_loss(pred, target)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert pred.grad is not None and target.grad is not None
    assert torch.isfinite(pred.grad).all() and torch.isfinite(target.grad).all()
    assert float(pred.grad.abs().max()) < 10
    # a worse prediction gets a gradient that points towards the target (centre pulled along +x)
    pred2 = obb((-1, 0, 4, 2, 0.0), dtype=dtype).requires_grad_()
    rotated_iou_loss(pred2, obb((0, 0, 4, 2, 0.0), dtype=dtype)).sum().backward()
    assert pred2.grad is not None and float(pred2.grad[0, 0]) < 0


# --- CUDA ----------------------------------------------------------------------------------------------


@cuda
def test_cuda_matches_cpu() -> None:
    b1, b2 = random_obb(500, seed=12, span=300.0), random_obb(400, seed=13, span=300.0)
    ref = rotated_iou(b1, b2)
    torch.testing.assert_close(rotated_iou(b1.cuda(), b2.cuda()).cpu(), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        rotated_iou(b1.float().cuda(), b2.float().cuda()).double().cpu(), ref, atol=2e-5, rtol=0
    )
    p1, p2 = obb_to_poly(b1), obb_to_poly(b2)
    torch.testing.assert_close(poly_iou(p1.cuda(), p2.cuda()).cpu(), ref, rtol=0, atol=1e-12)
    pred = b1[:400].cuda().requires_grad_()
    rotated_iou_loss(pred, b2.cuda()).sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
