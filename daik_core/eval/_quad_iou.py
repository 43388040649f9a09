"""Exact IoU of DOTA quadrilaterals in numpy (float64): the geometry of :func:`daik_core.ops.poly_iou_aligned`
without torch, for the DOTA evaluator (whose command line then never imports torch).

Same rules as the torch op (see :mod:`daik_core.ops.iou` and :mod:`daik_core.ops._convex`):

* a convex quad (or a degenerate one: repeated or collinear corners, zero area) is one convex piece,
  reoriented counter-clockwise if needed;
* a simple non-convex quad is split at its reflex vertex into two triangles, whose intersections add up;
* a self-intersecting ("bow-tie") quad is replaced by the convex hull of its corners;
* the intersection of two convex pieces is the area enclosed by each polygon's edges clipped to the other
  (Green's theorem, Cyrus-Beck clipping), computed in a frame centred on the first quad;
* pairs whose enclosing axis-aligned boxes do not overlap with a positive area have IoU 0;
* ``IoU = inter / max(area1 + area2 - inter, eps)``, the intersection first capped by the smaller area.

Each quad is prepared once (:func:`prepare_quads`: centre, convex pieces, area, enclosing box), so a pair
costs only the intersection. Pairs of two convex quads, nearly all of DOTA's, take one convex
intersection; the others take one per pair of pieces (2 or 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Quads", "convex_intersection_area", "prepare_quads", "quad_iou_aligned", "quad_pair_iou"]

# slack of the geometric tests, in units of float64's epsilon times the pair's coordinate scale (as the
# torch op: daik_core.ops._convex._TOL)
_TOL = 64.0
_REL = _TOL * float(np.finfo(np.float64).eps)
# pairs computed at once: (4, 4, chunk) float64 temporaries stay in the cache
_CHUNK = 4096
_NEXT = np.array([1, 2, 3, 0])


@dataclass(frozen=True)
class Quads:
    """Quads prepared for intersection. Piece ``p`` of quad ``n``: ``x[p, :, n], y[p, :, n]`` (4 vertices,
    counter-clockwise, relative to ``centre[n]``); piece 1 is only meaningful where ``convex[n]`` is False."""

    x: np.ndarray  # (2, 4, N)
    y: np.ndarray  # (2, 4, N)
    convex: np.ndarray  # (N,) bool: one piece
    centre: np.ndarray  # (N, 2)
    area: np.ndarray  # (N,)
    hbb: np.ndarray  # (N, 4) xyxy

    def __len__(self) -> int:
        return len(self.area)


def _cross(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    return ax * by - ay * bx


def _crosses(x: np.ndarray, y: np.ndarray, a: int, b: int, c: int, d: int) -> np.ndarray:
    """Whether segments ``a-b`` and ``c-d`` of quads ``x, y (N, 4)`` cross at one point inside both."""

    def orient(i: int, j: int, k: int) -> np.ndarray:
        return _cross(x[:, j] - x[:, i], y[:, j] - y[:, i], x[:, k] - x[:, i], y[:, k] - y[:, i])

    o1, o2, o3, o4 = orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b)
    return ((o1 > 0) != (o2 > 0)) & (o1 != 0) & (o2 != 0) & ((o3 > 0) != (o4 > 0)) & (o3 != 0) & (o4 != 0)


def prepare_quads(polys: np.ndarray) -> Quads:
    """Quads ``(N, 8)`` (x1 y1 ... x4 y4, any orientation) -> :class:`Quads` (float64)."""
    polys = np.asarray(polys, dtype=np.float64)
    if polys.ndim != 2 or polys.shape[1] != 8:
        raise ValueError(f"quads must have shape (N, 8), got {polys.shape}")
    n = len(polys)
    pts = polys.reshape(n, 4, 2)
    centre = pts.mean(axis=1)
    rel = pts - centre[:, None, :]
    x, y = rel[..., 0], rel[..., 1]
    # bow-ties: edges 0-1 and 2-3 cross -> hull order 0, 2, 1, 3; edges 1-2 and 3-0 cross -> 0, 1, 3, 2
    order = np.broadcast_to(np.arange(4), (n, 4))
    order = np.where(_crosses(x, y, 0, 1, 2, 3)[:, None], np.array([0, 2, 1, 3]), order)
    order = np.where(_crosses(x, y, 1, 2, 3, 0)[:, None], np.array([0, 1, 3, 2]), order)
    x, y = np.take_along_axis(x, order, axis=1), np.take_along_axis(y, order, axis=1)
    signed2 = _cross(x, y, x[:, _NEXT], y[:, _NEXT]).sum(axis=1)  # twice the signed area
    clockwise = signed2 < 0
    reverse = np.array([0, 3, 2, 1])
    x = np.where(clockwise[:, None], x[:, reverse], x)
    y = np.where(clockwise[:, None], y[:, reverse], y)
    prev = np.array([3, 0, 1, 2])
    # turn at each vertex: cross(p_k - p_{k-1}, p_{k+1} - p_k); negative at a reflex vertex
    turn = _cross(x - x[:, prev], y - y[:, prev], x[:, _NEXT] - x, y[:, _NEXT] - y)
    reflex = turn.argmin(axis=1)
    split = turn[np.arange(n), reflex] < 0
    base = np.where(split, reflex, 0)[:, None]
    first = np.where(split[:, None], (base + np.array([0, 1, 2, 2])) % 4, np.arange(4))
    second = (base + np.array([0, 2, 3, 3])) % 4
    px = np.stack((np.take_along_axis(x, first, axis=1), np.take_along_axis(x, second, axis=1)))  # (2, N, 4)
    py = np.stack((np.take_along_axis(y, first, axis=1), np.take_along_axis(y, second, axis=1)))
    xs, ys = polys[:, 0::2], polys[:, 1::2]
    hbb = np.stack((xs.min(axis=1), ys.min(axis=1), xs.max(axis=1), ys.max(axis=1)), axis=1)
    return Quads(
        x=np.ascontiguousarray(px.transpose(0, 2, 1)),
        y=np.ascontiguousarray(py.transpose(0, 2, 1)),
        convex=~split,
        centre=centre,
        area=np.abs(signed2) / 2,
        hbb=hbb,
    )


def convex_intersection_area(px: np.ndarray, py: np.ndarray, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
    """Area ``(B,)`` of the intersection of convex quads ``P`` and ``Q``, vertex-major ``(4, B)`` coordinates,
    both counter-clockwise (repeated vertices and zero area allowed), best relative to a point near the pair.

    The numpy twin of :func:`daik_core.ops._convex.convex_intersection_area` (its docstring has the method
    and the rules for shared, parallel and zero-length edges), without gradients.
    """
    pxn, pyn, qxn, qyn = px[_NEXT], py[_NEXT], qx[_NEXT], qy[_NEXT]
    rx, ry = pxn - px, pyn - py  # (4, B) edge i of P: p_i -> p_{i+1}
    sx, sy = qxn - qx, qyn - qy
    rx_, ry_ = rx[:, None], ry[:, None]  # (4, 1, B)
    sx_, sy_ = sx[None], sy[None]  # (1, 4, B)
    dx = px[:, None] - qx[None]  # (4, 4, B): p_i - q_k
    dy = py[:, None] - qy[None]
    side_p = sx_ * dy - sy_ * dx  # >= 0: p_i on the inner side of Q's edge k
    den = rx_ * sy_ - ry_ * sx_
    scale = np.maximum(
        np.maximum(np.abs(px).max(axis=0), np.abs(py).max(axis=0)),
        np.maximum(np.abs(qx).max(axis=0), np.abs(qy).max(axis=0)),
    )
    tol = _REL * scale  # (B,) a length
    r_len = np.sqrt(rx * rx + ry * ry)
    s_len = np.sqrt(sx * sx + sy * sy)
    thr = _REL * r_len[:, None] * s_len[None]  # |den| <= thr: parallel edges
    neg, pos = den < -thr, den > thr
    par = ~(neg | pos)
    t_lo = np.where(neg, 0.0, -1.0)  # bounds outside [0, 1] are no bounds
    t_hi = np.where(pos, 0.0, 2.0)
    u_lo = np.where(pos, 0.0, -1.0)
    u_hi = np.where(neg, 0.0, 2.0)
    if par.any():
        # parallel edges: the whole edge is in or out, judged at its midpoint; a shared edge counts once
        side_q = ry_ * dx - rx_ * dy  # >= 0: q_k on the inner side of P's edge i
        same_dir = (rx_ * sx_ + ry_ * sy_) > 0
        mid = side_p + side_p[_NEXT]  # twice the side of the midpoint of P's edge i
        lim = (2 * tol * s_len)[None]
        p_keep = (same_dir & (mid >= -lim)) | (mid > lim)
        t_lo[par & ~p_keep & (s_len > tol)[None]] = 2.0  # an edge that is out: lower bound 2
        mid = side_q + side_q[:, _NEXT]
        u_lo[par & (mid <= (2 * tol * r_len)[:, None]) & (r_len > tol)[:, None]] = 2.0
    # P's edge i at t: its side w.r.t. Q's edge k is side_p - t * den, inside while >= 0
    t = side_p / np.where(par, 1.0, den)
    np.copyto(t_lo, t, where=neg)
    np.copyto(t_hi, t, where=pos)
    t0 = np.maximum(t_lo.max(axis=1), 0.0)  # (4, B)
    t1 = np.minimum(t_hi.min(axis=1), 1.0)
    cross_p = px * pyn - py * pxn  # (4, B) twice the signed area swept by each edge of P
    area2 = (np.maximum(t1 - t0, 0.0) * cross_p).sum(axis=0)
    # Q's edge k at u: the projection on it of the crossing point p_i + t * r_i found above
    s2 = sx * sx + sy * sy
    s2 = np.where(s_len > tol, s2, s2 + 1.0)  # safe for zero-length edges
    u = ((dx + t * rx_) * sx_ + (dy + t * ry_) * sy_) / s2[None]
    np.copyto(u_lo, u, where=pos)
    np.copyto(u_hi, u, where=neg)
    u0 = np.maximum(u_lo.max(axis=0), 0.0)  # (4, B)
    u1 = np.minimum(u_hi.min(axis=0), 1.0)
    cross_q = qx * qyn - qy * qxn
    area2 = area2 + (np.maximum(u1 - u0, 0.0) * cross_q).sum(axis=0)
    # no larger than either polygon (this also settles polygons without a proper edge, such as a point)
    area2 = np.minimum(area2, np.minimum(cross_p.sum(axis=0), cross_q.sum(axis=0)))
    return np.maximum(area2 / 2, 0.0)


def _pieces_inter(q1: Quads, p1: int, i: np.ndarray, q2: Quads, p2: int, j: np.ndarray) -> np.ndarray:
    """Intersection areas of piece ``p1`` of quads ``q1[i]`` and piece ``p2`` of ``q2[j]``."""
    off = q2.centre[j] - q1.centre[i]  # frame centred on the first quad
    return convex_intersection_area(
        q1.x[p1][:, i], q1.y[p1][:, i], q2.x[p2][:, j] + off[:, 0], q2.y[p2][:, j] + off[:, 1]
    )


def _inter(q1: Quads, i: np.ndarray, q2: Quads, j: np.ndarray) -> np.ndarray:
    convex1, convex2 = q1.convex[i], q2.convex[j]
    both = convex1 & convex2
    if both.all():
        return _pieces_inter(q1, 0, i, q2, 0, j)
    out = np.zeros(len(i))
    k = np.flatnonzero(both)
    out[k] = _pieces_inter(q1, 0, i[k], q2, 0, j[k])
    k = np.flatnonzero(~both)
    i, j, convex1, convex2 = i[k], j[k], convex1[k], convex2[k]
    total = np.zeros(len(k))
    has = ((np.ones(len(k), dtype=bool), ~convex1), (np.ones(len(k), dtype=bool), ~convex2))
    for p1, p2 in ((0, 0), (0, 1), (1, 0), (1, 1)):  # the pieces of a non-convex quad add up
        m = np.flatnonzero(has[0][p1] & has[1][p2])
        total[m] += _pieces_inter(q1, p1, i[m], q2, p2, j[m])
    out[k] = total
    return out


def quad_pair_iou(q1: Quads, i: np.ndarray, q2: Quads, j: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """IoU ``(P,)`` of quads ``q1[i]`` and ``q2[j]`` for index pairs ``i, j (P,)``."""
    h1, h2 = q1.hbb[i], q2.hbb[j]
    overlap = (h1[:, 0] < h2[:, 2]) & (h2[:, 0] < h1[:, 2]) & (h1[:, 1] < h2[:, 3]) & (h2[:, 1] < h1[:, 3])
    k = np.flatnonzero(overlap)
    out = np.zeros(len(i))
    for s in range(0, len(k), _CHUNK):
        kk = k[s : s + _CHUNK]
        ii, jj = i[kk], j[kk]
        area1, area2 = q1.area[ii], q2.area[jj]
        inter = np.minimum(_inter(q1, ii, q2, jj), np.minimum(area1, area2))
        out[kk] = inter / np.maximum(area1 + area2 - inter, eps)
    return out


def quad_iou_aligned(polys1: np.ndarray, polys2: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Exact IoU ``(N,)`` of aligned pairs of quads ``polys1 (N, 8)``, ``polys2 (N, 8)`` (float64)."""
    polys1, polys2 = np.asarray(polys1, dtype=np.float64), np.asarray(polys2, dtype=np.float64)
    if polys1.shape != polys2.shape:
        raise ValueError(f"aligned IoU needs quads of the same shape, got {polys1.shape} and {polys2.shape}")
    index = np.arange(len(polys1))
    return quad_pair_iou(prepare_quads(polys1), index, prepare_quads(polys2), index, eps)
