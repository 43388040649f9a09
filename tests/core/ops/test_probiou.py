import math
from typing import Any

import pytest
import torch

from daik_core.ops import probiou, probiou_aligned, rotated_iou
from tests.core.ops._data import random_obb

PI = math.pi
F64 = torch.float64


def cuda(test: Any) -> Any:
    """Marks ``test`` as a GPU test, skipped without a CUDA device."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(test))


def obb(*rows: tuple[float, ...], dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


def test_hand_computed_values() -> None:
    b = obb((5, 5, 40, 10, 0.3))
    assert float(probiou(b, b)) == 1.0
    # a square and itself turned by 45 degrees have the same Gaussian
    assert float(probiou(obb((0, 0, 1, 1, 0)), obb((0, 0, 1, 1, PI / 4)))) == pytest.approx(1.0, abs=1e-12)
    # same box shifted by d along x: equal covariances, B = d^2 / (8 var_x) with var_x = w^2 / 12
    d, w, h = 3.0, 12.0, 4.0
    bhatta = d**2 / (8 * w**2 / 12)
    expected = 1 - math.sqrt(1 - math.exp(-bhatta))
    assert float(probiou(obb((0, 0, w, h, 0)), obb((d, 0, w, h, 0)))) == pytest.approx(expected, abs=1e-12)
    # the same shift across the short side is penalised more
    assert float(probiou(obb((0, 0, w, h, 0)), obb((0, d, w, h, 0)))) < expected
    # the angle is periodic with period pi, and far-away boxes get ~0
    assert float(probiou(obb((0, 0, w, h, 0.2)), obb((0, 0, w, h, 0.2 + PI)))) == pytest.approx(1.0, abs=1e-9)
    assert float(probiou(obb((0, 0, w, h, 0)), obb((1000, 0, w, h, 0)))) < 1e-6


def test_shapes_symmetry_range_and_aligned_agree() -> None:
    b1, b2 = random_obb(70, seed=20, span=200.0), random_obb(50, seed=21, span=200.0)
    m = probiou(b1, b2)
    assert m.shape == (70, 50) and m.dtype == F64
    assert bool(((m >= 0) & (m <= 1)).all())
    torch.testing.assert_close(probiou(b2, b1), m.T, rtol=0, atol=1e-12)
    torch.testing.assert_close(probiou(b1, b2, chunk_size=7), m, rtol=0, atol=0)
    torch.testing.assert_close(probiou_aligned(b1[:50], b2), m[:50].diagonal(), rtol=0, atol=1e-12)
    torch.testing.assert_close(probiou(b1.float(), b2.float()).double(), m, rtol=0, atol=1e-4)
    # it ranks like IoU on well-separated cases: a box is closer to itself than to anything else
    assert bool((probiou(b1, b1).argmax(dim=1) == torch.arange(70)).all())
    assert float(rotated_iou(b1, b2)[m < 1e-3].max()) == 0.0


def test_empty_and_bad_shapes() -> None:
    b = random_obb(3, seed=22)
    assert probiou(b[:0], b).shape == (0, 3)
    assert probiou(b, b[:0]).shape == (3, 0)
    assert probiou_aligned(b[:0], b[:0]).shape == (0,)
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(N, 5\)"):
        probiou(b, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="as many"):
        probiou_aligned(b, b[:2])


def test_gradients() -> None:
    b1 = random_obb(10, seed=23, span=60.0).requires_grad_()
    b2 = random_obb(10, seed=24, span=60.0).requires_grad_()
    assert torch.autograd.gradcheck(probiou_aligned, (b1, b2))
    # finite at identical boxes (B = 0), for zero-size and far-apart boxes, in float32 too
    for dtype in (torch.float32, F64):
        pred = obb((0, 0, 4, 2, 0.3), (0, 0, 0, 0, 0), (0, 0, 4, 2, 0), (0, 0, 1, 1, 0), dtype=dtype)
        target = obb((0, 0, 4, 2, 0.3), (0, 0, 1, 1, 0), (1e4, 0, 4, 2, 0), (0, 0, 1, 1, 1.0), dtype=dtype)
        pred.requires_grad_()
        out = probiou_aligned(pred, target)
        assert torch.isfinite(out).all()
        (1 - out).sum().backward()
        assert pred.grad is not None and torch.isfinite(pred.grad).all()


@cuda
def test_cuda_matches_cpu() -> None:
    b1, b2 = random_obb(100, seed=25, span=200.0), random_obb(80, seed=26, span=200.0)
    torch.testing.assert_close(probiou(b1.cuda(), b2.cuda()).cpu(), probiou(b1, b2), rtol=0, atol=1e-12)
