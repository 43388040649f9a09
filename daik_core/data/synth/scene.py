"""Layout and rendering of one synthetic aerial scene (see :mod:`daik_core.data.synth`).

A scene is planned first, then drawn:

1. *plan*: an optional sea (a half plane with a wavy shore) with harbours, the scene's *theme* zone, roads,
   more *zones* (parking lots, truck depots, aprons, helipads, sports grounds, tank farms) that place their
   objects in rows and grids, ships at sea, scattered objects, then look-alike distractors, buildings and
   trees. Every footprint goes through a :class:`Placer` (rejection sampling on rotated rectangles):
   objects stay inside the image and overlap each other by at most :data:`MAX_OVERLAP` of the smaller
   one; clutter does not touch objects; zones do not overlap (roads cross roads only).
2. *draw*: textured ground, zone grounds, sea, wakes, shadows, clutter and objects, then the photometric
   steps (illumination, colour cast, contrast and haze, blur, sensor noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from daik_core.data.synth import sprites as sp
from daik_core.data.synth.levels import Level
from daik_core.data.synth.palettes import ASPHALT, CONCRETE, COURT_COLORS, FIELD_TINTS, GROUND_COLORS, Color
from daik_core.data.synth.sprites import FArray, Sprite

#: Largest allowed intersection of two object boxes, as a fraction of the smaller box's area.
MAX_OVERLAP = 0.05
_CLUTTER_OVERLAP = 0.01

UInt8Image = npt.NDArray[np.uint8]
F32Image = npt.NDArray[np.float32]


@dataclass
class SceneObject:
    """A labelled object: its class, sprite and pose (the box is the sprite's rectangle at this pose)."""

    name: str
    sprite: Sprite
    cx: float
    cy: float
    heading: float
    fade: float = 1.0

    @property
    def corners(self) -> FArray:
        return sp.rect_corners(self.cx, self.cy, self.sprite.half_l, self.sprite.half_w, self.heading)


@dataclass
class _Clutter:
    sprite: Sprite
    cx: float
    cy: float
    heading: float
    shadow: bool = True


# ------------------------------------------------------------------------------------------ placer
class Placer:
    """Rejection sampler on rotated rectangles (convex quads).

    ``items`` are objects (kind 0) and clutter (kind 1): two objects may overlap by at most
    :data:`MAX_OVERLAP` of the smaller area, anything with clutter by at most 1 %. ``zones`` are areas
    (roads, lots, ...) that scattered things keep out of and that must not overlap each other."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._polys: list[list[list[float]]] = []
        self._kind: list[int] = []
        self._area: list[float] = []
        self._cap = 256
        self._cxy = np.zeros((self._cap, 2))
        self._r = np.zeros(self._cap)
        self._zones: list[list[list[float]]] = []
        self._zone_cxy = np.zeros((0, 2))
        self._zone_r = np.zeros(0)
        self._zone_road: list[bool] = []

    def inside(self, corners: FArray, margin: float = 1.0) -> bool:
        return bool(corners.min() >= margin and corners.max() <= self.size - margin)

    @staticmethod
    def _circle(corners: FArray) -> tuple[FArray, float]:
        pts = corners.tolist()
        cx = sum(p[0] for p in pts) / len(pts)
        cy = sum(p[1] for p in pts) / len(pts)
        r2 = max((p[0] - cx) ** 2 + (p[1] - cy) ** 2 for p in pts)
        return np.array((cx, cy)), math.sqrt(r2)

    def free(self, corners: FArray, kind: int) -> bool:
        n = len(self._polys)
        if n == 0:
            return True
        c, r = self._circle(corners)
        d2 = ((self._cxy[:n] - c) ** 2).sum(1)
        near = np.nonzero(d2 < (self._r[:n] + r) ** 2)[0]
        if len(near) == 0:
            return True
        cl = corners.tolist()
        area = abs(sp.polygon_area(cl))
        for i in near.tolist():
            inter = sp.convex_intersection_area(cl, self._polys[i])
            if inter <= 0.0:
                continue
            tol = MAX_OVERLAP if (kind == 0 and self._kind[i] == 0) else _CLUTTER_OVERLAP
            if inter > tol * max(min(area, self._area[i]), 1e-9):
                return False
        return True

    def clear_of_zones(self, corners: FArray, *, roads: bool = True) -> bool:
        """Whether ``corners`` stay off every zone (off the non-road zones only if not ``roads``)."""
        if not self._zones:
            return True
        c, r = self._circle(corners)
        d2 = ((self._zone_cxy - c) ** 2).sum(1)
        cl = corners.tolist()
        for i in np.nonzero(d2 < (self._zone_r + r) ** 2)[0].tolist():
            if not roads and self._zone_road[i]:
                continue
            if sp.convex_intersection_area(cl, self._zones[i]) > 1.0:
                return False
        return True

    def add(self, corners: FArray, kind: int) -> None:
        n = len(self._polys)
        if n == self._cap:
            self._cap *= 2
            self._cxy = np.resize(self._cxy, (self._cap, 2))
            self._r = np.resize(self._r, self._cap)
        c, r = self._circle(corners)
        self._cxy[n] = c
        self._r[n] = r
        self._polys.append(corners.tolist())
        self._kind.append(kind)
        self._area.append(abs(sp.polygon_area(corners)))

    def add_zone(self, corners: FArray, *, road: bool = False) -> None:
        c, r = self._circle(corners)
        self._zones.append(corners.tolist())
        self._zone_cxy = np.vstack((self._zone_cxy, c[None]))
        self._zone_r = np.append(self._zone_r, r)
        self._zone_road.append(road)


# ------------------------------------------------------------------------------------------ scene
@dataclass
class _Sea:
    normal: tuple[float, float]
    offset: float  # water where normal . p > offset + wave(p)
    amp: float
    wavelength: float
    phase: float

    def side(self, pts: FArray) -> FArray:
        return pts @ np.array(self.normal) - self.offset

    def on_water(self, pts: FArray, margin: float = 2.0) -> bool:
        return bool((self.side(pts) > self.amp + margin).all())

    def on_land(self, pts: FArray, margin: float = 2.0) -> bool:
        return bool((self.side(pts) < -self.amp - margin).all())


@dataclass
class Scene:
    rng: np.random.Generator
    size: int
    level: Level
    scale: float
    sun: tuple[float, float]  # direction in which shadows fall (unit vector)
    placer: Placer
    sea: _Sea | None = None
    objects: list[SceneObject] = field(default_factory=list)
    clutter: list[_Clutter] = field(default_factory=list)
    grounds: list[Callable[[UInt8Image], None]] = field(default_factory=list)
    wakes: list[tuple[float, float, float, float, float]] = field(default_factory=list)

    # --- helpers -----------------------------------------------------------------------------
    def u(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(self.rng.random())

    def land_ok(self, corners: FArray) -> bool:
        return self.sea is None or self.sea.on_land(corners)

    def shrink(self, long_side: float) -> float:
        """Factor that keeps an object's long side within 55 % of the image."""
        return min(1.0, 0.55 * self.size / max(long_side, 1e-6))

    def zone_k(self) -> float:
        """Size factor of a zone's objects: sometimes 0.72 (a zone of small objects), never taking the
        scale under 0.5."""
        if self.rng.random() < self.level.tiny_zone:
            return max(0.72, 0.5 / self.scale)
        return 1.0

    def fade(self) -> float:
        lo, hi = self.level.fade
        return 1.0 if hi >= 1.0 and lo >= 1.0 else self.u(lo, hi)

    def try_object(
        self, name: str, sprite: Sprite, cx: float, cy: float, heading: float, *, where: str = "any"
    ) -> bool:
        """Place an object if it fits: inside the image, free, on land/water as asked, off zones for
        ``where='land-free'``."""
        corners = sp.rect_corners(cx, cy, sprite.half_l, sprite.half_w, heading)
        if not self.placer.inside(corners):
            return False
        if where in ("land", "land-free") and not self.land_ok(corners):
            return False
        if where == "water" and (self.sea is None or not self.sea.on_water(corners)):
            return False
        if where == "land-free" and not self.placer.clear_of_zones(corners):
            return False
        if not self.placer.free(corners, 0):
            return False
        self.placer.add(corners, 0)
        self.objects.append(SceneObject(name, sprite, cx, cy, heading % (2 * math.pi), self.fade()))
        return True

    def try_clutter(
        self,
        sprite: Sprite,
        cx: float,
        cy: float,
        heading: float,
        *,
        where: str = "land",
        shadow: bool = True,
        in_zone: bool = False,
    ) -> bool:
        """Place a distractor if it fits: its centre in the image, clear of objects and clutter, off the
        zones unless ``in_zone``."""
        corners = sp.rect_corners(cx, cy, sprite.half_l, sprite.half_w, heading)
        c = corners.mean(0)
        if not (0 <= c[0] < self.size and 0 <= c[1] < self.size):
            return False
        if where == "land" and not self.land_ok(corners):
            return False
        if where == "water" and (self.sea is None or not self.sea.on_water(corners)):
            return False
        if not (in_zone or self.placer.clear_of_zones(corners)) or not self.placer.free(corners, 1):
            return False
        self.placer.add(corners, 1)
        self.clutter.append(_Clutter(sprite, cx, cy, heading, shadow))
        return True

    def zone_fits(self, corners: FArray) -> bool:
        """A zone area must be on land, overlap no other zone and cover some of the image."""
        c = corners.mean(0)
        margin = 0.1 * self.size
        if not (-margin < c[0] < self.size + margin and -margin < c[1] < self.size + margin):
            return False
        return self.land_ok(corners) and self.placer.clear_of_zones(corners)


def _count(rng: np.random.Generator, rng_range: tuple[float, float], area: float) -> int:
    """A count drawn from ``rng_range`` (per 512^2) scaled by the image area, randomly rounded."""
    x = rng.uniform(*rng_range) * area
    n = int(x)
    return n + int(rng.random() < x - n)


def _frame(theta: float) -> tuple[FArray, FArray]:
    """Unit vectors along (u) and across (v) a direction."""
    u = np.array([math.cos(theta), math.sin(theta)])
    return u, np.array([-u[1], u[0]])


def _fill_poly(img: UInt8Image, corners: FArray, color: Color) -> None:
    cv2.fillPoly(img, [sp._fixed(corners)], color, cv2.LINE_AA, sp.SHIFT)


def _line(img: UInt8Image, a: FArray, b: FArray, color: Color, thickness: int = 1) -> None:
    pts = sp._fixed(np.stack((a, b)))
    cv2.line(
        img,
        (int(pts[0, 0]), int(pts[0, 1])),
        (int(pts[1, 0]), int(pts[1, 1])),
        color,
        thickness,
        cv2.LINE_AA,
        sp.SHIFT,
    )


# ------------------------------------------------------------------------------------------ object makers
def make_small_vehicle(sc: Scene, k: float = 1.0, length: float | None = None) -> Sprite:
    L = sc.u(15.0, 22.0) * sc.scale * k if length is None else length * sc.u(0.93, 1.04)
    return sp.small_vehicle(sc.rng, L, L / sc.u(1.8, 2.35))


def make_large_vehicle(sc: Scene, k: float = 1.0, length: float | None = None) -> Sprite:
    L = sc.u(32.0, 52.0) * sc.scale * k if length is None else length * sc.u(0.93, 1.04)
    L *= sc.shrink(L)
    return sp.large_vehicle(sc.rng, L, L / sc.u(3.0, 4.3))


def make_ship(sc: Scene, k: float = 1.0, *, small: bool = False) -> Sprite:
    if small:
        L = sc.u(28.0, 46.0) * sc.scale * k
        return sp.ship(sc.rng, L, L / sc.u(4.0, 5.0), small=True)
    L = sc.u(45.0, 130.0) * sc.scale * k
    L *= sc.shrink(L)
    return sp.ship(sc.rng, L, L / sc.u(4.5, 7.0))


def make_plane(sc: Scene, k: float = 1.0, length: float | None = None) -> Sprite:
    L = sc.u(45.0, 75.0) * sc.scale * k if length is None else length * sc.u(0.88, 1.0)
    L *= sc.shrink(L * 1.15)
    return sp.plane(sc.rng, L, L * sc.u(0.85, 1.15))


def make_helicopter(sc: Scene, k: float = 1.0) -> Sprite:
    return sp.helicopter(sc.rng, sc.u(26.0, 38.0) * sc.scale * k)


def make_tank(sc: Scene, k: float = 1.0) -> Sprite:
    D = sc.u(16.0, 60.0) * sc.scale * k
    D *= sc.shrink(D)
    return sp.storage_tank(sc.rng, D, sc.sun)


def make_tennis(sc: Scene, k: float = 1.0) -> Sprite:
    L = sc.u(60.0, 76.0) * sc.scale * k
    L *= sc.shrink(L)
    return sp.tennis_court(sc.rng, L, L / sc.u(2.08, 2.26))


def make_basketball(sc: Scene, k: float = 1.0) -> Sprite:
    L = sc.u(52.0, 66.0) * sc.scale * k
    L *= sc.shrink(L)
    return sp.basketball_court(sc.rng, L, L / sc.u(1.78, 1.95))


# ------------------------------------------------------------------------------------------ zones
def _rows(
    sc: Scene,
    name: str,
    maker: Callable[[], Sprite],
    origin: FArray,
    theta: float,
    n_rows: int,
    n_cols: int,
    *,
    pitch_u: float,
    pitch_v: float,
    heading: Callable[[int, int], float],
    fill: float,
    where: str = "any",
) -> int:
    """Objects on a grid: ``n_cols`` along ``theta`` (pitch_u apart), ``n_rows`` across (pitch_v)."""
    u, v = _frame(theta)
    placed = 0
    for i in range(n_rows):
        for j in range(n_cols):
            if sc.rng.random() > fill:
                continue
            p = origin + u * (j - (n_cols - 1) / 2) * pitch_u + v * (i - (n_rows - 1) / 2) * pitch_v
            placed += sc.try_object(name, maker(), float(p[0]), float(p[1]), heading(i, j), where=where)
    return placed


def _zone_rect(sc: Scene, half_u: float, half_v: float, theta: float, tries: int = 12) -> FArray | None:
    """A free rotated rectangle for a zone; mostly inside the image when it is small enough."""
    c, s = abs(math.cos(theta)), abs(math.sin(theta))
    ext = np.array([half_u * c + half_v * s, half_u * s + half_v * c])  # half sizes of its hbb
    lo = np.minimum(ext + 1.0, 0.15 * sc.size)
    lo = np.where(ext + 1.0 < sc.size / 2, ext + 1.0, lo)
    hi = sc.size - lo
    for _ in range(tries):
        if sc.rng.random() < 0.75:
            cx, cy = sc.u(lo[0], hi[0]), sc.u(lo[1], hi[1])
        else:
            cx, cy = sc.u(0.15, 0.85) * sc.size, sc.u(0.15, 0.85) * sc.size
        corners = sp.rect_corners(cx, cy, half_u, half_v, theta)
        if sc.zone_fits(corners):
            return corners
    return None


def _fit_zone(
    sc: Scene, n_cols: int, n_rows: int, extent: Callable[[int, int], tuple[float, float]], theta: float
) -> tuple[FArray, int, int] | None:
    """A free zone rectangle for a grid of ``n_cols x n_rows`` cells, with fewer cells if it does not fit;
    ``extent(cols, rows)`` gives the half sizes (along theta, across)."""
    for shrink in (1.0, 0.7, 0.45, 0.25):
        cols, rows = max(1, round(n_cols * shrink)), max(1, round(n_rows * min(1.0, shrink * 1.4)))
        half_u, half_v = extent(cols, rows)
        corners = _zone_rect(sc, half_u, half_v, theta, tries=25)
        if corners is not None:
            return corners, cols, rows
        if cols == 1 and rows == 1:
            break
    return None


def zone_parking(sc: Scene, *, trucks: bool = False) -> None:
    """A parking lot: pairs of stall rows back to back, vehicles side by side, all facing the aisles."""
    k = sc.zone_k()
    proto = make_large_vehicle(sc, k) if trucks else make_small_vehicle(sc, k)
    L, W = 2 * proto.half_l, 2 * proto.half_w
    stall_w = W * (1.0 + sc.u(*sc.level.spacing)) * 1.08 + 0.6
    stall_d = L * 1.12
    aisle = L * (1.0 if trucks else 1.3)
    n_pairs = int(sc.rng.integers(1, 3 if trucks else 4))
    n_cols = int(sc.rng.integers(4, 18 if trucks else 26))
    n_cols = max(2, min(n_cols, int(0.8 * sc.size / stall_w)))
    theta = sc.u(0, math.pi)
    fit = _fit_zone(
        sc, n_cols, n_pairs, lambda c, r: (c * stall_w / 2 + 2, (r * (2 * stall_d + aisle)) / 2), theta
    )
    if fit is None:
        return
    corners, n_cols, n_pairs = fit
    half_v = n_pairs * (2 * stall_d + aisle) / 2
    sc.placer.add_zone(corners)
    centre = corners.mean(0)
    u, v = _frame(theta)
    lot_color = sp.jitter(sc.rng, sp.scale_color(ASPHALT, sc.u(0.85, 1.5)), 6.0)
    line_color = sp.jitter(sc.rng, (225.0, 225.0, 220.0), 10.0)
    # row centres along v: [aisle/2][stall][stall][aisle][stall][stall]...
    rows: list[tuple[float, int]] = []  # (v offset of the row centre, facing sign)
    y = -half_v + aisle / 2
    for _ in range(n_pairs):
        rows.append((y + stall_d / 2, -1))
        rows.append((y + 1.5 * stall_d, 1))
        y += 2 * stall_d + aisle

    def draw_lot(img: UInt8Image) -> None:
        _fill_poly(img, corners, lot_color)
        for off, _ in rows:
            for j in range(n_cols + 1):
                a = centre + v * (off - stall_d / 2) + u * (j - n_cols / 2) * stall_w
                _line(img, a, a + v * stall_d, line_color)

    sc.grounds.append(draw_lot)
    fill = sc.u(*sc.level.fill)
    maker = (
        (lambda: make_large_vehicle(sc, length=L)) if trucks else (lambda: make_small_vehicle(sc, length=L))
    )
    name = "large-vehicle" if trucks else "small-vehicle"
    decoys = 0.0 if sc.level.lookalikes[1] <= 0 else (0.03 if sc.level.lookalikes[0] < 10 else 0.07)
    for off, facing in rows:
        for j in range(n_cols):
            if sc.rng.random() > fill:
                continue
            s = maker()
            # driven in nose first (towards the back-to-back line), sometimes backed in
            sign = -facing if sc.rng.random() < 0.8 else facing
            head = math.atan2(v[1] * sign, v[0] * sign)
            p = (
                centre
                + u * (j - (n_cols - 1) / 2) * stall_w
                + v * (off + sc.u(-0.4, 0.4) * max(stall_d / 2 - s.half_l, 0.0))
            )
            p = p + u * sc.u(-0.3, 0.3) * max(stall_w / 2 - s.half_w, 0.0)
            if sc.rng.random() < decoys:  # a box of vehicle size in the row, not a vehicle
                box = sp.crate(sc.rng, 2 * s.half_l * sc.u(0.8, 1.0), 2 * s.half_w * sc.u(0.85, 1.0))
                sc.try_clutter(box, float(p[0]), float(p[1]), head, in_zone=True)
                continue
            sc.try_object(name, s, float(p[0]), float(p[1]), head, where="land")


def zone_apron(sc: Scene) -> None:
    """An apron: planes side by side in one or two rows, noses towards the taxi line."""
    L0 = sc.u(45.0, 75.0) * sc.scale
    L0 *= sc.shrink(L0 * 1.15)
    span = 1.15 * L0
    pitch = span * (1.0 + 0.5 * sc.u(*sc.level.spacing)) + 1
    n_cols = max(1, min(int(sc.rng.integers(2, 7)), int(0.85 * sc.size / pitch)))
    n_rows = 1 if sc.rng.random() < 0.6 else 2
    depth = span * 1.15
    theta = sc.u(0, math.pi)
    fit = _fit_zone(sc, n_cols, n_rows, lambda c, r: (c * pitch / 2 + 4, r * depth / 2 + 0.3 * depth), theta)
    if fit is None:
        return
    corners, n_cols, n_rows = fit
    half_u, half_v = n_cols * pitch / 2 + 4, n_rows * depth / 2 + 0.3 * depth
    sc.placer.add_zone(corners)
    centre = corners.mean(0)
    u, v = _frame(theta)
    conc = sp.jitter(sc.rng, sp.scale_color(CONCRETE, sc.u(0.9, 1.08)), 6.0)
    yellow = sp.jitter(sc.rng, (215.0, 180.0, 50.0), 10.0)
    angled = sc.u(-0.5, 0.5) if sc.rng.random() < 0.3 else 0.0

    def draw_apron(img: UInt8Image) -> None:
        _fill_poly(img, corners, conc)
        for i in range(n_rows):
            off = (i - (n_rows - 1) / 2) * depth
            for j in range(n_cols):
                a = centre + u * (j - (n_cols - 1) / 2) * pitch + v * off
                _line(img, a - v * depth * 0.45, a + v * depth * 0.45, yellow)
        a = centre + v * (half_v - 3)
        _line(img, a - u * half_u, a + u * half_u, yellow)

    sc.grounds.append(draw_apron)
    head0 = math.atan2(v[1], v[0]) + angled
    _rows(
        sc,
        "plane",
        lambda: make_plane(sc, length=L0),
        centre,
        theta,
        n_rows,
        n_cols,
        pitch_u=pitch,
        pitch_v=depth,
        heading=lambda i, j: head0 + (math.pi if (n_rows == 2 and i == 0 and sc.rng.random() < 0.5) else 0.0),
        fill=max(0.7, sc.u(*sc.level.fill)),
        where="land",
    )


def zone_helipad(sc: Scene) -> None:
    """Helipads (a circle with an H) in a row, most with a helicopter on them."""
    k = sc.zone_k()
    proto = make_helicopter(sc, k)
    pad = 2 * max(proto.half_l, proto.half_w) * 1.15
    n = int(sc.rng.integers(1, 6))
    n = max(1, min(n, int(0.8 * sc.size / pad)))
    theta = sc.u(0, math.pi)
    fit = _fit_zone(sc, n, 1, lambda c, r: (c * pad / 2 + 2, pad / 2 + 2), theta)
    if fit is None:
        return
    corners, n, _ = fit
    sc.placer.add_zone(corners)
    centre = corners.mean(0)
    u, _ = _frame(theta)
    conc = sp.jitter(sc.rng, sp.scale_color(CONCRETE, sc.u(0.8, 1.0)), 6.0)
    mark = sp.jitter(sc.rng, (230.0, 230.0, 225.0), 8.0)
    pads = [centre + u * (j - (n - 1) / 2) * pad for j in range(n)]

    def draw_pads(img: UInt8Image) -> None:
        _fill_poly(img, corners, conc)
        r = pad * 0.42
        for p in pads:
            c = sp._fixed(p[None])[0]
            cv2.circle(
                img,
                (int(c[0]), int(c[1])),
                round(r * 16),
                mark,
                max(1, round(r * 0.08)),
                cv2.LINE_AA,
                sp.SHIFT,
            )
            h = r * 0.45
            for dx in (-h * 0.6, h * 0.6):
                _line(img, p + np.array([dx, -h]), p + np.array([dx, h]), mark)
            _line(img, p + np.array([-h * 0.6, 0.0]), p + np.array([h * 0.6, 0.0]), mark)

    sc.grounds.append(draw_pads)
    for p in pads:
        if sc.rng.random() < 0.85:
            sc.try_object(
                "helicopter",
                make_helicopter(sc, k),
                float(p[0]),
                float(p[1]),
                sc.u(0, 2 * math.pi),
                where="land",
            )


def zone_sports(sc: Scene) -> None:
    """Courts in a grid inside fenced cells; tennis, basketball or (harder) a mix of both."""
    mixed = sc.rng.random() < (0.15 if sc.level.fade[0] >= 1.0 else 0.45)
    first = "tennis-court" if sc.rng.random() < 0.55 else "basketball-court"
    k = sc.zone_k()
    proto = make_tennis(sc, k)  # the larger court sets the cell size
    cell_u, cell_v = 2 * proto.half_l * 1.3, 2 * proto.half_w * 1.6
    n_cols = max(1, min(int(sc.rng.integers(1, 4)), int(0.8 * sc.size / cell_v)))
    n_rows = max(1, min(int(sc.rng.integers(1, 3)), int(0.8 * sc.size / cell_u)))
    theta = sc.u(0, math.pi)
    # courts lie with their length along v: cells stack side by side along u
    fit = _fit_zone(sc, n_cols, n_rows, lambda c, r: (c * cell_v / 2 + 3, r * cell_u / 2 + 3), theta)
    if fit is None:
        return
    corners, n_cols, n_rows = fit
    sc.placer.add_zone(corners)
    centre = corners.mean(0)
    u, v = _frame(theta)
    grass = sp.jitter(sc.rng, (85.0, 120.0, 70.0), 10.0)
    surround = sp.jitter(sc.rng, sp.pick(sc.rng, COURT_COLORS, 10.0), 10.0)
    fence = (50.0, 55.0, 50.0)

    def draw_sports(img: UInt8Image) -> None:
        _fill_poly(img, corners, grass)
        for i in range(n_rows):
            for j in range(n_cols):
                c = centre + u * (j - (n_cols - 1) / 2) * cell_v + v * (i - (n_rows - 1) / 2) * cell_u
                cell = sp.rect_corners(float(c[0]), float(c[1]), cell_v / 2 - 0.5, cell_u / 2 - 0.5, theta)
                _fill_poly(img, cell, surround)
                cv2.polylines(img, [sp._fixed(cell)], True, fence, 1, cv2.LINE_AA, sp.SHIFT)

    sc.grounds.append(draw_sports)
    head = theta + math.pi / 2
    for i in range(n_rows):
        for j in range(n_cols):
            name = first
            if mixed and (i + j) % 2 == 1:
                name = "basketball-court" if first == "tennis-court" else "tennis-court"
            if sc.rng.random() > max(0.8, sc.level.fill[0]):
                continue
            c = centre + u * (j - (n_cols - 1) / 2) * cell_v + v * (i - (n_rows - 1) / 2) * cell_u
            s = make_tennis(sc, k) if name == "tennis-court" else make_basketball(sc, k)
            sc.try_object(name, s, float(c[0]), float(c[1]), head, where="land")


def zone_tanks(sc: Scene) -> None:
    """A tank farm: a grid of tanks of similar size inside an earth dike, with pipes."""
    k = sc.zone_k()
    D0 = sc.u(16.0, 55.0) * sc.scale * k
    D0 *= sc.shrink(D0 * 2)
    pitch = D0 * (1.1 + sc.u(*sc.level.spacing))
    n_cols = max(1, min(int(sc.rng.integers(1, 6)), int(0.8 * sc.size / pitch)))
    n_rows = max(1, min(int(sc.rng.integers(1, 4)), int(0.8 * sc.size / pitch)))
    theta = sc.u(0, math.pi / 2)
    fit = _fit_zone(sc, n_cols, n_rows, lambda c, r: (c * pitch / 2 + 3, r * pitch / 2 + 3), theta)
    if fit is None:
        return
    corners, n_cols, n_rows = fit
    sc.placer.add_zone(corners)
    centre = corners.mean(0)
    u, v = _frame(theta)
    dirt = sp.jitter(sc.rng, (165.0, 155.0, 135.0), 10.0)
    dike = sp.scale_color(dirt, 1.12)
    pipe = (90.0, 90.0, 92.0)

    def draw_farm(img: UInt8Image) -> None:
        _fill_poly(img, corners, dirt)
        cv2.polylines(img, [sp._fixed(corners)], True, dike, 2, cv2.LINE_AA, sp.SHIFT)
        for i in range(n_rows):
            a = centre + v * (i - (n_rows - 1) / 2) * pitch + v * pitch / 2
            if i < n_rows - 1:
                _line(img, a - u * n_cols * pitch / 2, a + u * n_cols * pitch / 2, pipe)

    sc.grounds.append(draw_farm)
    _rows(
        sc,
        "storage-tank",
        lambda: sp.storage_tank(sc.rng, D0 * sc.u(0.92, 1.0), sc.sun),
        centre,
        theta,
        n_rows,
        n_cols,
        pitch_u=pitch,
        pitch_v=pitch,
        heading=lambda i, j: 0.0,
        fill=max(0.75, sc.u(*sc.level.fill)),
        where="land",
    )


def zone_harbor(sc: Scene) -> None:
    """A pier sticking out of the shore, boats moored side by side along it, big ships along the quay."""
    sea = sc.sea
    if sea is None:
        return
    n = np.array(sea.normal)
    t = np.array([-n[1], n[0]])
    L = sc.u(70.0, 190.0) * sc.scale
    L = min(L, 0.5 * sc.size)
    W = sc.u(8.0, 16.0) * sc.scale
    for _ in range(10):
        # a point on the shore line (inside the image), then the pier goes into the water along n
        s0 = sc.u(-0.4, 0.4) * sc.size
        base = n * sea.offset + t * (float(np.dot(t, np.array([sc.size / 2, sc.size / 2]))) + s0)
        centre = base + n * (L / 2 - sea.amp - 4)
        pier = sp.harbor(sc.rng, L, W)
        head = math.atan2(n[1], n[0])
        if sc.try_object("harbor", pier, float(centre[0]), float(centre[1]), head, where="any"):
            break
    else:
        return
    # boats on both sides, perpendicular to the pier, bows towards it
    k = sc.zone_k()
    gap = sc.u(*sc.level.spacing)
    fill = sc.u(*sc.level.fill)
    for side in (-1.0, 1.0):
        x = -L / 2 + 2 * sea.amp + 8
        while x < L / 2 - 2:
            boat = make_ship(sc, k, small=True)
            bw = 2 * boat.half_w
            x += bw / 2
            p = centre + n * x + t * side * (W / 2 + boat.half_l + 1.0)
            head = math.atan2(-side * t[1], -side * t[0])
            if sc.rng.random() < fill:
                sc.try_object("ship", boat, float(p[0]), float(p[1]), head, where="water")
            x += bw / 2 + gap * bw + 0.5
    # big ships along the quay, end to end
    if sc.rng.random() < 0.6:
        s = sc.u(-0.5, 0.5) * sc.size
        for _ in range(int(sc.rng.integers(1, 4))):
            big = make_ship(sc)
            p = base + t * (s + big.half_l) + n * (sea.amp + 3 + big.half_w)
            head = math.atan2(t[1], t[0]) + (math.pi if sc.rng.random() < 0.5 else 0.0)
            sc.try_object("ship", big, float(p[0]), float(p[1]), head, where="water")
            s += 2 * big.half_l + sc.u(2.0, 20.0)


def open_water_ships(sc: Scene, count: int) -> None:
    if sc.sea is None:
        return
    for _ in range(count):
        for _ in range(6):
            s = make_ship(sc, small=sc.rng.random() < 0.4)
            cx, cy = sc.u(0, sc.size), sc.u(0, sc.size)
            head = sc.u(0, 2 * math.pi)
            if sc.try_object("ship", s, cx, cy, head, where="water"):
                if sc.rng.random() < 0.6:
                    sc.wakes.append((cx, cy, head, s.half_l, s.half_w))
                break


def road_traffic(sc: Scene, theta: float, centre: FArray, width: float) -> None:
    """Vehicles in both lanes of a road, driving on the right, in queues at hard levels."""
    u, v = _frame(theta)
    reach = sc.size * 0.75
    for lane in (-1.0, 1.0):
        direction = u * lane
        head = math.atan2(direction[1], direction[0])
        x = -reach + sc.u(0, 20)
        while x < reach:
            truck = sc.rng.random() < 0.18
            s = make_large_vehicle(sc) if truck else make_small_vehicle(sc)
            if 2 * s.half_w > width / 2 - 1:
                x += 2 * s.half_l
                continue
            x += s.half_l
            p = centre + u * x + v * lane * width / 4 + v * sc.u(-0.6, 0.6)
            sc.try_object(
                "large-vehicle" if truck else "small-vehicle", s, float(p[0]), float(p[1]), head, where="land"
            )
            gap = sc.u(*sc.level.traffic_gap)
            if sc.rng.random() < 0.3:
                gap *= 4  # gaps between platoons
            x += s.half_l + gap * 2 * s.half_l


def add_road(sc: Scene) -> None:
    """A straight two-lane road across the image (a zone that crosses other roads but no other zone),
    with its traffic."""
    width = sc.u(20.0, 30.0) * max(sc.scale, 0.8)
    half_len = sc.size * 0.75
    for _ in range(10):
        theta = sc.u(0, math.pi)
        centre = np.array([sc.u(0.1, 0.9), sc.u(0.1, 0.9)]) * sc.size
        corners = sp.rect_corners(float(centre[0]), float(centre[1]), half_len, width / 2, theta)
        if sc.placer.clear_of_zones(corners, roads=False):
            break
    else:
        return
    asphalt = sp.jitter(sc.rng, ASPHALT, 8.0)
    u, v = _frame(theta)
    dashed = sc.rng.random() < 0.8
    edge = sp.jitter(sc.rng, (205.0, 205.0, 200.0), 10.0)
    centre_line: Color = (220.0, 220.0, 215.0) if sc.rng.random() < 0.6 else (215.0, 185.0, 60.0)

    def draw_road(img: UInt8Image) -> None:
        _fill_poly(img, corners, asphalt)
        for side in (-1.0, 1.0):
            a = centre + v * side * (width / 2 - 1.5)
            _line(img, a - u * half_len, a + u * half_len, edge)
        if dashed:
            step = 12.0
            for i in range(int(2 * half_len / step)):
                a = centre + u * (-half_len + i * step)
                _line(img, a, a + u * step * 0.5, centre_line)
        else:
            _line(img, centre - u * half_len, centre + u * half_len, centre_line)

    sc.grounds.insert(0, draw_road)  # roads under everything else
    sc.placer.add_zone(corners, road=True)
    road_traffic(sc, theta, centre, width)


# ------------------------------------------------------------------------------------------ singles, clutter
def scattered(sc: Scene, count: int, names: tuple[str, ...] | None = None) -> None:
    """Single objects anywhere on free land (of the given classes only, if ``names``)."""
    makers: list[tuple[str, Callable[[], Sprite], float]] = [
        ("small-vehicle", lambda: make_small_vehicle(sc), 0.3),
        ("large-vehicle", lambda: make_large_vehicle(sc), 0.17),
        ("storage-tank", lambda: make_tank(sc), 0.13),
        ("helicopter", lambda: make_helicopter(sc), 0.1),
        ("plane", lambda: make_plane(sc), 0.08),
        ("tennis-court", lambda: make_tennis(sc), 0.11),
        ("basketball-court", lambda: make_basketball(sc), 0.11),
    ]
    if names is not None:
        makers = [m for m in makers if m[0] in names]
    w = [m[2] for m in makers]
    for _ in range(count):
        name, maker, _ = makers[sp.choose(sc.rng, w)]
        for _ in range(5):
            s = maker()
            # a round tank has no orientation: its box is always the axis-aligned square
            head = 0.0 if name == "storage-tank" else sc.u(0, 2 * math.pi)
            if sc.try_object(name, s, sc.u(0, sc.size), sc.u(0, sc.size), head, where="land-free"):
                break


def add_clutter(sc: Scene, area: float) -> None:
    lv = sc.level
    for _ in range(_count(sc.rng, lv.lookalikes, area)):
        kind = sc.rng.random()
        if kind < 0.45:
            L = sc.u(12.0, 48.0) * sc.scale
            s = sp.crate(sc.rng, L, L / sc.u(1.4, 4.5))
        elif kind < 0.7:
            s = sp.disc(sc.rng, sc.u(14.0, 50.0) * sc.scale)
        elif kind < 0.85:
            L = sc.u(45.0, 75.0) * sc.scale
            s = sp.blank_court(sc.rng, L, L / sc.u(1.6, 2.4))
        else:
            L = sc.u(40.0, 120.0) * sc.scale
            s = sp.pontoon(sc.rng, L, L / sc.u(7.0, 14.0))
            for _ in range(6):
                if sc.try_clutter(s, sc.u(0, sc.size), sc.u(0, sc.size), sc.u(0, math.pi), where="water"):
                    break
            continue
        for _ in range(6):
            if sc.try_clutter(
                s, sc.u(0, sc.size), sc.u(0, sc.size), sc.u(0, 2 * math.pi), shadow=kind < 0.45
            ):
                break
    block = sc.u(0, math.pi / 2)  # buildings of a scene mostly share a street grid
    for _ in range(_count(sc.rng, lv.buildings, area)):
        L = sc.u(14.0, 80.0) * max(sc.scale, 0.8)
        s = sp.building(sc.rng, L, L / sc.u(1.0, 2.8))
        for _ in range(6):
            head = (
                block
                + (math.pi / 2) * int(sc.rng.integers(0, 4))
                + (sc.u(-0.4, 0.4) if sc.rng.random() < 0.2 else 0)
            )
            if sc.try_clutter(s, sc.u(0, sc.size), sc.u(0, sc.size), head):
                break
    for _ in range(_count(sc.rng, lv.trees, area)):
        s = sp.tree_cluster(sc.rng, sc.u(6.0, 18.0) * max(sc.scale, 0.8))
        for _ in range(4):
            if sc.try_clutter(s, sc.u(0, sc.size), sc.u(0, sc.size), 0.0):
                break


# ------------------------------------------------------------------------------------------ drawing
def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> F32Image:
    """Smooth noise in about [-1, 1]: a coarse random grid, upsampled bicubically."""
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return np.asarray(cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), dtype=np.float32)


def _ground(sc: Scene) -> UInt8Image:
    """Textured ground: a base colour under two scales of smooth noise, plus fields (some furrowed)."""
    rng, n = sc.rng, sc.size
    base = np.array(sp.pick(rng, GROUND_COLORS, 12.0), dtype=np.float32)
    tex = _smooth_noise(rng, n, max(2, n // 96)) * np.float32(0.10)
    tex += _smooth_noise(rng, n, max(4, n // 16)) * np.float32(0.05)
    tex += np.float32(1.0)
    img = tex[..., None] * base
    n_fields = int(rng.integers(0, 5)) if n >= 128 else 0
    if n_fields:
        layer = np.zeros((n, n, 3), dtype=np.float32)
        for _ in range(n_fields):
            theta = float(rng.uniform(0, math.pi))
            hl, hw = float(rng.uniform(0.1, 0.35)) * n, float(rng.uniform(0.08, 0.25)) * n
            cx, cy = float(rng.uniform(0, n)), float(rng.uniform(0, n))
            tint = FIELD_TINTS[sp.choose(rng, [1.0] * len(FIELD_TINTS))]
            tone = np.array(tint) * rng.uniform(0.4, 1.2) + rng.uniform(-14, 14)
            corners = sp.rect_corners(cx, cy, hl, hw, theta)
            cv2.fillPoly(layer, [sp._fixed(corners)], tone.tolist(), cv2.LINE_8, sp.SHIFT)
            if rng.random() < 0.5:  # furrows
                u, v = _frame(theta)
                step = float(rng.uniform(3.0, 7.0))
                furrow = (tone * 0.4).tolist()
                for i in range(int(2 * hw / step)):
                    a = np.array([cx, cy]) + v * (-hw + i * step)
                    p = sp._fixed(np.stack((a - u * hl, a + u * hl)))
                    cv2.line(
                        layer,
                        (int(p[0, 0]), int(p[0, 1])),
                        (int(p[1, 0]), int(p[1, 1])),
                        furrow,
                        1,
                        cv2.LINE_8,
                        sp.SHIFT,
                    )
        img += layer
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_sea(sc: Scene, img: UInt8Image) -> None:
    sea = sc.sea
    assert sea is not None
    n = sc.size
    # signed distance to the wavy shore, computed at 1/4 resolution (it is smooth) and upsampled
    m = max(8, n // 4)
    c = (np.arange(m, dtype=np.float32) + 0.5) * np.float32(n / m)
    xs, ys = c[None, :], c[:, None]
    nx, ny = sea.normal
    along = -ny * xs + nx * ys
    d_small = (
        nx * xs + ny * ys - sea.offset - sea.amp * np.sin(2 * math.pi * along / sea.wavelength + sea.phase)
    )
    d = cv2.resize(d_small.astype(np.float32), (n, n), interpolation=cv2.INTER_LINEAR)
    water = np.array(sp.jitter(sc.rng, (40.0, 70.0, 85.0), 10.0), dtype=np.float32)
    beach = np.array(sp.jitter(sc.rng, (190.0, 178.0, 150.0), 10.0), dtype=np.float32)
    bw = np.float32(sc.u(2.0, 6.0))
    ripple = _smooth_noise(sc.rng, n, max(4, n // 24))
    a_w = np.clip(d + 0.5, 0.0, 1.0)
    a_b = (np.clip(d + bw + 0.5, 0.0, 1.0) - a_w) * np.float32(0.8)
    rows = np.nonzero((a_w + a_b).max(1) > 0)[0]
    if len(rows) == 0:
        return
    r0, r1 = int(rows[0]), int(rows[-1]) + 1  # only the rows that the sea or beach touch
    a_w, a_b = a_w[r0:r1, :, None], a_b[r0:r1, :, None]
    wcol = (np.float32(1.0) + np.float32(0.08) * ripple[r0:r1, :, None]) * water
    out = img[r0:r1].astype(np.float32) * (1 - a_w - a_b) + wcol * a_w + beach * a_b
    img[r0:r1] = np.clip(out, 0, 255).astype(np.uint8)


def _draw_wakes(sc: Scene, img: UInt8Image) -> None:
    if not sc.wakes:
        return
    n = sc.size
    mask = np.zeros((n, n), dtype=np.uint8)
    for cx, cy, head, hl, hw in sc.wakes:
        u, v = _frame(head)
        c = np.array([cx, cy])
        stern = c - u * hl
        # a turbulent trail behind the stern that widens and fades, and a faint bow wave
        for reach, spread, level in ((2.6, 1.9, 30), (1.6, 1.4, 30), (0.8, 1.0, 35)):
            trail = np.stack(
                (
                    stern + v * hw * 0.7,
                    stern - v * hw * 0.7,
                    stern - u * hl * reach - v * hw * spread,
                    stern - u * hl * reach + v * hw * spread,
                )
            )
            layer = np.zeros_like(mask)
            cv2.fillPoly(layer, [sp._fixed(trail)], level, cv2.LINE_AA, sp.SHIFT)
            cv2.add(mask, layer, dst=mask)
        bow = c + u * hl
        for side in (-1.0, 1.0):
            p = sp._fixed(
                np.stack((bow - u * hl * 0.2 + v * side * hw * 0.5, bow - u * hl * 1.8 + v * side * hl * 0.8))
            )
            cv2.line(
                mask, (int(p[0, 0]), int(p[0, 1])), (int(p[1, 0]), int(p[1, 1])), 90, 1, cv2.LINE_AA, sp.SHIFT
            )
    m = cv2.GaussianBlur(mask, (0, 0), 2.0).astype(np.float32)[..., None] * np.float32(1 / 255)
    foam = np.array([205.0, 218.0, 220.0], dtype=np.float32)
    img[...] = np.clip(img * (1 - m) + foam * m, 0, 255).astype(np.uint8)


def _local_color(img: UInt8Image, x: float, y: float) -> Color:
    n = img.shape[0]
    xi, yi = min(max(int(x), 0), n - 1), min(max(int(y), 0), n - 1)
    patch = img[max(yi - 2, 0) : yi + 3, max(xi - 2, 0) : xi + 3].reshape(-1, 3).mean(0)
    return (float(patch[0]), float(patch[1]), float(patch[2]))


def render(sc: Scene) -> UInt8Image:
    """Draw a planned scene; returns the RGB uint8 image."""
    rng, n, lv = sc.rng, sc.size, sc.level
    img = _ground(sc)
    for draw in sc.grounds:
        draw(img)
    if sc.sea is not None:
        _draw_sea(sc, img)
        _draw_wakes(sc, img)
    # fine grain on the ground (asphalt, grass, soil) and the shadows, as one brightness factor
    shadow = np.zeros((n, n), dtype=np.uint8)
    for c in sc.clutter:
        if c.shadow:
            sp.draw_shadow(shadow, c.sprite, c.cx, c.cy, c.heading, sc.sun)
    for o in sc.objects:
        sp.draw_shadow(shadow, o.sprite, o.cx, o.cy, o.heading, sc.sun)
    strength = np.float32(sc.u(0.35, 0.55) / 255.0)
    factor = _smooth_noise(rng, n, max(8, n // 3)) * np.float32(0.045) + np.float32(1.0)
    factor -= cv2.GaussianBlur(shadow, (0, 0), 0.8).astype(np.float32) * strength
    img = np.clip(img * factor[..., None], 0, 255).astype(np.uint8)
    for c in sc.clutter:
        sp.draw_sprite(img, c.sprite, c.cx, c.cy, c.heading)
    for o in sc.objects:
        ground = _local_color(img, o.cx, o.cy) if o.fade < 1.0 else (128.0, 128.0, 128.0)
        sp.draw_sprite(img, o.sprite, o.cx, o.cy, o.heading, fade=o.fade, ground=ground)
    # photometry in one affine step: uneven illumination (gain), colour cast, contrast around the mean,
    # haze; then optics blur and sensor noise
    gain = _smooth_noise(rng, n, 2) * np.float32(0.08) + np.float32(1.0)
    cast = rng.uniform(0.93, 1.07, 3) * rng.uniform(0.88, 1.1)
    contrast = sc.u(*lv.contrast)
    haze = sc.u(*lv.haze)
    mean = img[::4, ::4].reshape(-1, 3).mean(0) * cast
    scale = ((1 - haze) * contrast * cast).astype(np.float32)
    offset = ((1 - haze) * (1 - contrast) * mean + haze * np.array([200.0, 205.0, 210.0])).astype(np.float32)
    f = img * gain[..., None]
    f *= scale
    f += offset
    sigma = sc.u(*lv.blur)
    if sigma > 0.15:
        f = cv2.GaussianBlur(f, (0, 0), sigma)
    noise = rng.standard_normal((n, n, 1), dtype=np.float32)
    noise *= np.float32(sc.u(*lv.noise))
    f += noise
    np.clip(f, 0, 255, out=f)
    return np.rint(f, out=f).astype(np.uint8)


def _zone_trucks(sc: Scene) -> None:
    zone_parking(sc, trucks=True)


#: Zone makers, their weights and their classes. The first zone of a scene is given (its *theme*, see
#: :func:`plan`).
ZONES: tuple[tuple[Callable[[Scene], None], float, tuple[str, ...]], ...] = (
    (zone_parking, 3.0, ("small-vehicle",)),
    (_zone_trucks, 1.3, ("large-vehicle",)),
    (zone_apron, 1.6, ("plane",)),
    (zone_helipad, 0.9, ("helicopter",)),
    (zone_sports, 1.6, ("tennis-court", "basketball-court")),
    (zone_tanks, 1.5, ("storage-tank",)),
)


def plan(rng: np.random.Generator, size: int, level: Level, theme: int = 0) -> Scene:
    """Lay out one scene (no drawing). Its first zone is ``ZONES[theme % len(ZONES)]``, placed before the
    roads so that it has room (or, if it does not fit, a few single objects of its classes): consecutive
    themes make every class appear in a few images."""
    area = (size / 512.0) ** 2
    sun_a = rng.uniform(0, 2 * math.pi)
    sc = Scene(
        rng=rng,
        size=size,
        level=level,
        scale=float(rng.uniform(*level.scale)),
        sun=(math.cos(sun_a), math.sin(sun_a)),
        placer=Placer(size),
    )
    if rng.random() < 0.5:
        a = rng.uniform(0, 2 * math.pi)
        normal = (math.cos(a), math.sin(a))
        # the shore crosses the image so that the sea covers 20-55 % of it
        centre = np.array([size / 2, size / 2])
        extent = abs(normal[0]) * size / 2 + abs(normal[1]) * size / 2
        offset = float(np.dot(normal, centre) + rng.uniform(-0.1, 0.6) * extent)
        sc.sea = _Sea(
            normal,
            offset,
            float(rng.uniform(1.0, 4.0)),
            float(rng.uniform(60, 200)),
            float(rng.uniform(0, 2 * math.pi)),
        )
        zone_harbor(sc)
        if rng.random() < 0.5:
            zone_harbor(sc)
    make_zone, _, names = ZONES[theme % len(ZONES)]
    before = len(sc.objects)
    make_zone(sc)
    if not any(o.name in names for o in sc.objects[before:]):  # no room for the zone: single objects
        scattered(sc, int(rng.integers(1, 4)), names)
    for _ in range(_count(rng, level.roads, math.sqrt(area))):
        add_road(sc)
    w = [z[1] for z in ZONES]
    for _ in range(_count(rng, level.zones, area) - 1):
        ZONES[sp.choose(rng, w)][0](sc)
    if sc.sea is not None:
        open_water_ships(sc, max(1, _count(rng, (2.0, 6.0), area)))
    scattered(sc, max(1, _count(rng, level.singles, area)))
    add_clutter(sc, area)
    return sc
