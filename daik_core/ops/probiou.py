"""ProbIoU (Llerena et al., 2021): a smooth IoU-like similarity of rotated boxes seen as Gaussians.

Box ``(cx, cy, w, h, angle)`` -> Gaussian with mean ``(cx, cy)`` and covariance
``R(angle) diag(w^2 / 12, h^2 / 12) R(angle)^T`` (the covariance of the uniform distribution on the box).
For two Gaussians, with ``S = (S1 + S2) / 2`` and ``d = mu1 - mu2``:

    Bhattacharyya distance  B = d^T S^-1 d / 8 + ln(det S / sqrt(det S1 det S2)) / 2
    Hellinger distance      H = sqrt(1 - exp(-B))
    probIoU                   = 1 - H              (in [0, 1]; 1 for identical Gaussians)

A square and the same square turned by any angle have the same Gaussian: probIoU = 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from daik_core.ops.iou import check_shape, compute_dtype

__all__ = ["probiou", "probiou_aligned"]

#: Default number of box pairs computed at once by :func:`probiou`.
PROBIOU_CHUNK_SIZE = 1 << 18


def _covariance(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Covariance entries ``(sxx, syy, sxy)``, each ``(...)``, of boxes ``(..., 5)``."""
    w2 = boxes[..., 2].square() / 12
    h2 = boxes[..., 3].square() / 12
    cos, sin = torch.cos(boxes[..., 4]), torch.sin(boxes[..., 4])
    cos2, sin2 = cos.square(), sin.square()
    return w2 * cos2 + h2 * sin2, w2 * sin2 + h2 * cos2, (w2 - h2) * cos * sin


def _safe_sqrt(x: Tensor, eps: float) -> Tensor:
    """``sqrt(x)`` for ``x >= eps``, continued linearly below (value 0 and a finite slope at 0)."""
    root = torch.sqrt(x.clamp_min(eps))
    return torch.where(x >= eps, root, x / eps**0.5)


def _probiou(boxes1: Tensor, boxes2: Tensor, eps: float) -> Tensor:
    """ProbIoU of broadcastable boxes ``(..., 5)`` -> ``(...)``."""
    a1, b1, c1 = _covariance(boxes1)
    a2, b2, c2 = _covariance(boxes2)
    a, b, c = (a1 + a2) / 2, (b1 + b2) / 2, (c1 + c2) / 2  # S = (S1 + S2) / 2
    det = (a * b - c.square()).clamp_min(eps)
    det1 = (a1 * b1 - c1.square()).clamp_min(eps)
    det2 = (a2 * b2 - c2.square()).clamp_min(eps)
    dx = boxes1[..., 0] - boxes2[..., 0]
    dy = boxes1[..., 1] - boxes2[..., 1]
    # d^T S^-1 d with S^-1 = [[b, -c], [-c, a]] / det
    mahalanobis = (b * dx.square() - 2 * c * dx * dy + a * dy.square()) / det
    bhatta = mahalanobis / 8 + 0.5 * (torch.log(det) - 0.5 * (torch.log(det1) + torch.log(det2)))
    bhatta = bhatta.clamp(0, 100)
    hellinger = _safe_sqrt(-torch.expm1(-bhatta), eps)
    return 1 - hellinger


def probiou(
    boxes1: Tensor, boxes2: Tensor, *, eps: float = 1e-7, chunk_size: int = PROBIOU_CHUNK_SIZE
) -> Tensor:
    """ProbIoU matrix ``(N, M)`` of rotated boxes ``boxes1 (N, 5)`` and ``boxes2 (M, 5)``.

    Differentiable. ``eps`` keeps the determinants and the square root away from 0 (pixels squared, and
    below ``B = eps`` the Hellinger distance is continued linearly so its gradient stays finite).
    ``chunk_size`` bounds the number of pairs computed at once (rows are processed in blocks).
    """
    check_shape("boxes1", boxes1, 5)
    check_shape("boxes2", boxes2, 5)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = compute_dtype(boxes1, boxes2)
    boxes1, boxes2 = boxes1.to(dtype), boxes2.to(dtype)
    n, m = boxes1.shape[0], boxes2.shape[0]
    if n == 0 or m == 0:
        return torch.zeros(n, m, dtype=dtype, device=boxes1.device)
    rows = max(1, chunk_size // m)
    blocks = [_probiou(boxes1[s : s + rows, None, :], boxes2[None, :, :], eps) for s in range(0, n, rows)]
    return torch.cat(blocks, dim=0)


def probiou_aligned(boxes1: Tensor, boxes2: Tensor, *, eps: float = 1e-7) -> Tensor:
    """ProbIoU ``(N,)`` of aligned pairs of rotated boxes ``boxes1 (N, 5)`` and ``boxes2 (N, 5)``.

    Differentiable; ``eps`` as in :func:`probiou`.
    """
    check_shape("boxes1", boxes1, 5)
    check_shape("boxes2", boxes2, 5)
    if boxes1.shape[0] != boxes2.shape[0]:
        raise ValueError(
            f"aligned probIoU needs as many boxes1 as boxes2, got {boxes1.shape[0]} and {boxes2.shape[0]}"
        )
    dtype = compute_dtype(boxes1, boxes2)
    return _probiou(boxes1.to(dtype), boxes2.to(dtype), eps)
