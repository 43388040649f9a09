"""Exact, batched, differentiable area of the intersection of two convex polygons, and quads -> convex pieces.

Area by Green's theorem: the boundary of ``P & Q`` is made of the parts of ``P``'s edges inside ``Q`` and
the parts of ``Q``'s edges inside ``P``, so ``2 * area = sum over those segments [a, b] of cross(a, b)``.
For convex polygons the part of a segment inside the other polygon is one interval of its parameter
(Cyrus-Beck clipping: a max of lower bounds and a min of upper bounds). Unlike the usual "collect the
candidate vertices, sort them by angle, shoelace" method it needs no sort (the dominant cost of that method
on CPU), and it is differentiable almost everywhere (through the clipping parameters and the vertices).

Degenerate cases, decided consistently so the clipped boundary stays closed:

* The crossing of edge ``i`` of ``P`` and edge ``k`` of ``Q`` is computed once, as a point ``X`` on
  ``P``'s edge; ``Q``'s edge is split at the projection of ``X`` on it, so the two pieces of boundary
  meet even when the edges are nearly parallel (where the crossing is ill-conditioned).
* Parallel edges on the same line (shared edges, identical boxes): the part of ``P``'s edge counts if the
  two edges point the same way (the polygons lie on the same side), ``Q``'s never does, so a shared edge
  counts once; edges pointing opposite ways (touching polygons) do not count.
* Zero-length edges (a triangle stored as a quad, zero-size boxes) add no constraint and no area; the
  result is also capped by each polygon's own area (a polygon shrunk to a point constrains nothing).

Masked branches are blended with float masks over finite values only, so no NaN reaches values or
gradients.

Layout: coordinates are ``(K, B)`` (vertex, pair) so every elementwise op runs over contiguous pairs.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["convex_intersection_area", "quad_to_convex_pieces"]

# slack, in units of the dtype's epsilon (times the pair's coordinate scale), of the geometric tests
_TOL = 64.0


def _cross(ax: Tensor, ay: Tensor, bx: Tensor, by: Tensor) -> Tensor:
    return ax * by - ay * bx


def convex_intersection_area(px: Tensor, py: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
    """Area ``(B,)`` of the intersection of convex polygons ``P`` and ``Q``.

    ``px, py (K1, B)`` and ``qx, qy (K2, B)`` are vertex coordinates, vertex-major. Both polygons must be
    positively oriented (a non-negative shoelace sum ``x_i * y_{i+1} - x_{i+1} * y_i``); repeated vertices
    and zero-area polygons are allowed. For precision, pass coordinates relative to a point near the pair
    (the callers use the centre of the first polygon).
    """
    # Masks are applied as float factors (bound = mask * value + constant) rather than torch.where: several
    # times faster on CPU, and every masked value is finite, so no NaN can leak into values or gradients.
    dt = px.dtype
    rel = _TOL * torch.finfo(dt).eps
    pxn, pyn = px.roll(-1, dims=0), py.roll(-1, dims=0)  # (K1, B) p_{i+1}
    qxn, qyn = qx.roll(-1, dims=0), qy.roll(-1, dims=0)  # (K2, B) q_{k+1}
    rx, ry = pxn - px, pyn - py  # (K1, B) edge i of P: p_i -> p_{i+1}
    sx, sy = qxn - qx, qyn - qy  # (K2, B)
    rx_, ry_ = rx[:, None], ry[:, None]  # (K1, 1, B)
    sx_, sy_ = sx[None], sy[None]  # (1, K2, B)
    dx = px[:, None] - qx[None]  # (K1, K2, B): p_i - q_k
    dy = py[:, None] - qy[None]
    side_p = sx_ * dy - sy_ * dx  # >= 0: p_i on the inner side of Q's edge k
    side_q = ry_ * dx - rx_ * dy  # >= 0: q_k on the inner side of P's edge i
    den = rx_ * sy_ - ry_ * sx_  # (K1, K2, B)
    with torch.no_grad():
        scale = torch.stack([c.abs().amax(dim=0) for c in (px, py, qx, qy)]).amax(dim=0)  # (B,)
        tol = rel * scale  # (B,) a length
        r_len = (rx * rx + ry * ry).sqrt()
        s_len = (sx * sx + sy * sy).sqrt()
        r_ok = r_len > tol  # (K1, B) False for zero-length edges
        s_ok = s_len > tol
        thr = rel * r_len[:, None] * s_len[None]  # |den| <= thr: parallel edges
        neg, pos = den < -thr, den > thr
        par = ~(neg | pos)
        neg_f, pos_f, par_f = neg.to(dt), pos.to(dt), par.to(dt)
        t_lo_base, t_hi_base = neg_f - 1, 2 - 2 * pos_f
        u_lo_base, u_hi_base = pos_f - 1, 2 - 2 * neg_f
        if torch.jit.is_tracing() or bool(par.any()):  # traced (ONNX export): for whatever input comes
            # parallel edges: the whole edge is in or out, judged at its midpoint; a shared edge counts once
            same_dir = (rx_ * sx_ + ry_ * sy_) > 0
            mid = side_p + side_p.roll(-1, dims=0)  # twice the side of the midpoint of P's edge i
            lim = 2 * tol * s_len  # (K2, B) tolerance on that, which scales with |s_k|
            p_keep = (same_dir & (mid >= -lim[None])) | (mid > lim[None])
            t_lo_base += 3 * (par & ~p_keep & s_ok[None]).to(dt)  # an edge that is out: lower bound 2
            mid = side_q + side_q.roll(-1, dims=1)
            u_lo_base += 3 * (par & (mid <= 2 * (tol * r_len)[:, None]) & r_ok[:, None]).to(dt)
        s_bad = (~s_ok).to(dt)

    # P's edge i at t: its side w.r.t. Q's edge k is side_p - t * den, inside while >= 0: a lower bound on
    # t where den < 0, an upper bound where den > 0 (bounds outside [0, 1] are no bounds: -1 and 2)
    t = side_p / (den + par_f)
    t_lo = torch.addcmul(t_lo_base, neg_f, t)
    t_hi = torch.addcmul(t_hi_base, pos_f, t)
    t0 = t_lo.amax(dim=1).clamp_min(0)  # (K1, B)
    t1 = t_hi.amin(dim=1).clamp_max(1)
    cross_p = px * pyn - py * pxn  # (K1, B) twice the signed area swept by each edge of P
    area2 = ((t1 - t0).clamp_min(0) * cross_p).sum(dim=0)

    # Q's edge k at u: its side w.r.t. P's edge i is side_q + u * den. The crossing is the projection on
    # Q's edge of the crossing point X = p_i + t * r_i found above: the same point, consistently.
    s2 = sx * sx + sy * sy + s_bad  # (K2, B) |s_k|^2, made safe for zero-length edges
    u = ((dx + t * rx_) * sx_ + (dy + t * ry_) * sy_) / s2[None]
    u_lo = torch.addcmul(u_lo_base, pos_f, u)
    u_hi = torch.addcmul(u_hi_base, neg_f, u)
    u0 = u_lo.amax(dim=0).clamp_min(0)  # (K2, B)
    u1 = u_hi.amin(dim=0).clamp_max(1)
    cross_q = qx * qyn - qy * qxn
    area2 = area2 + ((u1 - u0).clamp_min(0) * cross_q).sum(dim=0)
    # the intersection is no larger than either polygon (this also settles polygons without a proper edge,
    # such as a point, which constrain nothing above)
    area2 = torch.minimum(area2, torch.minimum(cross_p.sum(dim=0), cross_q.sum(dim=0)))
    return (area2 / 2).clamp_min(0)


def _orient(ax: Tensor, ay: Tensor, bx: Tensor, by: Tensor, cx: Tensor, cy: Tensor) -> Tensor:
    return _cross(bx - ax, by - ay, cx - ax, cy - ay)


def _crosses(pts: Tensor, a: int, b: int, c: int, d: int) -> Tensor:
    """Whether segments ``a-b`` and ``c-d`` of quads ``(N, 4, 2)`` cross at one point inside both."""
    x, y = pts[..., 0], pts[..., 1]
    o1 = _orient(x[:, a], y[:, a], x[:, b], y[:, b], x[:, c], y[:, c])
    o2 = _orient(x[:, a], y[:, a], x[:, b], y[:, b], x[:, d], y[:, d])
    o3 = _orient(x[:, c], y[:, c], x[:, d], y[:, d], x[:, a], y[:, a])
    o4 = _orient(x[:, c], y[:, c], x[:, d], y[:, d], x[:, b], y[:, b])
    return ((o1 > 0) != (o2 > 0)) & (o1 != 0) & (o2 != 0) & ((o3 > 0) != (o4 > 0)) & (o3 != 0) & (o4 != 0)


def quad_to_convex_pieces(quads: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split quads ``(N, 8)`` into at most two positively oriented convex pieces.

    Returns ``pieces (N, 2, 4, 2)``, ``num_pieces (N,)`` (int64, 1 or 2) and ``area (N,)``.

    * A convex quad (or a degenerate one) is one piece: itself, reoriented if clockwise.
    * A simple non-convex quad has exactly one reflex vertex ``r``; the diagonal from ``r`` to ``r + 2`` lies
      inside it and splits it into the triangles ``(r, r+1, r+2)`` and ``(r, r+2, r+3)`` (stored as quads
      with a repeated vertex). Their interiors are disjoint, so intersection areas add up exactly.
    * A self-intersecting ("bow-tie") quad has its four corners in convex position; it is replaced by their
      convex hull (two corners swapped), for its area as well as for intersections.
    """
    pts = quads.reshape(-1, 4, 2)
    n = pts.shape[0]
    ar = torch.arange(4, device=quads.device)
    idx = ar.expand(n, 4)
    # bow-ties: edges 0-1 and 2-3 cross -> hull order 0, 2, 1, 3; edges 1-2 and 3-0 cross -> 0, 1, 3, 2
    idx = torch.where(
        _crosses(pts, 0, 1, 2, 3)[:, None], torch.tensor([0, 2, 1, 3], device=quads.device), idx
    )
    idx = torch.where(
        _crosses(pts, 1, 2, 3, 0)[:, None], torch.tensor([0, 1, 3, 2], device=quads.device), idx
    )
    pts = pts.gather(1, idx[..., None].expand(n, 4, 2))
    x, y = pts[..., 0], pts[..., 1]
    signed2 = _cross(x, y, x.roll(-1, dims=1), y.roll(-1, dims=1)).sum(dim=1)  # (N,) twice the signed area
    reverse = torch.tensor([0, 3, 2, 1], device=quads.device)
    pts = torch.where((signed2 < 0)[:, None, None], pts[:, reverse], pts)
    x, y = pts[..., 0], pts[..., 1]
    # turn at each vertex k: cross(p_k - p_{k-1}, p_{k+1} - p_k); negative at a reflex vertex
    turn = _cross(
        x - x.roll(1, dims=1), y - y.roll(1, dims=1), x.roll(-1, dims=1) - x, y.roll(-1, dims=1) - y
    )
    min_turn, reflex = turn.min(dim=1)
    split = min_turn < 0
    # splitting a convex quad at any vertex would also be exact; one piece is just cheaper
    base = torch.where(split, reflex, torch.zeros_like(reflex))[:, None]  # (N, 1)
    first = torch.where(split[:, None], (base + torch.tensor([0, 1, 2, 2], device=quads.device)) % 4, ar)
    second = (base + torch.tensor([0, 2, 3, 3], device=quads.device)) % 4
    pieces = torch.stack(
        (pts.gather(1, first[..., None].expand(n, 4, 2)), pts.gather(1, second[..., None].expand(n, 4, 2))),
        dim=1,
    )  # (N, 2, 4, 2)
    num_pieces = split.long() + 1
    return pieces, num_pieces, signed2.abs() / 2
