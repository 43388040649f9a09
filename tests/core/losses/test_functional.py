from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from daik_core.losses import csl_bce, csl_targets, dfl_loss, varifocal_loss
from daik_core.models.decode import angle_to_csl_bin

DEG = math.pi / 180


# ---------------------------------------------------------------------------------------------- DFL


def test_dfl_hand_value() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 4, 17, generator=g)
    target = torch.tensor([[2.3, 0.0, 7.0, 15.99]])
    loss = dfl_loss(logits, target)
    logp = F.log_softmax(logits, dim=-1)[0]
    expected = torch.stack(
        (
            -(0.7 * logp[0, 2] + 0.3 * logp[0, 3]),
            -logp[1, 0],
            -logp[2, 7],
            -(0.01 * logp[3, 15] + 0.99 * logp[3, 16]),
        )
    )
    torch.testing.assert_close(loss[0], expected, atol=1e-5, rtol=1e-5)
    # against F.cross_entropy as well
    ce2 = F.cross_entropy(logits[0, :1], torch.tensor([2]))
    ce3 = F.cross_entropy(logits[0, :1], torch.tensor([3]))
    assert float(loss[0, 0]) == pytest.approx(float(0.7 * ce2 + 0.3 * ce3), rel=1e-5)


def test_dfl_clamps_targets_to_the_bin_range() -> None:
    logits = torch.randn(2, 4, 5)
    far = dfl_loss(logits, torch.full((2, 4), 100.0))
    edge = dfl_loss(logits, torch.full((2, 4), 5 - 1 - 0.01))
    torch.testing.assert_close(far, edge)
    torch.testing.assert_close(
        dfl_loss(logits, torch.full((2, 4), -3.0)), dfl_loss(logits, torch.zeros(2, 4))
    )


def test_dfl_minimum_is_the_two_bin_distribution() -> None:
    target = torch.tensor([[2.3, 2.3, 2.3, 2.3]])
    p = torch.full((17,), 1e-6)
    p[2], p[3] = 0.7, 0.3
    best = torch.log(p).expand(1, 4, 17)
    worse = torch.log(torch.roll(p, 1)).expand(1, 4, 17)
    assert bool((dfl_loss(best, target) < dfl_loss(worse, target)).all())


# ---------------------------------------------------------------------------------------------- CSL


def test_csl_target_peak_at_the_bin_of_the_angle() -> None:
    angles = torch.tensor([0.5 * DEG, 37.2 * DEG, 90.0 * DEG, 179.9 * DEG])
    t = csl_targets(angles, 180, 6.0)
    assert t.shape == (4, 180)
    bins = angle_to_csl_bin(angles)
    assert bins.tolist() == [0, 37, 90, 179]
    assert t.argmax(dim=1).tolist() == bins.tolist()
    torch.testing.assert_close(t[torch.arange(4), bins], torch.ones(4))
    assert bool(((t >= 0) & (t <= 1)).all())
    # Gaussian with sigma 6 bins
    assert float(t[1, 37 + 6]) == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert float(t[1, 37 - 12]) == pytest.approx(math.exp(-2.0), rel=1e-6)


def test_csl_target_wraps_around() -> None:
    t = csl_targets(torch.tensor([0.001, math.pi - 0.001]), 180, 6.0)
    near0, near180 = t
    assert float(near0[179]) == pytest.approx(math.exp(-1 / 72), rel=1e-6)
    assert float(near0[178]) == pytest.approx(math.exp(-4 / 72), rel=1e-6)
    assert float(near0[179]) == float(near0[1]) and float(near0[178]) == float(near0[2])
    assert float(near180[0]) == pytest.approx(math.exp(-1 / 72), rel=1e-6)
    # the far side of the circle gets the least mass
    assert float(near0[90]) == float(near0.min())
    # an angle of pi is the angle 0
    torch.testing.assert_close(
        csl_targets(torch.tensor([math.pi]), 180, 6.0), csl_targets(torch.zeros(1), 180, 6.0)
    )


def test_csl_bce_sums_the_bce_over_bins_and_mean_divides_by_k() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 180, generator=g)
    target = csl_targets(torch.rand(3, generator=g) * math.pi)
    mean = torch.stack([F.binary_cross_entropy_with_logits(logits[i], target[i]) for i in range(3)])
    torch.testing.assert_close(csl_bce(logits, target), 180 * mean)  # the default: summed
    torch.testing.assert_close(csl_bce(logits, target, "mean"), mean)
    # by hand: logits 0 give log 2 per bin whatever the target
    assert float(csl_bce(torch.zeros(1, 180), target[:1])[0]) == pytest.approx(180 * math.log(2), rel=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        csl_bce(logits, target[:, :90])
    with pytest.raises(ValueError, match="reduction"):
        csl_bce(logits, target, "max")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- VFL


def test_vfl_zero_target_is_a_focal_push_down() -> None:
    logits = torch.tensor([[-3.0, 0.0, 2.0]])
    zeros = torch.zeros_like(logits)
    loss = varifocal_loss(logits, zeros, zeros, alpha=0.75, gamma=2.0)
    p = logits.sigmoid()
    expected = 0.75 * p.pow(2) * F.softplus(logits)  # BCE(x, 0) = softplus(x)
    torch.testing.assert_close(loss, expected)
    assert float(loss[0, 0]) < float(loss[0, 1]) < float(loss[0, 2])  # confident negatives cost more
    # a positive whose target is 0 contributes nothing
    assert float(varifocal_loss(logits, zeros, torch.ones_like(logits)).abs().sum()) == 0.0


def test_vfl_positive_is_bce_weighted_by_its_target() -> None:
    logits = torch.tensor([[0.4, -1.0]])
    target = torch.tensor([[0.8, 0.0]])
    onehot = torch.tensor([[1.0, 0.0]])
    loss = varifocal_loss(logits, target, onehot, alpha=0.75, gamma=2.0)
    bce = F.binary_cross_entropy_with_logits(logits[0, 0], target[0, 0])
    assert float(loss[0, 0]) == pytest.approx(0.8 * float(bce), rel=1e-6)
    # the positive's gradient pulls its score towards the target, the negative's pushes down
    x = logits.clone().requires_grad_(True)
    varifocal_loss(x, target, onehot.bool()).sum().backward()
    assert x.grad is not None
    assert float(x.grad[0, 0]) < 0  # sigmoid(0.4) = 0.599 < 0.8: increase
    assert float(x.grad[0, 1]) > 0
