"""Sprites of the synthetic aerial scenes: the top view of each object, drawn with OpenCV.

A :class:`Sprite` is a list of drawing primitives in the object's *local frame*: pixels, the front of the
object towards ``+x``, its left-right axis along ``y`` (y down, as in images). :meth:`Sprite.finalize`
moves the frame so that the tight axis-aligned rectangle of the defining shapes is centred on the origin;
that rectangle, turned by the object's heading, *is* the label box (``half_l`` along the heading,
``half_w`` across it). :func:`draw_sprite` places a sprite at ``(cx, cy)`` turned by ``heading``
(radians, ``[0, 2*pi)``; the front points along ``(cos, sin)``), with sub-pixel, anti-aliased drawing.

Also here: the small numpy geometry the scene sampler needs (rotated-rectangle corners in the DAIK box
convention, convex polygon intersection areas).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from daik_core.data.synth.palettes import (
    ACCENT_COLORS,
    CAB_COLORS,
    CAR_COLORS,
    COURT_COLORS,
    DECK_COLORS,
    HELI_COLORS,
    HULL_COLORS,
    PLANE_BODY,
    ROOF_COLORS,
    TANK_ROOF,
    TRAILER_COLORS,
    Color,
)

FArray = npt.NDArray[np.float64]

SHIFT = 4  # fixed-point bits of cv2 drawing coordinates (1/16 px)
_ONE = float(1 << SHIFT)


# ------------------------------------------------------------------------------------------ geometry
def rect_corners(cx: float, cy: float, half_l: float, half_w: float, heading: float) -> FArray:
    """Corners (4, 2) of a rectangle whose ``half_l`` side points along ``heading``.

    Same formula and corner order as :func:`daik_core.structures.boxes.obb_to_poly` (front-left,
    front-right ... for heading 0: top-left, top-right, bottom-right, bottom-left)."""
    c, s = math.cos(heading), math.sin(heading)
    ux, uy = c * half_l, s * half_l
    vx, vy = -s * half_w, c * half_w
    return np.array(
        [
            [cx - ux - vx, cy - uy - vy],
            [cx + ux - vx, cy + uy - vy],
            [cx + ux + vx, cy + uy + vy],
            [cx - ux + vx, cy - uy + vy],
        ],
        dtype=np.float64,
    )


def label_obb(cx: float, cy: float, half_l: float, half_w: float, heading: float) -> tuple[float, ...]:
    """The DAIK obb ``(cx, cy, w, h, angle)`` of a placed rectangle: long side first, angle in [0, pi)."""
    w, h, a = 2.0 * half_l, 2.0 * half_w, heading
    if w < h:
        w, h, a = h, w, a + math.pi / 2
    a = math.fmod(a, math.pi)
    if a < 0:
        a += math.pi
    if a >= math.pi:  # fmod of a value just below a multiple of pi
        a = 0.0
    return (cx, cy, w, h, a)


def obb_corners(obb: tuple[float, ...]) -> FArray:
    cx, cy, w, h, a = obb
    return rect_corners(cx, cy, w / 2.0, h / 2.0, a)


def polygon_area(pts: FArray | list[tuple[float, float]]) -> float:
    """Signed shoelace area (positive for the corner order of :func:`rect_corners`)."""
    p = pts.tolist() if isinstance(pts, np.ndarray) else pts
    n = len(p)
    if n < 3:
        return 0.0
    acc = 0.0
    x0, y0 = p[-1]
    for x1, y1 in p:
        acc += x0 * y1 - x1 * y0
        x0, y0 = x1, y1
    return 0.5 * acc


def convex_intersection_area(p: FArray | list[list[float]], q: FArray | list[list[float]]) -> float:
    """Area of the intersection of two convex polygons (k, 2) (Sutherland-Hodgman clipping)."""
    out: list[tuple[float, float]] = [(x, y) for x, y in (p.tolist() if isinstance(p, np.ndarray) else p)]
    clip: list[tuple[float, float]] = [(x, y) for x, y in (q.tolist() if isinstance(q, np.ndarray) else q)]
    sign = 1.0 if polygon_area(clip) >= 0 else -1.0
    n = len(clip)
    for i in range(n):
        if not out:
            return 0.0
        ax, ay = clip[i]
        bx, by = clip[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        inp = out
        out = []
        px, py = inp[-1]
        p_in = sign * (ex * (py - ay) - ey * (px - ax)) >= 0.0
        for cx_, cy_ in inp:
            c_in = sign * (ex * (cy_ - ay) - ey * (cx_ - ax)) >= 0.0
            if c_in != p_in:
                # intersection of segment prev->cur with the clip line a->b
                dx, dy = cx_ - px, cy_ - py
                den = ex * dy - ey * dx
                t = 0.0 if den == 0.0 else (ex * (ay - py) - ey * (ax - px)) / den
                out.append((px + t * dx, py + t * dy))
            if c_in:
                out.append((cx_, cy_))
            px, py, p_in = cx_, cy_, c_in
    return abs(polygon_area(out)) if len(out) >= 3 else 0.0


# ------------------------------------------------------------------------------------------ colours
def lum(c: Color) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _clip255(x: float) -> float:
    return 0.0 if x < 0.0 else (255.0 if x > 255.0 else x)


def jitter(rng: np.random.Generator, c: Color, amount: float) -> Color:
    """``c`` with a random brightness and per-channel change of up to ``amount`` each."""
    r = rng.random(4).tolist()
    common = (2.0 * r[3] - 1.0) * amount
    return (
        _clip255(c[0] + (2.0 * r[0] - 1.0) * amount + common),
        _clip255(c[1] + (2.0 * r[1] - 1.0) * amount + common),
        _clip255(c[2] + (2.0 * r[2] - 1.0) * amount + common),
    )


def scale_color(c: Color, k: float) -> Color:
    return (min(255.0, c[0] * k), min(255.0, c[1] * k), min(255.0, c[2] * k))


def mix(a: Color, b: Color, t: float) -> Color:
    """``a`` moved towards ``b`` by ``t`` (0: a, 1: b)."""
    return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2]))


def choose(rng: np.random.Generator, weights: list[float]) -> int:
    """Index drawn with probability proportional to ``weights``."""
    x = float(rng.random()) * sum(weights)
    for i, w in enumerate(weights):
        x -= w
        if x < 0.0:
            return i
    return len(weights) - 1


def pick(rng: np.random.Generator, palette: list[tuple[Color, float]], amount: float = 10.0) -> Color:
    i = choose(rng, [w for _, w in palette])
    return jitter(rng, palette[i][0], amount)


# ------------------------------------------------------------------------------------------ sprites
@dataclass
class Prim:
    """A drawing primitive in the local frame.

    ``poly``: filled polygon ``pts`` (k, 2); ``line``: polyline ``pts`` of width ``thickness`` (closed if
    ``closed``); ``circle``: centre ``pts`` (1, 2), radius ``axes[0]``, filled if ``thickness < 0``;
    ``arc``: ellipse arc around ``pts`` (1, 2) with half-axes ``axes``, the ellipse turned by ``rot`` and
    drawn from ``start`` to ``end`` (degrees)."""

    kind: str
    pts: FArray
    color: Color
    thickness: float = -1.0
    closed: bool = False
    axes: tuple[float, float] = (0.0, 0.0)
    rot: float = 0.0
    start: float = 0.0
    end: float = 360.0
    bounds: bool = True  # counts towards the box


@dataclass
class Sprite:
    prims: list[Prim] = field(default_factory=list)
    silhouettes: list[FArray] = field(default_factory=list)  # polygons that cast the shadow
    height: float = 0.0  # shadow offset (px) for a unit sun vector
    half_l: float = 0.0
    half_w: float = 0.0
    _stack: FArray | None = None  # all primitive points, for one transform per draw
    _bounds: list[int] = field(default_factory=list)

    def stacked(self) -> tuple[FArray, list[int]]:
        if self._stack is None:
            self._stack = np.concatenate([p.pts for p in self.prims]) if self.prims else np.zeros((0, 2))
            self._bounds = np.cumsum([0] + [len(p.pts) for p in self.prims]).tolist()
        return self._stack, self._bounds

    def poly(self, pts: list[tuple[float, float]] | FArray, color: Color, *, bounds: bool = True) -> FArray:
        arr = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        self.prims.append(Prim("poly", arr, color, bounds=bounds))
        return arr

    def rect(
        self, x0: float, x1: float, y0: float, y1: float, color: Color, *, bounds: bool = True
    ) -> FArray:
        return self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color, bounds=bounds)

    def line(
        self,
        pts: list[tuple[float, float]],
        color: Color,
        thickness: float = 1.0,
        *,
        closed: bool = False,
        bounds: bool = False,
    ) -> None:
        arr = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        self.prims.append(Prim("line", arr, color, thickness, closed, bounds=bounds))

    def circle(
        self, x: float, y: float, r: float, color: Color, thickness: float = -1.0, *, bounds: bool = True
    ) -> None:
        self.prims.append(
            Prim("circle", np.array([[x, y]], dtype=np.float64), color, thickness, axes=(r, r), bounds=bounds)
        )

    def arc(
        self,
        x: float,
        y: float,
        ax: float,
        ay: float,
        start: float,
        end: float,
        color: Color,
        thickness: float = 1.0,
    ) -> None:
        self.prims.append(
            Prim(
                "arc",
                np.array([[x, y]], dtype=np.float64),
                color,
                thickness,
                axes=(ax, ay),
                start=start,
                end=end,
                bounds=False,
            )
        )

    def finalize(self) -> Sprite:
        """Centre the frame on the tight box of the bounding primitives; set ``half_l``, ``half_w``."""
        parts: list[FArray] = []
        for p in self.prims:
            if not p.bounds:
                continue
            if p.kind in ("circle", "arc"):
                r = np.array(p.axes)
                parts.append(np.stack((p.pts[0] - r, p.pts[0] + r)))
            else:
                parts.append(p.pts)
        allp = np.concatenate(parts)
        lo, hi = allp.min(0), allp.max(0)
        centre = (lo + hi) / 2.0
        for p in self.prims:
            p.pts = p.pts - centre
        self.silhouettes = [s - centre for s in self.silhouettes]
        self.half_l = float(hi[0] - lo[0]) / 2.0
        self.half_w = float(hi[1] - lo[1]) / 2.0
        self._stack = None
        return self


def _fixed(pts: FArray) -> npt.NDArray[np.int32]:
    # label coordinates put pixel i on [i, i+1); cv2 puts pixel centres on integers: shift by half a pixel
    return np.round((pts - 0.5) * _ONE).astype(np.int32)


def _transform(pts: FArray, cx: float, cy: float, c: float, s: float) -> FArray:
    return pts @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])


def draw_sprite(
    img: npt.NDArray[np.uint8],
    sprite: Sprite,
    cx: float,
    cy: float,
    heading: float,
    *,
    fade: float = 1.0,
    ground: Color = (128.0, 128.0, 128.0),
) -> None:
    """Draw ``sprite`` into the RGB uint8 image in place; ``fade < 1`` moves its colours towards
    ``ground`` (low contrast)."""
    c, s = math.cos(heading), math.sin(heading)
    heading_deg = math.degrees(heading)
    stack, bounds = sprite.stacked()
    fixed = _fixed(_transform(stack, cx, cy, c, s))
    for i, p in enumerate(sprite.prims):
        col = p.color if fade >= 1.0 else mix(ground, p.color, fade)
        pts = fixed[bounds[i] : bounds[i + 1]]
        if p.kind == "poly":
            cv2.fillPoly(img, [pts], col, cv2.LINE_AA, SHIFT)
        elif p.kind == "line":
            t = max(1, round(p.thickness))
            cv2.polylines(img, [pts], p.closed, col, t, cv2.LINE_AA, SHIFT)
        elif p.kind == "circle":
            r = round(p.axes[0] * _ONE)
            t = -1 if p.thickness < 0 else max(1, round(p.thickness))
            cv2.circle(img, (int(pts[0, 0]), int(pts[0, 1])), r, col, t, cv2.LINE_AA, SHIFT)
        elif p.kind == "arc":
            axes = (round(p.axes[0] * _ONE), round(p.axes[1] * _ONE))
            t = -1 if p.thickness < 0 else max(1, round(p.thickness))
            cv2.ellipse(
                img,
                (int(pts[0, 0]), int(pts[0, 1])),
                axes,
                heading_deg + p.rot,
                p.start,
                p.end,
                col,
                t,
                cv2.LINE_AA,
                SHIFT,
            )
        else:  # pragma: no cover - builders only make the kinds above
            raise ValueError(f"unknown primitive kind {p.kind!r}")


def draw_shadow(
    mask: npt.NDArray[np.uint8],
    sprite: Sprite,
    cx: float,
    cy: float,
    heading: float,
    sun: tuple[float, float],
) -> None:
    """Add the sprite's shadow (its silhouettes moved by ``height`` along ``sun``) to a uint8 mask."""
    if sprite.height <= 0 or not sprite.silhouettes:
        return
    c, s = math.cos(heading), math.sin(heading)
    dx, dy = sun[0] * sprite.height, sun[1] * sprite.height
    polys = [_fixed(_transform(sil, cx + dx, cy + dy, c, s)) for sil in sprite.silhouettes]
    cv2.fillPoly(mask, polys, 255, cv2.LINE_AA, SHIFT)


def _circle_poly(x: float, y: float, r: float, n: int = 20) -> FArray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack((x + r * np.cos(t), y + r * np.sin(t)), axis=1)


# ------------------------------------------------------------------------------------------ objects
def small_vehicle(rng: np.random.Generator, length: float, width: float) -> Sprite:
    """A car or van seen from above: the windshield and the hood mark the front."""
    sp = Sprite()
    L, W = length, width
    body = pick(rng, CAR_COLORS, 12.0)
    glass: Color = (
        jitter(rng, (45.0, 52.0, 62.0), 8.0) if lum(body) > 105 else jitter(rng, (135.0, 150.0, 165.0), 10.0)
    )
    k = 0.2 * W
    outline = [
        (-L / 2 + k, -W / 2),
        (L / 2 - 1.3 * k, -W / 2),
        (L / 2, -W / 2 + k),
        (L / 2, W / 2 - k),
        (L / 2 - 1.3 * k, W / 2),
        (-L / 2 + k, W / 2),
        (-L / 2, W / 2 - k),
        (-L / 2, -W / 2 + k),
    ]
    sp.silhouettes.append(sp.poly(outline, body))
    roof = scale_color(body, 1.07)
    if rng.random() < 0.18:  # van: long roof, short hood
        sp.poly(
            [(0.22 * L, -0.42 * W), (0.36 * L, -0.36 * W), (0.36 * L, 0.36 * W), (0.22 * L, 0.42 * W)], glass
        )
        sp.rect(-0.46 * L, 0.22 * L, -0.42 * W, 0.42 * W, roof)
    else:  # sedan: hood, windshield, roof, rear window, trunk
        sp.poly(
            [(0.08 * L, -0.41 * W), (0.30 * L, -0.34 * W), (0.30 * L, 0.34 * W), (0.08 * L, 0.41 * W)], glass
        )
        sp.rect(-0.24 * L, 0.08 * L, -0.41 * W, 0.41 * W, roof)
        sp.poly(
            [(-0.31 * L, -0.35 * W), (-0.24 * L, -0.39 * W), (-0.24 * L, 0.39 * W), (-0.31 * L, 0.35 * W)],
            glass,
        )
    sp.height = 0.3 * W
    return sp.finalize()


def large_vehicle(rng: np.random.Generator, length: float, width: float) -> Sprite:
    """A truck: a narrower cab of a contrasting colour at the front, a gap, then a long box trailer."""
    sp = Sprite()
    L, W = length, width
    trailer = pick(rng, TRAILER_COLORS, 10.0)
    cab = pick(rng, CAB_COLORS, 12.0)
    for _ in range(8):
        if abs(sum(cab) - sum(trailer)) > 150:  # the cab must stand out from the trailer
            break
        cab = pick(rng, CAB_COLORS, 12.0)
    else:
        cab = jitter(rng, (45.0, 45.0, 50.0) if sum(trailer) > 380 else (235.0, 235.0, 230.0), 6.0)
    c = max(0.16 * L, 0.75 * W)
    g = max(0.035 * L, 0.8)
    x_cab = L / 2 - c
    x_tr = x_cab - g
    sp.rect(x_tr - 0.01 * L, x_cab + 0.01 * L, -0.3 * W, 0.3 * W, (38.0, 38.0, 40.0))
    cab_pts = [
        (x_cab, -0.46 * W),
        (L / 2 - 0.12 * c, -0.46 * W),
        (L / 2, -0.36 * W),
        (L / 2, 0.36 * W),
        (L / 2 - 0.12 * c, 0.46 * W),
        (x_cab, 0.46 * W),
    ]
    sp.poly(cab_pts, cab)
    sp.rect(L / 2 - 0.3 * c, L / 2 - 0.06 * c, -0.38 * W, 0.38 * W, jitter(rng, (40.0, 45.0, 55.0), 6.0))
    sp.rect(-L / 2, x_tr, -W / 2, W / 2, trailer)
    rib = scale_color(trailer, 0.86)
    if rng.random() < 0.3 and x_tr + L / 2 > 2.5 * W:  # two containers
        mid = (x_tr - L / 2) / 2
        sp.rect(-L / 2, mid - 0.4, -W / 2, W / 2, jitter(rng, scale_color(trailer, 0.8), 20.0))
    else:
        n = max(1, int((x_tr + L / 2) / max(W * 0.7, 2.5)))
        for i in range(1, n):
            x = -L / 2 + i * (x_tr + L / 2) / n
            sp.line([(x, -0.45 * W), (x, 0.45 * W)], rib, 1.0)
    sp.silhouettes.append(np.array([(-L / 2, -W / 2), (x_tr, -W / 2), (x_tr, W / 2), (-L / 2, W / 2)]))
    sp.silhouettes.append(np.array(cab_pts))
    sp.height = 0.55 * W
    return sp.finalize()


def _ship_cargo(sp: Sprite, rng: np.random.Generator, xa: float, xb: float, W: float, deck_c: Color) -> None:
    """The deck of a ship between ``xa`` and ``xb``: cargo hatches, containers or a tanker's pipe."""
    kind = rng.random()
    if kind < 0.4 and xb - xa > W:  # cargo hatches
        n = max(2, int((xb - xa) / (0.9 * W)))
        hatch = jitter(rng, scale_color(deck_c, 0.75), 10.0)
        step = (xb - xa) / n
        for i in range(n):
            sp.rect(
                xa + i * step + 0.08 * step,
                xa + (i + 1) * step - 0.08 * step,
                -0.3 * W,
                0.3 * W,
                hatch,
                bounds=False,
            )
    elif kind < 0.7 and xb - xa > W:  # containers
        n = max(2, int((xb - xa) / (0.5 * W)))
        step = (xb - xa) / n
        for i in range(n):
            for j in (-1, 1):
                col = pick(rng, TRAILER_COLORS, 25.0)
                sp.rect(
                    xa + i * step + 0.05 * step,
                    xa + (i + 1) * step - 0.05 * step,
                    j * 0.34 * W if j < 0 else 0.0,
                    0.0 if j < 0 else 0.34 * W,
                    col,
                    bounds=False,
                )
    else:  # tanker: a pipe along the deck
        sp.line([(xa, 0.0), (xb, 0.0)], scale_color(deck_c, 0.7), max(1.0, 0.08 * W))


def ship(rng: np.random.Generator, length: float, width: float, *, small: bool = False) -> Sprite:
    """A ship or boat: pointed bow at the front, the white bridge / cabin towards the stern."""
    sp = Sprite()
    L, W = length, width
    b = rng.uniform(0.17, 0.26) * L
    hull_c = pick(rng, HULL_COLORS, 10.0)
    hull = [
        (-L / 2, -0.40 * W),
        (-L / 2 + 0.05 * L, -W / 2),
        (L / 2 - b, -W / 2),
        (L / 2 - 0.35 * b, -0.28 * W),
        (L / 2, 0.0),
        (L / 2 - 0.35 * b, 0.28 * W),
        (L / 2 - b, W / 2),
        (-L / 2 + 0.05 * L, W / 2),
        (-L / 2, 0.40 * W),
    ]
    sp.silhouettes.append(sp.poly(hull, hull_c))
    deck_c = pick(rng, DECK_COLORS, 10.0)
    if abs(lum(deck_c) - lum(hull_c)) < 25:
        deck_c = scale_color(deck_c, 1.35)
    e = max(0.09 * W, 0.6)
    deck = [
        (-L / 2 + e, -0.40 * W + e),
        (-L / 2 + 0.05 * L, -W / 2 + e),
        (L / 2 - b, -W / 2 + e),
        (L / 2 - 0.35 * b - e, -0.28 * W + e * 0.5),
        (L / 2 - 2.2 * e, 0.0),
        (L / 2 - 0.35 * b - e, 0.28 * W - e * 0.5),
        (L / 2 - b, W / 2 - e),
        (-L / 2 + 0.05 * L, W / 2 - e),
        (-L / 2 + e, 0.40 * W - e),
    ]
    sp.poly(deck, deck_c, bounds=False)
    white = jitter(rng, (238.0, 238.0, 232.0), 8.0)
    x0 = -L / 2 + 0.05 * L
    if small:
        # boat: cabin behind the middle, its windshield facing forward
        x1 = x0 + rng.uniform(0.3, 0.42) * L
        sp.rect(x0 + 0.08 * L, x1, -0.36 * W, 0.36 * W, white, bounds=False)
        sp.rect(x1 - 0.06 * L, x1, -0.3 * W, 0.3 * W, (40.0, 48.0, 60.0), bounds=False)
    else:
        x1 = x0 + rng.uniform(0.12, 0.2) * L
        _ship_cargo(sp, rng, x1 + 0.04 * L, L / 2 - b - 0.02 * L, W, deck_c)
        sp.rect(x0, x1, -0.40 * W, 0.40 * W, white, bounds=False)
        f = 0.3 * (x1 - x0)
        sp.rect(
            x0 + 0.1 * (x1 - x0),
            x0 + 0.1 * (x1 - x0) + f,
            -0.15 * W,
            0.15 * W,
            (50.0, 50.0, 55.0),
            bounds=False,
        )
    sp.height = 0.25 * W
    return sp.finalize()


def plane(rng: np.random.Generator, length: float, span: float) -> Sprite:
    """An aircraft: fuselage, swept wings ahead of the middle, tailplane at the back."""
    sp = Sprite()
    L, S = length, span
    f = rng.uniform(0.095, 0.125) * L
    body = pick(rng, PLANE_BODY, 8.0)
    wing_c = scale_color(body, rng.uniform(0.82, 0.95))
    sweep = math.tan(math.radians(rng.uniform(18.0, 32.0)))
    xr = rng.uniform(0.06, 0.14) * L
    cr = rng.uniform(0.2, 0.25) * L
    xt = xr - sweep * (S / 2 - f / 2)
    ct = 0.3 * cr
    xt = max(xt, -0.45 * L + ct)
    sil: list[FArray] = []
    for side in (-1.0, 1.0):
        wing = [(xr, side * f / 2), (xt, side * S / 2), (xt - ct, side * S / 2), (xr - cr, side * f / 2)]
        sil.append(sp.poly(wing, wing_c))
    # engines under the wings
    n_eng = 2 if rng.random() < 0.8 else 4
    eng_c = scale_color(body, 0.7)
    for side in (-1.0, 1.0):
        for yy in (0.33, 0.62)[: n_eng // 2]:
            y = side * (f / 2 + yy * (S / 2 - f / 2))
            xe = xr - sweep * (abs(y) - f / 2) + 0.06 * L
            sp.rect(xe - 0.09 * L, xe, y - 0.025 * L, y + 0.025 * L, eng_c, bounds=False)
    ht = rng.uniform(0.16, 0.2) * S
    xtp = -0.34 * L
    ctp = 0.1 * L
    for side in (-1.0, 1.0):
        tail = [
            (xtp, side * f / 3),
            (xtp - 0.09 * L, side * ht),
            (xtp - 0.09 * L - 0.4 * ctp, side * ht),
            (xtp - ctp, side * f / 3),
        ]
        tail = [(max(x, -L / 2), y) for x, y in tail]
        sil.append(sp.poly(tail, wing_c))
    fus = [
        (L / 2, 0.0),
        (0.47 * L, -0.32 * f),
        (0.41 * L, -0.5 * f),
        (-0.36 * L, -0.5 * f),
        (-L / 2, -0.14 * f),
        (-L / 2, 0.14 * f),
        (-0.36 * L, 0.5 * f),
        (0.41 * L, 0.5 * f),
        (0.47 * L, 0.32 * f),
    ]
    sil.append(sp.poly(fus, body))
    sp.poly(
        [(0.46 * L, -0.22 * f), (0.44 * L, -0.32 * f), (0.44 * L, 0.32 * f), (0.46 * L, 0.22 * f)],
        (40.0, 45.0, 55.0),
        bounds=False,
    )  # cockpit windows
    sp.line([(-0.47 * L, 0.0), (-0.3 * L, 0.0)], pick(rng, ACCENT_COLORS, 10.0), max(1.0, 0.35 * f))
    sp.silhouettes.extend(sil)
    sp.height = 0.12 * L
    return sp.finalize()


def helicopter(rng: np.random.Generator, length: float) -> Sprite:
    """A helicopter: cabin at the front, thin tail boom, rotor blades."""
    sp = Sprite()
    L = length
    body = pick(rng, HELI_COLORS, 10.0)
    cab = [
        (0.5 * L, -0.05 * L),
        (0.45 * L, -0.12 * L),
        (0.1 * L, -0.13 * L),
        (0.02 * L, -0.08 * L),
        (0.02 * L, 0.08 * L),
        (0.1 * L, 0.13 * L),
        (0.45 * L, 0.12 * L),
        (0.5 * L, 0.05 * L),
    ]
    boom = [(-0.5 * L, -0.025 * L), (0.05 * L, -0.04 * L), (0.05 * L, 0.04 * L), (-0.5 * L, 0.025 * L)]
    sp.silhouettes.append(sp.poly(boom, body))
    sp.silhouettes.append(sp.poly(cab, body))
    sp.poly(
        [(0.5 * L, -0.05 * L), (0.42 * L, -0.1 * L), (0.42 * L, 0.1 * L), (0.5 * L, 0.05 * L)],
        (45.0, 55.0, 70.0),
        bounds=False,
    )
    sp.line([(-0.47 * L, -0.09 * L), (-0.47 * L, 0.09 * L)], (50.0, 50.0, 50.0), 1.0, bounds=True)
    blade_c = jitter(rng, (55.0, 55.0, 58.0), 8.0)
    r = rng.uniform(0.38, 0.46) * L
    hub = (0.24 * L, 0.0)
    n = int(rng.integers(2, 6))
    phase = rng.uniform(0, 2 * math.pi)
    bw = max(0.6, 0.025 * L)
    for i in range(n):
        a = phase + 2 * math.pi * i / n
        ca, sa = math.cos(a), math.sin(a)
        tip = (hub[0] + r * ca, hub[1] + r * sa)
        sp.poly(
            [
                (hub[0] - sa * bw, hub[1] + ca * bw),
                (tip[0] - sa * bw, tip[1] + ca * bw),
                (tip[0] + sa * bw, tip[1] - ca * bw),
                (hub[0] + sa * bw, hub[1] - ca * bw),
            ],
            blade_c,
        )
    sp.circle(hub[0], hub[1], max(0.8, 0.04 * L), (40.0, 40.0, 40.0), bounds=False)
    sp.height = 0.1 * L
    return sp.finalize()


def storage_tank(rng: np.random.Generator, diameter: float, sun: tuple[float, float]) -> Sprite:
    """A cylindrical tank: a bright round roof with a rim, an inner seal ring and a shaded side."""
    sp = Sprite()
    r = diameter / 2
    roof = pick(rng, TANK_ROOF, 8.0)
    rim = scale_color(roof, rng.uniform(0.72, 0.85))
    sp.circle(0.0, 0.0, r, rim)
    sp.circle(0.0, 0.0, r * 0.9, roof, bounds=False)
    # the half away from the sun is in shade
    shade_angle = math.degrees(math.atan2(sun[1], sun[0]))
    sp.arc(0.0, 0.0, r * 0.9, r * 0.9, shade_angle - 90, shade_angle + 90, scale_color(roof, 0.88), -1.0)
    if rng.random() < 0.7:
        sp.circle(
            0.0,
            0.0,
            r * rng.uniform(0.55, 0.72),
            scale_color(roof, 0.78),
            max(1.0, 0.04 * diameter),
            bounds=False,
        )
    sp.circle(0.0, 0.0, max(0.7, 0.06 * diameter), scale_color(roof, 0.6), bounds=False)
    a = rng.uniform(0, 2 * math.pi)
    sp.line(
        [(0.9 * r * math.cos(a), 0.9 * r * math.sin(a)), (r * math.cos(a + 0.25), r * math.sin(a + 0.25))],
        (60.0, 60.0, 60.0),
        1.0,
    )
    sp.silhouettes.append(_circle_poly(0.0, 0.0, r))
    sp.height = 0.3 * diameter
    return sp.finalize()


def tennis_court(rng: np.random.Generator, length: float, width: float) -> Sprite:
    """A tennis court (aspect ~2.17): doubles and singles side lines, service boxes, a dark net."""
    sp = Sprite()
    L, W = length, width
    sp.rect(-L / 2, L / 2, -W / 2, W / 2, pick(rng, COURT_COLORS, 12.0))
    white = jitter(rng, (240.0, 240.0, 236.0), 6.0)
    t = max(1.0, 0.012 * L)
    e = 0.5
    sp.line(
        [(-L / 2 + e, -W / 2 + e), (L / 2 - e, -W / 2 + e), (L / 2 - e, W / 2 - e), (-L / 2 + e, W / 2 - e)],
        white,
        t,
        closed=True,
    )
    ys = 0.375 * W
    xs = 0.269 * L
    for y in (-ys, ys):
        sp.line([(-L / 2, y), (L / 2, y)], white, t)
    for x in (-xs, xs):
        sp.line([(x, -ys), (x, ys)], white, t)
    sp.line([(-xs, 0.0), (xs, 0.0)], white, t)
    sp.line([(0.0, -W / 2), (0.0, W / 2)], (30.0, 30.0, 32.0), max(1.0, 0.018 * L))
    return sp.finalize()


def basketball_court(rng: np.random.Generator, length: float, width: float) -> Sprite:
    """A basketball court (aspect ~1.87): painted keys, three-point arcs, centre circle and line."""
    sp = Sprite()
    L, W = length, width
    mx, my = L / 28.0, W / 15.0
    floor = pick(rng, COURT_COLORS, 12.0)
    sp.rect(-L / 2, L / 2, -W / 2, W / 2, floor)
    white = jitter(rng, (240.0, 240.0, 236.0), 6.0)
    paint = jitter(rng, scale_color(floor, 0.7) if lum(floor) > 110 else scale_color(floor, 1.5), 15.0)
    t = max(1.0, 0.012 * L)
    e = 0.5
    sp.line(
        [(-L / 2 + e, -W / 2 + e), (L / 2 - e, -W / 2 + e), (L / 2 - e, W / 2 - e), (-L / 2 + e, W / 2 - e)],
        white,
        t,
        closed=True,
    )
    sp.line([(0.0, -W / 2), (0.0, W / 2)], white, t)
    sp.arc(0.0, 0.0, 1.8 * mx, 1.8 * my, 0, 360, white, t)
    for side in (-1.0, 1.0):
        x_end = side * L / 2
        x_ft = side * (L / 2 - 5.8 * mx)
        x0, x1 = min(x_end, x_ft), max(x_end, x_ft)
        sp.rect(x0, x1, -2.45 * my, 2.45 * my, paint, bounds=False)
        sp.line([(x0, -2.45 * my), (x1, -2.45 * my), (x1, 2.45 * my), (x0, 2.45 * my)], white, t, closed=True)
        sp.arc(x_ft, 0.0, 1.8 * mx, 1.8 * my, 0, 360, white, t)
        xb = side * (L / 2 - 1.575 * mx)
        start = 90.0 if side > 0 else -90.0
        sp.arc(xb, 0.0, 6.75 * mx, 6.75 * my, start, start + 180.0, white, t)
    return sp.finalize()


def harbor(rng: np.random.Generator, length: float, width: float) -> Sprite:
    """A pier: a long concrete platform with darker edges and bollards; its far end points along +x."""
    sp = Sprite()
    L, W = length, width
    conc = jitter(rng, (190.0, 188.0, 180.0), 14.0)
    sp.silhouettes.append(sp.rect(-L / 2, L / 2, -W / 2, W / 2, conc))
    edge = scale_color(conc, 0.75)
    sp.line(
        [
            (-L / 2, -W / 2 + 0.5),
            (L / 2 - 0.5, -W / 2 + 0.5),
            (L / 2 - 0.5, W / 2 - 0.5),
            (-L / 2, W / 2 - 0.5),
        ],
        edge,
        1.0,
    )
    step = max(4.0, 0.9 * W)
    n = int(L / step)
    for i in range(1, n):
        x = -L / 2 + i * step
        for y in (-W / 2 + 1.5, W / 2 - 1.5):
            sp.circle(x, y, 0.7, (60.0, 60.0, 60.0), bounds=False)
    if rng.random() < 0.5:  # a shed on the pier
        a = rng.uniform(-0.3, 0.2) * L
        sp.rect(a, a + 0.15 * L, -0.3 * W, 0.3 * W, pick(rng, ROOF_COLORS, 10.0), bounds=False)
    sp.height = 0.15 * W
    return sp.finalize()


# ------------------------------------------------------------------------------------------ clutter
def building(rng: np.random.Generator, length: float, width: float) -> Sprite:
    sp = Sprite()
    L, W = length, width
    roof = pick(rng, ROOF_COLORS, 14.0)
    sp.silhouettes.append(sp.rect(-L / 2, L / 2, -W / 2, W / 2, roof))
    if rng.random() < 0.5:  # gable roof: two halves of different brightness and a ridge
        sp.rect(-L / 2, L / 2, 0.0, W / 2, scale_color(roof, 0.82))
        sp.line([(-L / 2, 0.0), (L / 2, 0.0)], scale_color(roof, 1.12), 1.0)
    else:  # flat roof with a parapet and a few units
        sp.line(
            [
                (-L / 2 + 1, -W / 2 + 1),
                (L / 2 - 1, -W / 2 + 1),
                (L / 2 - 1, W / 2 - 1),
                (-L / 2 + 1, W / 2 - 1),
            ],
            scale_color(roof, 0.85),
            1.0,
            closed=True,
        )
        for _ in range(int(rng.integers(0, 4))):
            x = rng.uniform(-0.35, 0.35) * L
            y = rng.uniform(-0.3, 0.3) * W
            d = rng.uniform(1.5, 3.5)
            sp.rect(x - d, x + d, y - d * 0.7, y + d * 0.7, scale_color(roof, 1.15), bounds=False)
    sp.height = rng.uniform(0.15, 0.45) * min(L, W) + 2.0
    return sp.finalize()


def tree_cluster(rng: np.random.Generator, radius: float) -> Sprite:
    sp = Sprite()
    base = jitter(rng, (55.0, 85.0, 45.0), 12.0)
    n = int(rng.integers(1, 5))
    for _ in range(n):
        x, y = rng.uniform(-0.5, 0.5, 2) * radius
        r = radius * rng.uniform(0.35, 0.6)
        sp.circle(x, y, r, base)
        sp.circle(x - 0.2 * r, y - 0.2 * r, 0.5 * r, scale_color(base, 1.2), bounds=False)
        sp.silhouettes.append(_circle_poly(x, y, r, 12))
    sp.height = 0.5 * radius
    return sp.finalize()


def crate(rng: np.random.Generator, length: float, width: float) -> Sprite:
    """Look-alike of a vehicle: a plain box of vehicle colours and size, without windows or a cab."""
    sp = Sprite()
    col = pick(rng, CAR_COLORS if rng.random() < 0.5 else TRAILER_COLORS, 12.0)
    sp.silhouettes.append(sp.rect(-length / 2, length / 2, -width / 2, width / 2, col))
    if rng.random() < 0.5:
        sp.line([(-length / 2 + 1, 0.0), (length / 2 - 1, 0.0)], scale_color(col, 0.85), 1.0)
    sp.height = 0.3 * width
    return sp.finalize()


def disc(rng: np.random.Generator, diameter: float) -> Sprite:
    """Look-alike of a storage tank: a flat round thing (a clarifier, a round roof) with no shadow."""
    sp = Sprite()
    g = float(rng.uniform(110.0, 200.0))
    col = jitter(rng, (g, g + 3.0, g), 5.0)
    sp.circle(0.0, 0.0, diameter / 2, scale_color(col, 0.9))
    sp.circle(0.0, 0.0, diameter * 0.42, col, bounds=False)
    if rng.random() < 0.6:
        a = rng.uniform(0, math.pi)
        r = diameter * 0.42
        sp.line(
            [(-r * math.cos(a), -r * math.sin(a)), (r * math.cos(a), r * math.sin(a))],
            (70.0, 70.0, 70.0),
            1.0,
        )
    return sp.finalize()


def blank_court(rng: np.random.Generator, length: float, width: float) -> Sprite:
    """Look-alike of a court: a coloured rectangle of court size with only an outline (or none)."""
    sp = Sprite()
    col = pick(rng, [c for c in COURT_COLORS if c[0][2] < 100.0], 15.0)  # no blue: that is a pool
    sp.rect(-length / 2, length / 2, -width / 2, width / 2, col)
    if rng.random() < 0.6:
        sp.line(
            [
                (-length / 2 + 1, -width / 2 + 1),
                (length / 2 - 1, -width / 2 + 1),
                (length / 2 - 1, width / 2 - 1),
                (-length / 2 + 1, width / 2 - 1),
            ],
            (235.0, 235.0, 230.0),
            1.0,
            closed=True,
        )
    return sp.finalize()


def pontoon(rng: np.random.Generator, length: float, width: float) -> Sprite:
    """Look-alike of a ship on water: a long floating walkway with square ends and joints."""
    sp = Sprite()
    col = jitter(rng, (165.0, 160.0, 150.0), 15.0)
    sp.silhouettes.append(sp.rect(-length / 2, length / 2, -width / 2, width / 2, col))
    n = max(2, int(length / max(3.0, 2 * width)))
    for i in range(1, n):
        x = -length / 2 + i * length / n
        sp.line([(x, -width / 2), (x, width / 2)], scale_color(col, 0.7), 1.0)
    sp.height = 0.15 * width
    return sp.finalize()
