"""From the head's logits to oriented boxes, and the CSL angle-bin convention (written once, here).

Angle bins (CSL, ``K = ANGLE_BINS = 180`` one-degree bins over the long side's angle in ``[0, pi)``):

* encode: ``angle_to_csl_bin(a) = floor(a / (pi / K))``, clamped to ``[0, K - 1]`` -- bin ``k`` covers
  ``[k, k + 1)`` degrees, as the structures module states;
* decode: ``csl_bin_to_angle(k) = (k + 0.5) * pi / K`` -- the *centre* of the bin, so the round trip
  ``a -> bin -> angle`` errs by at most half a bin (0.5 degree) and is unbiased for angles spread within
  a bin. The price: an exactly axis-aligned box (angle 0 or pi/2) comes back 0.5 degree off.
  The assigner and the loss must use these two functions (and nothing else) to go between angles and bins.

Boxes: for an anchor point ``p`` (pixels), predicted distances ``(l, t, r, b)`` (pixels) of the *un-rotated*
box in the object's own frame and its angle ``a``, with ``u = (cos a, sin a)`` (the long-side direction,
y down) and ``v = (-sin a, cos a)``::

    w = l + r,   h = t + b,   centre = p + u * (r - l) / 2 + v * (b - t) / 2

followed by :func:`~daik_core.structures.boxes.normalize_obb` (long-side rule: when the predicted
``w < h`` the sides swap and the angle turns by pi/2). The inverse, for targets, is
:func:`obb_to_distances`.

Shape letters: B batch, A anchor points, R = reg_max + 1 DFL bins, K angle bins.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from daik_core.structures.boxes import ANGLE_BINS, normalize_obb

__all__ = [
    "angle_to_csl_bin",
    "csl_bin_to_angle",
    "decode_boxes",
    "dfl_expectation",
    "distances_to_obb",
    "obb_to_distances",
]


def angle_to_csl_bin(angle: Tensor, bins: int = ANGLE_BINS) -> Tensor:
    """The CSL bin (int64, ``[0, bins)``) of angles in radians; angles are taken modulo pi first."""
    a = torch.remainder(angle, math.pi)
    k = torch.floor(a * (bins / math.pi)).long()
    return k.clamp(0, bins - 1)  # remainder may round up to pi; floor may round a hair over


def csl_bin_to_angle(bins_idx: Tensor, bins: int = ANGLE_BINS) -> Tensor:
    """The angle (radians, float32 unless ``bins_idx`` is floating) at the centre of CSL bins."""
    k = bins_idx if bins_idx.is_floating_point() else bins_idx.to(torch.float32)
    return (k + 0.5) * (math.pi / bins)


def dfl_expectation(box_logits: Tensor) -> Tensor:
    """Expected distance, in units of the stride, of DFL logits ``(..., R)`` -> ``(...)``.

    ``sum_i softmax(logits)_i * i`` for ``i = 0 .. R-1``: differentiable, in ``[0, R - 1]``.
    """
    r = box_logits.shape[-1]
    proj = torch.arange(r, device=box_logits.device, dtype=box_logits.dtype)
    return (box_logits.softmax(dim=-1) * proj).sum(dim=-1)


def distances_to_obb(distances: Tensor, angle: Tensor, anchor_points: Tensor) -> Tensor:
    """Oriented boxes ``(..., A, 5)`` from distances ``(..., A, 4)`` (l, t, r, b; pixels), angles
    ``(..., A)`` (radians) and anchor points ``(A, 2)`` (pixels). Differentiable in distances and angle.
    """
    l, t, r, b = distances.unbind(-1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    du, dv = (r - l) / 2, (b - t) / 2
    cx = anchor_points[..., 0] + cos * du - sin * dv
    cy = anchor_points[..., 1] + sin * du + cos * dv
    return normalize_obb(torch.stack((cx, cy, l + r, t + b, angle), dim=-1))


def obb_to_distances(obb: Tensor, points: Tensor) -> Tensor:
    """Distances ``(..., 4)`` (l, t, r, b; pixels) from ``points (..., 2)`` to the sides of boxes
    ``(..., 5)``, measured in each box's own frame (the inverse of :func:`distances_to_obb` for a point
    inside the box; a point outside gives a negative distance). Broadcasts over leading dimensions.
    """
    cx, cy, w, h, a = obb.unbind(-1)
    dx, dy = points[..., 0] - cx, points[..., 1] - cy
    cos, sin = torch.cos(a), torch.sin(a)
    pu = dx * cos + dy * sin  # the point's coordinate along u
    pv = -dx * sin + dy * cos  # ... along v
    return torch.stack((w / 2 + pu, h / 2 + pv, w / 2 - pu, h / 2 - pv), dim=-1)


def decode_boxes(box_logits: Tensor, angle_logits: Tensor, anchor_points: Tensor, strides: Tensor) -> Tensor:
    """Boxes ``(B, A, 5)`` (obb convention, float32) from the detector's outputs.

    ``box_logits (B, A, 4, R)``: DFL logits of (l, t, r, b) in units of the stride; ``angle_logits
    (B, A, K)``: CSL logits, decoded as the centre of the argmax bin; ``anchor_points (A, 2)`` and
    ``strides (A,)`` in pixels. The angle is not differentiable (argmax); for a differentiable box under
    a known angle use ``distances_to_obb(dfl_expectation(box_logits) * strides[:, None], angle, points)``.
    """
    # decode in float32 whatever the logits' dtype: pixel coordinates of a 1024 px image need it
    distances = dfl_expectation(box_logits.float()) * strides.float()[:, None]  # (B, A, 4)
    angle = csl_bin_to_angle(angle_logits.argmax(dim=-1), angle_logits.shape[-1])  # (B, A)
    return distances_to_obb(distances, angle, anchor_points.float())
