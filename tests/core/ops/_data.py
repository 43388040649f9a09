"""Random boxes and quads shared by the ops tests (deterministic generators, no global seeding)."""

from __future__ import annotations

import math

import numpy as np
import shapely
import torch
from torch import Tensor

from daik_core.structures import obb_to_poly

F64 = torch.float64


def random_obb(n: int, seed: int, span: float = 1024.0, dtype: torch.dtype = F64) -> Tensor:
    """DOTA-like boxes ``(n, 5)``: centres uniform in ``[0, span)^2``, long side 8..200, aspect 1..6."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g, dtype=F64) * span
    w = 8 + torch.rand(n, generator=g, dtype=F64) * 192
    h = w / (1 + 5 * torch.rand(n, generator=g, dtype=F64))
    angle = torch.rand(n, generator=g, dtype=F64) * math.pi
    return torch.cat((centre, w[:, None], h[:, None], angle[:, None]), dim=1).to(dtype)


def random_quads(n: int, seed: int, convex: bool, span: float = 60.0) -> Tensor:
    """Simple quads ``(<= n, 8)`` in random orientations; non-convex ones have a reflex vertex 0."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g, dtype=F64) * span
    angle = (
        torch.arange(4, dtype=F64) * math.pi / 2
        + (torch.rand(n, 4, generator=g, dtype=F64) - 0.5) * 1.4
        + torch.rand(n, 1, generator=g, dtype=F64) * 2 * math.pi
    )
    radius = 5 + torch.rand(n, 4, generator=g, dtype=F64) * 15
    pts = centre[:, None] + torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)), dim=-1)
    if not convex:  # push vertex 0 across the diagonal 1-3: a dart
        mid = (pts[:, 1] + pts[:, 3]) / 2
        pts[:, 0] = mid + (mid - pts[:, 0]) * 0.3
    flip = torch.rand(n, generator=g) < 0.5
    pts[flip] = pts[flip].flip(1)  # clockwise and counter-clockwise
    valid = torch.from_numpy(shapely.is_valid(shapely.polygons(pts.numpy())))
    return pts[valid].reshape(-1, 8)


def shapely_iou(polys1: Tensor, polys2: Tensor) -> np.ndarray:
    """IoU matrix ``(N, M)`` of valid polygons by shapely (float64)."""
    a = shapely.polygons(polys1.double().reshape(-1, 4, 2).numpy())
    b = shapely.polygons(polys2.double().reshape(-1, 4, 2).numpy())
    inter = shapely.area(shapely.intersection(a[:, None], b[None, :]))
    union = shapely.area(a)[:, None] + shapely.area(b)[None, :] - inter
    return inter / union


def shapely_obb_iou(boxes1: Tensor, boxes2: Tensor) -> np.ndarray:
    return shapely_iou(obb_to_poly(boxes1.double()), obb_to_poly(boxes2.double()))
