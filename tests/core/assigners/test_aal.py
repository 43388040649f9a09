from __future__ import annotations

import math

import pytest
import torch

from daik_core.assigners import AALTable, aal_iou_grid, fold_angle_difference
from daik_core.ops import rotated_iou_aligned

DEG = math.pi / 180


@pytest.fixture(scope="module")
def table() -> AALTable:
    return AALTable("table")  # the default 400 x 400 grid (cached per process)


@pytest.fixture(scope="module")
def sin() -> AALTable:
    return AALTable("sin", r=3.0)


def direct_iou(ar: torch.Tensor, dtheta: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(ar, dtype=torch.float64)
    ar64, one = ar.to(torch.float64), torch.ones_like(z)
    box = torch.stack((z, z, ar64, one, z), -1)
    turned = torch.stack((z, z, ar64, one, dtheta.to(torch.float64)), -1)
    return rotated_iou_aligned(box, turned)


def test_fold_angle_difference() -> None:
    d = torch.tensor([0.0, 10, -10, 90, 100, 170, 180, 190, -370]) * DEG
    expected = torch.tensor([0.0, 10, 10, 90, 80, 10, 0, 10, 10]) * DEG
    torch.testing.assert_close(fold_angle_difference(d), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["table", "sin"])
def test_one_at_zero_difference_for_every_ar(mode: str, table: AALTable, sin: AALTable) -> None:
    aal = table if mode == "table" else sin
    ar = torch.linspace(0.5, 10.0, 97)  # includes AR < 1 and > ar_max (clamped)
    for zero in (0.0, math.pi, -math.pi, 2 * math.pi):
        torch.testing.assert_close(aal(ar, torch.full_like(ar, zero)), torch.ones_like(ar), atol=1e-5, rtol=0)


def test_table_square_is_90_degree_periodic(table: AALTable) -> None:
    theta = torch.linspace(-math.pi, math.pi, 361)
    one = torch.ones_like(theta)
    w = table(one, theta)
    torch.testing.assert_close(w, table(one, theta + math.pi / 2), atol=1e-5, rtol=0)
    assert float(table(one[:1], torch.tensor([math.pi / 2]))) == pytest.approx(1.0, abs=1e-6)
    assert float(table(one[:1], torch.tensor([math.pi / 4]))) < 0.75  # the square's minimum at 45 degrees


@pytest.mark.parametrize("mode", ["table", "sin"])
def test_symmetric_in_plus_minus_dtheta(mode: str, table: AALTable, sin: AALTable) -> None:
    aal = table if mode == "table" else sin
    g = torch.Generator().manual_seed(0)
    ar = 1 + 6 * torch.rand(500, generator=g)
    theta = (torch.rand(500, generator=g) * 2 - 1) * math.pi
    torch.testing.assert_close(aal(ar, theta), aal(ar, -theta), atol=1e-6, rtol=0)
    torch.testing.assert_close(aal(ar, theta), aal(ar, theta + math.pi), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["table", "sin"])
@pytest.mark.parametrize("ar", [2.0, 3.5, 7.0])
def test_decreasing_for_elongated_boxes(mode: str, ar: float, table: AALTable, sin: AALTable) -> None:
    aal = table if mode == "table" else sin
    theta = torch.linspace(0, math.pi / 2, 901)
    w = aal(torch.full_like(theta, ar), theta)
    assert bool((w[1:] <= w[:-1] + 1e-6).all())
    assert float(w[0]) == pytest.approx(1.0)
    assert float(w[-1]) < 0.5


def test_table_is_sharper_for_thin_boxes(table: AALTable) -> None:
    theta = torch.full((3,), 10 * DEG)
    w = table(torch.tensor([1.5, 3.0, 7.0]), theta)
    assert float(w[0]) > float(w[1]) > float(w[2])


@pytest.mark.parametrize("mode", ["table", "sin"])
def test_values_in_unit_interval(mode: str, table: AALTable, sin: AALTable) -> None:
    aal = table if mode == "table" else sin
    g = torch.Generator().manual_seed(1)
    ar = torch.rand(2000, generator=g) * 12
    theta = (torch.rand(2000, generator=g) * 2 - 1) * 4 * math.pi
    w = aal(ar, theta)
    assert bool(((w >= 0) & (w <= 1)).all())


def test_table_matches_direct_rotated_iou(table: AALTable) -> None:
    g = torch.Generator().manual_seed(2)
    ar = 1 + 6 * torch.rand(3000, generator=g, dtype=torch.float64)
    theta = (torch.rand(3000, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    err = (table(ar, theta).to(torch.float64) - direct_iou(ar, theta)).abs()
    assert float(err.max()) < 1.5e-3
    assert float(err.mean()) < 1e-4
    # at the grid points the table holds the rotated IoU itself
    grid = aal_iou_grid(7.0, 400, 400)
    i = torch.tensor([0, 57, 200, 399])
    k = torch.tensor([399, 133, 7, 20])
    ref = direct_iou(1 + i.double() * (6.0 / 399), k.double() * (math.pi / 2 / 399))
    torch.testing.assert_close(grid[i, k], ref, atol=1e-9, rtol=0)


def test_table_clamps_aspect_ratio(table: AALTable) -> None:
    theta = torch.full((3,), 5 * DEG)
    w = table(torch.tensor([7.0, 9.0, 50.0]), theta)
    torch.testing.assert_close(w, w[:1].expand(3))
    torch.testing.assert_close(table(torch.tensor([0.3, 1.0]), theta[:2]), table(torch.ones(2), theta[:2]))


def test_sin_reading_hand_values(sin: AALTable) -> None:
    # V = 1 for AR <= r = 3: W = 1 - sin(d); V = 2 above: W = 1 - sin(min(2d, 90 deg))
    ar = torch.tensor([2.0, 3.0, 2.0, 5.0, 5.0, 5.0])
    theta = torch.tensor([30.0, 90.0, 100.0, 30.0, 60.0, 160.0]) * DEG
    expected = torch.tensor(
        [0.5, 0.0, 1 - math.sin(80 * DEG), 1 - math.sin(60 * DEG), 0.0, 1 - math.sin(40 * DEG)]
    )
    torch.testing.assert_close(sin(ar, theta), expected, atol=1e-6, rtol=0)


def test_from_grid_and_dtype() -> None:
    ones = AALTable.from_grid(torch.ones(4, 5))
    theta = torch.linspace(-3, 3, 11, dtype=torch.float64)
    w = ones(torch.full_like(theta, 4.0), theta)
    assert w.dtype == torch.float64
    torch.testing.assert_close(w, torch.ones_like(theta))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        AALTable.from_grid(torch.full((3, 3), 1.5))
    with pytest.raises(ValueError, match="shape"):
        AALTable.from_grid(torch.ones(1, 3))
    with pytest.raises(ValueError, match="mode"):
        AALTable("cos")  # type: ignore[arg-type]


def test_grid_is_a_non_persistent_buffer(table: AALTable) -> None:
    assert "grid" in dict(table.named_buffers())
    assert table.state_dict() == {}
    assert table.grid.shape == (400, 400) and table.grid.dtype == torch.float32
