"""Slow, obviously-correct references for the ops tests (pure Python, exact rational arithmetic)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

Point = tuple[Fraction, Fraction]


def _signed_area2(poly: Sequence[Point]) -> Fraction:
    n = len(poly)
    return sum(
        (poly[k][0] * poly[(k + 1) % n][1] - poly[(k + 1) % n][0] * poly[k][1] for k in range(n)), Fraction(0)
    )


def _clip(subject: list[Point], a: Point, b: Point) -> list[Point]:
    """Sutherland-Hodgman: the part of ``subject`` on the left of the directed line ``a -> b``."""

    def side(p: Point) -> Fraction:
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])

    out: list[Point] = []
    n = len(subject)
    for k in range(n):
        p, q = subject[k], subject[(k + 1) % n]
        sp, sq = side(p), side(q)
        if sp >= 0:
            out.append(p)
        if (sp > 0 > sq) or (sp < 0 < sq):
            t = sp / (sp - sq)
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def exact_convex_intersection_area(p: Sequence[float], q: Sequence[float]) -> Fraction:
    """Exact area of the intersection of two convex quads given as 8 floats (any orientation)."""
    pp = [(Fraction(p[2 * k]), Fraction(p[2 * k + 1])) for k in range(4)]
    qq = [(Fraction(q[2 * k]), Fraction(q[2 * k + 1])) for k in range(4)]
    if _signed_area2(pp) < 0:
        pp.reverse()
    if _signed_area2(qq) < 0:
        qq.reverse()
    poly = qq
    for k in range(4):
        if not poly:
            break
        poly = _clip(poly, pp[k], pp[(k + 1) % 4])
    return abs(_signed_area2(poly)) / 2 if len(poly) >= 3 else Fraction(0)


def exact_convex_iou(p: Sequence[float], q: Sequence[float]) -> float:
    inter = exact_convex_intersection_area(p, q)
    pp = [(Fraction(p[2 * k]), Fraction(p[2 * k + 1])) for k in range(4)]
    qq = [(Fraction(q[2 * k]), Fraction(q[2 * k + 1])) for k in range(4)]
    union = abs(_signed_area2(pp)) / 2 + abs(_signed_area2(qq)) / 2 - inter
    return float(inter / union) if union > 0 else 0.0


def greedy_nms(
    iou: Sequence[Sequence[float]], scores: Sequence[float], thr: float, classes: Sequence[int]
) -> list[int]:
    """The textbook loop: by descending score (ties: lower index first), keep unless IoU > thr with a kept
    box of the same class."""
    order = sorted(range(len(scores)), key=lambda k: (-scores[k], k))
    kept: list[int] = []
    for k in order:
        if all(classes[k] != classes[m] or iou[k][m] <= thr for m in kept):
            kept.append(k)
    return kept
