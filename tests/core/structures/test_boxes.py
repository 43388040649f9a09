import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from daik_core.structures import (
    ANGLE_BINS,
    normalize_angle,
    normalize_obb,
    obb_to_hbb,
    obb_to_poly,
    poly_area,
    poly_to_hbb,
    poly_to_obb,
)

PI = math.pi


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_worked_examples_of_the_convention() -> None:
    torch.testing.assert_close(obb_to_poly(t(50, 50, 40, 10, 0)), t(30, 45, 70, 45, 70, 55, 30, 55))
    torch.testing.assert_close(obb_to_hbb(t(50, 50, 40, 10, 0)), t(30, 45, 70, 55))
    torch.testing.assert_close(obb_to_poly(t(50, 50, 40, 10, PI / 2)), t(55, 30, 55, 70, 45, 70, 45, 30))
    torch.testing.assert_close(normalize_obb(t(0, 0, 10, 40, 0)), t(0, 0, 40, 10, PI / 2))
    torch.testing.assert_close(normalize_obb(t(0, 0, 40, 10, -PI / 4)), t(0, 0, 40, 10, 3 * PI / 4))
    torch.testing.assert_close(normalize_obb(t(0, 0, 40, 10, PI)), t(0, 0, 40, 10, 0))
    torch.testing.assert_close(poly_to_obb(t(0, 0, 4, 0, 4, 2, 0, 2)), t(2, 1, 4, 2, 0))
    torch.testing.assert_close(poly_to_obb(t(0, 0, 0, 4, -2, 4, -2, 0)), t(-1, 2, 4, 2, PI / 2))
    assert ANGLE_BINS == 180


def test_normalize_angle_range_edges() -> None:
    a = normalize_angle(t(-1e-20, -PI, 0, PI, 2 * PI + 0.1, -0.1))
    assert bool(((a >= 0) & (a < PI)).all())
    torch.testing.assert_close(a[4], torch.tensor(0.1, dtype=torch.float64))
    torch.testing.assert_close(a[5], torch.tensor(PI - 0.1, dtype=torch.float64))


def test_degenerate_poly_gives_zero_box() -> None:
    obb = poly_to_obb(t(3, 4, 3, 4, 3, 4, 3, 4))
    torch.testing.assert_close(obb, t(3, 4, 0, 0, 0))


def test_non_convex_quad_uses_hull() -> None:
    # a triangle with the fourth corner inside it: the rectangle must contain all four points
    poly = t(0, 0, 10, 0, 1, 1, 0, 10)
    obb = poly_to_obb(poly)
    back = obb_to_poly(obb).reshape(4, 2)
    pts = poly.reshape(4, 2)
    # every point inside the rectangle (project on the rectangle's axes)
    c, (w, h), a = obb[:2], obb[2:4], obb[4]
    u = torch.stack((torch.cos(a), torch.sin(a)))
    v = torch.stack((-torch.sin(a), torch.cos(a)))
    assert bool(((pts - c) @ u).abs().le(w / 2 + 1e-9).all())
    assert bool(((pts - c) @ v).abs().le(h / 2 + 1e-9).all())
    assert poly_area(back.reshape(8)) <= 100 + 1e-9  # no larger than the 10x10 axis-aligned box


def test_batched_shapes_and_dtypes() -> None:
    obb = torch.rand(3, 7, 5) * 100
    assert obb_to_poly(obb).shape == (3, 7, 8)
    assert poly_to_obb(obb_to_poly(obb)).shape == (3, 7, 5)
    assert obb_to_hbb(obb).shape == (3, 7, 4)
    assert poly_to_hbb(obb_to_poly(obb)).shape == (3, 7, 4)
    assert poly_to_obb(torch.zeros(0, 8)).shape == (0, 5)


def test_obb_to_poly_is_differentiable() -> None:
    obb = t(10, 10, 8, 4, 0.3).requires_grad_(True)
    obb_to_poly(obb).sum().backward()
    assert obb.grad is not None and torch.isfinite(obb.grad).all()


boxes = st.tuples(
    st.floats(-500, 500),
    st.floats(-500, 500),
    st.floats(1, 300),
    st.floats(1, 300),
    st.floats(-10, 10),
)


@settings(max_examples=300, deadline=None)
@given(boxes)
def test_roundtrip_obb_poly_obb(b: tuple[float, float, float, float, float]) -> None:
    obb = normalize_obb(t(*b))
    back = poly_to_obb(obb_to_poly(obb))
    torch.testing.assert_close(back[:4], obb[:4], atol=1e-6, rtol=1e-9)
    w, h = float(obb[2]), float(obb[3])
    if abs(w - h) > 1e-6:  # a square's angle is only defined modulo pi/2
        diff = abs(float(back[4] - obb[4]))
        assert min(diff, PI - diff) < 1e-6
    assert float(back[2]) >= float(back[3])
    assert 0 <= float(back[4]) < PI


@settings(max_examples=200, deadline=None)
@given(boxes)
def test_normalize_keeps_the_same_rectangle(b: tuple[float, float, float, float, float]) -> None:
    raw = t(*b)
    norm = normalize_obb(raw)
    assert float(norm[2]) >= float(norm[3])
    assert 0 <= float(norm[4]) < PI
    # same set of corners (cyclic order may change)
    p1 = obb_to_poly(raw).reshape(4, 2)
    p2 = obb_to_poly(norm).reshape(4, 2)
    d = torch.cdist(p1, p2)
    assert float(d.min(1).values.max()) < 1e-6
    torch.testing.assert_close(poly_area(obb_to_poly(raw)), raw[2] * raw[3])


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
            ],
        ),
    ],
)
def test_devices(device: str) -> None:
    obb = torch.tensor([[1.0, 2.0, 6.0, 2.0, 0.5]], device=device)
    back = poly_to_obb(obb_to_poly(obb))
    assert back.device.type == device
    torch.testing.assert_close(back, obb, atol=1e-5, rtol=1e-5)
