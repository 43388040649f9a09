"""Decoding: CSL angle bins, DFL expectation and (distances, angle) -> obb, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from daik_core.models import (
    angle_to_csl_bin,
    csl_bin_to_angle,
    decode_boxes,
    dfl_expectation,
    distances_to_obb,
    obb_to_distances,
)
from daik_core.structures.boxes import ANGLE_BINS

DEG = math.pi / 180


def test_angle_to_csl_bin_edges() -> None:
    angles = torch.tensor([0.0, 0.999 * DEG, 1.0 * DEG + 1e-6, 90 * DEG, 179.5 * DEG, math.pi - 1e-7])
    assert angle_to_csl_bin(angles).tolist() == [0, 0, 1, 90, 179, 179]
    # angles outside [0, pi) are taken modulo pi: -0.5 degree is 179.5 degrees, pi is 0
    assert angle_to_csl_bin(torch.tensor([-0.5 * DEG, math.pi, 2 * math.pi + 0.5 * DEG])).tolist() == [
        179,
        0,
        0,
    ]
    assert angle_to_csl_bin(torch.tensor([0.0])).dtype == torch.int64


def test_csl_bin_to_angle_is_the_bin_centre() -> None:
    k = torch.tensor([0, 30, 179])
    torch.testing.assert_close(csl_bin_to_angle(k), torch.tensor([0.5, 30.5, 179.5]) * DEG)
    assert csl_bin_to_angle(k).dtype == torch.float32


def test_csl_round_trip_errs_by_at_most_half_a_bin() -> None:
    angles = torch.linspace(0, math.pi, 2001)[:-1]
    back = csl_bin_to_angle(angle_to_csl_bin(angles)).double()
    assert (back - angles.double()).abs().max() <= 0.5 * DEG + 1e-6
    assert ANGLE_BINS == 180


def test_dfl_expectation() -> None:
    logits = torch.full((3, 17), -math.inf)
    logits[0, 5] = 0.0  # one-hot at bin 5
    logits[1, 2] = logits[1, 3] = 0.0  # half at 2, half at 3
    logits[2] = 0.0  # uniform over 0..16
    torch.testing.assert_close(dfl_expectation(logits), torch.tensor([5.0, 2.5, 8.0]))


def _peaked(bins: list[int], r: int = 17) -> torch.Tensor:
    """DFL logits (4, R) with all the mass on one bin per distance."""
    logits = torch.full((4, r), -math.inf)
    for i, k in enumerate(bins):
        logits[i, k] = 0.0
    return logits


def test_decode_boxes_hand_case() -> None:
    # anchor 0: stride 8 at (100, 50); (l, t, r, b) = (2, 1, 4, 1) strides = (16, 8, 32, 8) px; bin 30
    #   -> w = 48, h = 16, angle 30.5 deg, centre = p + u * (32 - 16) / 2 = p + 8 u
    # anchor 1: stride 16 at (40, 24); (l, t, r, b) = (1, 2, 1, 4) strides = (16, 32, 16, 64) px; bin 120
    #   -> w = 32 < h = 96: centre = p + v * (64 - 32) / 2 = p + 16 v with v = (-sin a, cos a),
    #      then the long-side rule swaps to (96, 32) and turns the angle to 210.5 - 180 = 30.5 deg
    box_logits = torch.stack((_peaked([2, 1, 4, 1]), _peaked([1, 2, 1, 4])))[None]  # (1, 2, 4, 17)
    angle_logits = torch.zeros(1, 2, ANGLE_BINS)
    angle_logits[0, 0, 30] = 5.0
    angle_logits[0, 1, 120] = 5.0
    points = torch.tensor([[100.0, 50.0], [40.0, 24.0]])
    strides = torch.tensor([8.0, 16.0])
    boxes = decode_boxes(box_logits, angle_logits, points, strides)
    assert boxes.shape == (1, 2, 5) and boxes.dtype == torch.float32

    a0, a1 = 30.5 * DEG, 120.5 * DEG
    expected = torch.tensor(
        [
            [100 + 8 * math.cos(a0), 50 + 8 * math.sin(a0), 48.0, 16.0, a0],
            [40 - 16 * math.sin(a1), 24 + 16 * math.cos(a1), 96.0, 32.0, a1 - math.pi / 2],
        ]
    )
    torch.testing.assert_close(boxes[0], expected, rtol=0, atol=1e-4)


def test_obb_to_distances_inverts_distances_to_obb() -> None:
    g = torch.Generator().manual_seed(0)
    n = 200
    obb = torch.stack(
        (
            torch.rand(n, generator=g) * 500,
            torch.rand(n, generator=g) * 500,
            torch.rand(n, generator=g) * 100 + 50,
            torch.rand(n, generator=g) * 40 + 5,
            torch.rand(n, generator=g) * math.pi,
        ),
        dim=-1,
    )
    # a point inside each box, given in the box's own frame
    su = (torch.rand(n, generator=g) - 0.5) * 0.9 * obb[:, 2]
    sv = (torch.rand(n, generator=g) - 0.5) * 0.9 * obb[:, 3]
    cos, sin = obb[:, 4].cos(), obb[:, 4].sin()
    points = torch.stack((obb[:, 0] + cos * su - sin * sv, obb[:, 1] + sin * su + cos * sv), dim=-1)
    dist = obb_to_distances(obb, points)
    assert (dist > 0).all()
    torch.testing.assert_close(dist[:, 0] + dist[:, 2], obb[:, 2])
    back = distances_to_obb(dist, obb[:, 4], points)
    torch.testing.assert_close(back, obb, rtol=0, atol=1e-3)


def test_distances_to_obb_is_differentiable() -> None:
    dist = torch.tensor([[3.0, 1.0, 5.0, 2.0]], requires_grad=True)
    angle = torch.tensor([0.3], requires_grad=True)
    distances_to_obb(dist, angle, torch.zeros(1, 2)).sum().backward()
    assert dist.grad is not None and torch.isfinite(dist.grad).all()
    assert angle.grad is not None and torch.isfinite(angle.grad).all()


@pytest.mark.parametrize("reg_max", [7, 16])
def test_decode_boxes_any_reg_max(reg_max: int) -> None:
    box_logits = torch.zeros(2, 3, 4, reg_max + 1)  # uniform: every distance reg_max / 2 strides
    boxes = decode_boxes(box_logits, torch.zeros(2, 3, ANGLE_BINS), torch.zeros(3, 2), torch.ones(3) * 8)
    side = reg_max * 8.0  # l + r = 2 * reg_max / 2 * stride
    torch.testing.assert_close(boxes[..., 2], torch.full((2, 3), side))
    torch.testing.assert_close(boxes[..., 3], torch.full((2, 3), side))
