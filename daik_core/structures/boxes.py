"""The rotated-box convention of DAIK, written once.

Coordinates are image pixels: x grows to the right, y grows *down*.

``obb`` = ``(cx, cy, w, h, angle)``
    * ``cx, cy``: the centre.
    * ``w >= h`` (the **long-side rule**): ``w`` is the long side, ``h`` the short side.
    * ``angle``: radians in ``[0, pi)``, the direction of the long side measured from the +x axis towards
      +y. Because y points down, a growing angle turns the box *clockwise on screen*. A direction and its
      opposite are the same side, hence the half-open range of length pi. The 180 one-degree CSL bins of
      the detector's angle head are ``floor(angle / (pi / 180))``.
    * A square (``w == h``) has no long side: its angle is kept as given, modulo pi.

``poly`` = ``(x1, y1, x2, y2, x3, y3, x4, y4)``: the 8 DOTA coordinates of four corners.
    :func:`obb_to_poly` returns the corners of the box's local frame ``(-w/2, -h/2), (w/2, -h/2),
    (w/2, h/2), (-w/2, h/2)``, i.e. top-left, top-right, bottom-right, bottom-left for angle 0
    (clockwise on screen, DOTA's order).

``hbb`` = ``(x1, y1, x2, y2)``: the axis-aligned box (xyxy).

Worked examples (all checked in ``tests/core/structures/test_boxes.py``)::

    obb (50, 50, 40, 10, 0)        -> poly (30,45, 70,45, 70,55, 30,55); hbb (30, 45, 70, 55)
    obb (50, 50, 40, 10, pi/2)     -> the same box standing upright: poly (55,30, 55,70, 45,70, 45,30)
    (w, h, angle) = (10, 40, 0)    -> normalised to (40, 10, pi/2)   (swap sides, turn by 90 degrees)
    (w, h, angle) = (40, 10, -pi/4)-> normalised to (40, 10, 3*pi/4) (angles are taken modulo pi)
    (w, h, angle) = (40, 10, pi)   -> normalised to (40, 10, 0)
    poly (0,0, 4,0, 4,2, 0,2)      -> obb (2, 1, 4, 2, 0)
    poly (0,0, 0,4, -2,4, -2,0)    -> obb (-1, 2, 4, 2, pi/2)

Every function here is batched over leading dimensions, differentiable where the maths is, and runs on
whatever device and dtype its input has.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "ANGLE_BINS",
    "angle_from_deg",
    "angle_to_deg",
    "normalize_angle",
    "normalize_obb",
    "obb_to_hbb",
    "obb_to_poly",
    "poly_area",
    "poly_to_hbb",
    "poly_to_obb",
]

#: Number of one-degree CSL bins covering the angle range [0, pi).
ANGLE_BINS = 180

_PI = math.pi


def angle_to_deg(angle: Tensor) -> Tensor:
    """Radians -> degrees (for I/O edges only; callers name the result ``*_deg``)."""
    return angle * (180.0 / _PI)


def angle_from_deg(angle_deg: Tensor) -> Tensor:
    """Degrees -> radians (for I/O edges only)."""
    return angle_deg * (_PI / 180.0)


def normalize_angle(angle: Tensor) -> Tensor:
    """Map any angle (radians) into ``[0, pi)``."""
    a = torch.remainder(angle, _PI)
    # remainder of a tiny negative number rounds up to exactly pi: fold it back to 0.
    return torch.where(a >= _PI, a - _PI, a)


def normalize_obb(obb: Tensor) -> Tensor:
    """Bring boxes ``(..., 5)`` with any ``(w, h, angle)`` to the convention: ``w >= h``, angle in [0, pi).

    A box whose ``w < h`` has its sides swapped and is turned by pi/2, which describes the same rectangle.
    """
    if obb.shape[-1] != 5:
        raise ValueError(f"obb must have shape (..., 5), got {tuple(obb.shape)}")
    cx, cy, w, h, a = obb.unbind(-1)
    swap = w < h
    long_side = torch.where(swap, h, w)
    short_side = torch.where(swap, w, h)
    a = torch.where(swap, a + _PI / 2, a)
    return torch.stack((cx, cy, long_side, short_side, normalize_angle(a)), dim=-1)


def obb_to_poly(obb: Tensor) -> Tensor:
    """Corners ``(..., 8)`` of boxes ``(..., 5)``, in the order described in the module docstring."""
    if obb.shape[-1] != 5:
        raise ValueError(f"obb must have shape (..., 5), got {tuple(obb.shape)}")
    cx, cy, w, h, a = obb.unbind(-1)
    cos, sin = torch.cos(a), torch.sin(a)
    # half-extent vectors of the long side (u) and the short side (v)
    ux, uy = cos * w / 2, sin * w / 2
    vx, vy = -sin * h / 2, cos * h / 2
    corners = (
        (cx - ux - vx, cy - uy - vy),
        (cx + ux - vx, cy + uy - vy),
        (cx + ux + vx, cy + uy + vy),
        (cx - ux + vx, cy - uy + vy),
    )
    return torch.stack([c for xy in corners for c in xy], dim=-1)


def obb_to_hbb(obb: Tensor) -> Tensor:
    """Axis-aligned xyxy boxes ``(..., 4)`` that enclose boxes ``(..., 5)``."""
    cx, cy, w, h, a = obb.unbind(-1)
    cos, sin = torch.cos(a).abs(), torch.sin(a).abs()
    half_x = (w * cos + h * sin) / 2
    half_y = (w * sin + h * cos) / 2
    return torch.stack((cx - half_x, cy - half_y, cx + half_x, cy + half_y), dim=-1)


def poly_to_hbb(poly: Tensor) -> Tensor:
    """Axis-aligned xyxy boxes ``(..., 4)`` that enclose polygons ``(..., 2K)``."""
    xs, ys = poly[..., 0::2], poly[..., 1::2]
    return torch.stack((xs.amin(-1), ys.amin(-1), xs.amax(-1), ys.amax(-1)), dim=-1)


def poly_area(poly: Tensor) -> Tensor:
    """Unsigned area (shoelace) of simple polygons ``(..., 2K)``."""
    xs, ys = poly[..., 0::2], poly[..., 1::2]
    cross = xs * ys.roll(-1, dims=-1) - ys * xs.roll(-1, dims=-1)
    return cross.sum(-1).abs() / 2


# candidate side directions of the minimum-area rectangle: the 4 edges first (so that an exact rectangle
# keeps its own edges), then the 2 diagonals (a hull edge when a quad is not convex)
_PAIRS = ((0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3))


def poly_to_obb(poly: Tensor) -> Tensor:
    """Minimum-area rotated rectangles ``(..., 5)`` around quadrilaterals ``(..., 8)``.

    Exact for rectangles. The minimum-area rectangle of a point set has one side along an edge of the
    convex hull; for four points every hull edge is one of the six point pairs, so trying those six
    directions is exact. Degenerate inputs (all corners equal) give ``w = h = 0`` and angle 0.
    """
    if poly.shape[-1] != 8:
        raise ValueError(f"poly must have shape (..., 8), got {tuple(poly.shape)}")
    pts = poly.reshape(*poly.shape[:-1], 4, 2)  # (..., 4, 2)
    i = torch.tensor([p[0] for p in _PAIRS], device=poly.device)
    j = torch.tensor([p[1] for p in _PAIRS], device=poly.device)
    d = pts[..., j, :] - pts[..., i, :]  # (..., 6, 2)
    norm = torch.linalg.vector_norm(d, dim=-1, keepdim=True)  # (..., 6, 1)
    valid = norm.squeeze(-1) > 0
    u = d / norm.clamp_min(torch.finfo(poly.dtype).tiny)  # unit directions (..., 6, 2)
    v = torch.stack((-u[..., 1], u[..., 0]), dim=-1)  # perpendiculars
    s = torch.einsum("...pk,...dk->...dp", pts, u)  # (..., 6, 4) projections on u
    t = torch.einsum("...pk,...dk->...dp", pts, v)
    s_min, s_max = s.amin(-1), s.amax(-1)
    t_min, t_max = t.amin(-1), t.amax(-1)
    area = (s_max - s_min) * (t_max - t_min)
    area = torch.where(valid, area, torch.full_like(area, math.inf))
    best = area.argmin(-1, keepdim=True)  # (..., 1); first minimum wins, so edges beat diagonals

    def pick(x: Tensor) -> Tensor:
        return x.gather(-1, best).squeeze(-1)

    ub = u.gather(-2, best.unsqueeze(-1).expand(*best.shape, 2)).squeeze(-2)  # (..., 2)
    vb = torch.stack((-ub[..., 1], ub[..., 0]), dim=-1)
    s_mid = (pick(s_min) + pick(s_max)) / 2
    t_mid = (pick(t_min) + pick(t_max)) / 2
    centre = ub * s_mid.unsqueeze(-1) + vb * t_mid.unsqueeze(-1)
    w = pick(s_max) - pick(s_min)
    h = pick(t_max) - pick(t_min)
    angle = torch.atan2(ub[..., 1], ub[..., 0])
    any_valid = valid.any(-1)
    zero = torch.zeros_like(w)
    w = torch.where(any_valid, w, zero)
    h = torch.where(any_valid, h, zero)
    angle = torch.where(any_valid, angle, zero)
    centre = torch.where(any_valid.unsqueeze(-1), centre, pts.mean(-2))
    return normalize_obb(torch.stack((centre[..., 0], centre[..., 1], w, h, angle), dim=-1))
