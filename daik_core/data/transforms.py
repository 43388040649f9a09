"""Augmentations that keep oriented boxes exact, and the letterbox.

Coordinates
    Continuous pixel coordinates, as in :mod:`daik_core.structures.boxes`: an image of ``W`` x ``H`` pixels
    covers ``[0, W] x [0, H]``, pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``, y grows down. A
    horizontal flip maps ``x -> W - x``.

Every geometric transform is one affine map ``u' = A u + b`` of these coordinates (a 2 x 3 matrix). The
image is warped with :func:`cv2.warpAffine` (whose matrices address pixel *centres*; :func:`cv2_matrix`
converts) and the objects' corner points are mapped with the same matrix, so boxes follow the pixels
exactly: flips, quarter turns, free rotations, scaling and the letterbox are similarities, rectangles
stay rectangles, and the box of a transformed object is the transformed box (converted back to the
long-side ``obb`` with :func:`~daik_core.structures.boxes.poly_to_obb`, which settles every angle and sign
question from the corners). Flips and quarter turns move whole pixels: their images are exact copies.

Objects that leave the frame (free rotation, scaling up, mosaic) are clipped to it
(:func:`clip_objects`): an object with less than ``min_visible`` (default :data:`MIN_VISIBLE` = 0.5) of its
area left in the frame is dropped, a cut one becomes the minimum-area rectangle around its visible part,
and every object whose box has a side under ``min_side`` (default :data:`MIN_SIDE` = 1 pixel) is dropped.

Randomness
    The functions here are deterministic given their parameters; :func:`draw_affine` and :func:`draw_hsv`
    draw the parameters from a :class:`numpy.random.Generator` that the caller seeds (the dataset seeds one
    per ``(seed, epoch, index)``). Every draw is made whatever the probabilities, so the stream of numbers,
    and so every later draw, does not depend on which augmentations fired.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from daik_core.config import AugmentSpec
from daik_core.data.split import clip_polygon
from daik_core.structures.boxes import obb_to_poly, poly_to_obb

__all__ = [
    "MIN_SIDE",
    "MIN_VISIBLE",
    "PAD_VALUE",
    "AffineParams",
    "Objects",
    "affine_matrix",
    "clip_objects",
    "cv2_matrix",
    "draw_affine",
    "draw_hsv",
    "hflip",
    "hsv_jitter",
    "letterbox",
    "mosaic",
    "pad_to_square",
    "resize_to_fit",
    "rot90",
    "rotate",
    "scale",
    "vflip",
    "warp",
]

#: Grey of the letterbox padding and of the borders that warps uncover.
PAD_VALUE = 114
#: Objects keeping less than this fraction of their area inside the frame are dropped.
MIN_VISIBLE = 0.5
#: Boxes with a side shorter than this (pixels) are dropped.
MIN_SIDE = 1.0

_EPS = 1e-6  # pixels: a corner this close outside the frame counts as inside (rounding of the maps)


# ------------------------------------------------------------------------------------------ objects
@dataclass
class Objects:
    """The annotated objects of one image. ``polys`` (N, 4, 2) float64 corner points (DOTA quads or box
    corners), ``labels`` (N,) int64 class indices, ``difficult`` (N,) int64 flags (0, 1 or 2)."""

    polys: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray

    def __post_init__(self) -> None:
        self.polys = np.asarray(self.polys, dtype=np.float64).reshape(-1, 4, 2)
        n = len(self.polys)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.difficult = np.asarray(self.difficult, dtype=np.int64).reshape(-1)
        if len(self.labels) != n or len(self.difficult) != n:
            raise ValueError(
                f"objects: {n} polygons but {len(self.labels)} labels and {len(self.difficult)} flags"
            )

    def __len__(self) -> int:
        return len(self.polys)

    @staticmethod
    def empty() -> Objects:
        return Objects(np.zeros((0, 4, 2)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    @staticmethod
    def from_obb(
        boxes: np.ndarray, labels: np.ndarray | None = None, difficult: np.ndarray | None = None
    ) -> Objects:
        """Objects from boxes (N, 5) obb; labels and flags default to 0."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
        n = len(boxes)
        polys = obb_to_poly(torch.from_numpy(boxes)).numpy()
        return Objects(
            polys,
            np.zeros(n, dtype=np.int64) if labels is None else labels,
            np.zeros(n, dtype=np.int64) if difficult is None else difficult,
        )

    def obb(self) -> np.ndarray:
        """The boxes (N, 5) float64 in the long-side convention: the minimum-area rectangles of the
        polygons (the rectangles themselves when they are rectangles)."""
        if not len(self):
            return np.zeros((0, 5), dtype=np.float64)
        return poly_to_obb(torch.from_numpy(self.polys.reshape(-1, 8))).numpy()

    def take(self, index: np.ndarray) -> Objects:
        return Objects(self.polys[index], self.labels[index], self.difficult[index])

    def transformed(self, matrix: np.ndarray) -> Objects:
        """The objects with every corner mapped by the affine ``matrix`` (2 x 3 or 3 x 3)."""
        m = np.asarray(matrix, dtype=np.float64)
        polys = self.polys @ m[:2, :2].T + m[:2, 2]
        return Objects(polys, self.labels.copy(), self.difficult.copy())

    @staticmethod
    def concat(parts: Sequence[Objects]) -> Objects:
        if not parts:
            return Objects.empty()
        return Objects(
            np.concatenate([p.polys for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.difficult for p in parts]),
        )


def _areas(polys: np.ndarray) -> np.ndarray:
    """Unsigned shoelace areas of polygons (N, K, 2)."""
    x, y = polys[..., 0], polys[..., 1]
    return np.abs((x * np.roll(y, -1, axis=-1) - y * np.roll(x, -1, axis=-1)).sum(-1)) / 2


def _min_area_rect(pts: np.ndarray) -> np.ndarray:
    """Corners (4, 2) of the minimum-area rectangle around a convex polygon (K >= 3, 2); one side of it
    lies along an edge of the polygon, so trying the K edge directions is exact."""
    d = np.roll(pts, -1, axis=0) - pts
    norm = np.hypot(d[:, 0], d[:, 1])
    d = d[norm > 0] / norm[norm > 0, None]
    u = d  # (E, 2) unit directions
    v = np.stack((-u[:, 1], u[:, 0]), axis=1)
    s, t = pts @ u.T, pts @ v.T  # (K, E) projections
    area = (s.max(0) - s.min(0)) * (t.max(0) - t.min(0))
    k = int(np.argmin(area))
    s0, s1, t0, t1 = s[:, k].min(), s[:, k].max(), t[:, k].min(), t[:, k].max()
    uk, vk = u[k], v[k]
    return np.stack((uk * s0 + vk * t0, uk * s1 + vk * t0, uk * s1 + vk * t1, uk * s0 + vk * t1))


def clip_objects(
    objects: Objects,
    rect: tuple[float, float, float, float],
    *,
    min_visible: float = MIN_VISIBLE,
    min_side: float = MIN_SIDE,
) -> Objects:
    """The objects as seen through the window ``rect = (x0, y0, x1, y1)`` (same coordinates).

    Objects inside are kept unchanged; an object cut by the window's edge keeps the minimum-area
    rectangle of its visible part when at least ``min_visible`` of its area is visible, else it is
    dropped; objects outside are dropped. Finally every object whose box has a side under ``min_side``
    (degenerate, or too small to learn) is dropped. The flags are kept as they are.
    """
    if not len(objects):
        return objects
    x0, y0, x1, y1 = rect
    px, py = objects.polys[..., 0], objects.polys[..., 1]
    lo_x, hi_x, lo_y, hi_y = px.min(1), px.max(1), py.min(1), py.max(1)
    inside = (lo_x >= x0 - _EPS) & (hi_x <= x1 + _EPS) & (lo_y >= y0 - _EPS) & (hi_y <= y1 + _EPS)
    touching = (lo_x < x1) & (hi_x > x0) & (lo_y < y1) & (hi_y > y0)
    polys = objects.polys.copy()
    keep = inside.copy()
    cut = np.flatnonzero(touching & ~inside)
    if len(cut):
        areas = _areas(objects.polys[cut])
        for i, area in zip(cut.tolist(), areas.tolist(), strict=True):
            part = clip_polygon(objects.polys[i], rect)
            if len(part) < 3 or area <= 0:
                continue
            if _areas(part[None])[0] < min_visible * area:
                continue
            polys[i] = _min_area_rect(part)
            keep[i] = True
    out = Objects(polys, objects.labels, objects.difficult).take(np.flatnonzero(keep))
    if len(out) and min_side > 0:
        sides = _box_sides(out.polys)
        out = out.take(np.flatnonzero(sides.min(1) >= min_side))
    return out


_PAIRS_I = np.array([0, 1, 2, 3, 0, 1])
_PAIRS_J = np.array([1, 2, 3, 0, 2, 3])


def _box_sides(polys: np.ndarray) -> np.ndarray:
    """Sides (N, 2) of the minimum-area rectangles of quads (N, 4, 2), the rectangles that
    :func:`~daik_core.structures.boxes.poly_to_obb` returns (same candidate directions: the four edges and
    the two diagonals; where two rectangles have the same area, either may come out), without going
    through torch: only the lengths are needed to filter."""
    d = polys[:, _PAIRS_J] - polys[:, _PAIRS_I]  # (N, 6, 2)
    norm = np.hypot(d[..., 0], d[..., 1])
    u = d / np.maximum(norm, 1e-300)[..., None]
    v = np.stack((-u[..., 1], u[..., 0]), axis=-1)
    x, y = polys[:, None, :, 0], polys[:, None, :, 1]  # (N, 1, 4)
    s = x * u[..., :1] + y * u[..., 1:]  # (N, 6, 4) projections on the directions
    t = x * v[..., :1] + y * v[..., 1:]
    ext_s = s.max(-1) - s.min(-1)
    ext_t = t.max(-1) - t.min(-1)
    area = np.where(norm > 0, ext_s * ext_t, np.inf)
    best = area.argmin(-1)[:, None]
    sides = np.concatenate((np.take_along_axis(ext_s, best, -1), np.take_along_axis(ext_t, best, -1)), axis=1)
    return np.where(np.isfinite(np.take_along_axis(area, best, -1)), sides, 0.0)


# ------------------------------------------------------------------------------------------- affine
def _translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _linear(a: np.ndarray) -> np.ndarray:
    m = np.eye(3)
    m[:2, :2] = a
    return m


def _rotation(angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians, clockwise on screen (y down): the direction of angle ``a`` turns
    into ``a + angle``, as box angles do."""
    c, s = math.cos(angle), math.sin(angle)
    return _linear(np.array([[c, -s], [s, c]]))


def cv2_matrix(matrix: np.ndarray) -> np.ndarray:
    """The :func:`cv2.warpAffine` matrix (pixel-centre coordinates) of an affine map of continuous
    coordinates: ``x_c = u - 0.5``, so ``b_c = b + A (0.5, 0.5) - (0.5, 0.5)``."""
    m = np.asarray(matrix, dtype=np.float64)[:2]
    a, b = m[:, :2], m[:, 2]
    return np.concatenate((a, (b + a.sum(1) * 0.5 - 0.5)[:, None]), axis=1)


def warp(
    image: np.ndarray,
    objects: Objects,
    matrix: np.ndarray,
    size: tuple[int, int],
    *,
    border: int = PAD_VALUE,
    interpolation: int = cv2.INTER_LINEAR,
    min_visible: float = MIN_VISIBLE,
    min_side: float = MIN_SIDE,
) -> tuple[np.ndarray, Objects]:
    """Map an image ``(H, W[, C])`` and its objects by the affine ``matrix`` (2 x 3 or 3 x 3, continuous
    coordinates) onto a new ``size = (width, height)`` frame; uncovered pixels get ``border``; objects are
    clipped to the new frame (:func:`clip_objects`)."""
    width, height = size
    out = cv2.warpAffine(
        image,
        cv2_matrix(matrix),
        (width, height),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(border, border, border, border),
    )
    if out.ndim < image.ndim:  # cv2 drops a trailing channel axis of length 1
        out = out[..., None]
    objs = clip_objects(
        objects.transformed(matrix), (0.0, 0.0, float(width), float(height)),
        min_visible=min_visible, min_side=min_side,
    )  # fmt: skip
    return out, objs


def hflip(image: np.ndarray, objects: Objects) -> tuple[np.ndarray, Objects]:
    """Mirror left-right: ``x -> W - x``; an obb ``(cx, cy, w, h, a)`` becomes ``(W - cx, cy, w, h,
    (pi - a) mod pi)``."""
    h, w = image.shape[:2]
    return warp(image, objects, np.array([[-1.0, 0.0, w], [0.0, 1.0, 0.0]]), (w, h))


def vflip(image: np.ndarray, objects: Objects) -> tuple[np.ndarray, Objects]:
    """Mirror top-bottom: ``y -> H - y``; an obb becomes ``(cx, H - cy, w, h, (pi - a) mod pi)``."""
    h, w = image.shape[:2]
    return warp(image, objects, np.array([[1.0, 0.0, 0.0], [0.0, -1.0, h]]), (w, h))


def _rot90_matrix(k: int, width: int, height: int) -> np.ndarray:
    k %= 4
    if k == 0:
        return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if k == 1:
        return np.array([[0.0, -1.0, height], [1.0, 0.0, 0.0]])
    if k == 2:
        return np.array([[-1.0, 0.0, width], [0.0, -1.0, height]])
    return np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, width]])


def rot90(image: np.ndarray, objects: Objects, k: int = 1) -> tuple[np.ndarray, Objects]:
    """``k`` quarter turns clockwise on screen; a ``W`` x ``H`` image becomes ``H`` x ``W`` for odd ``k``.
    One turn maps ``(x, y) -> (H - y, x)`` and an obb to ``(H - cy, cx, w, h, (a + pi/2) mod pi)``."""
    h, w = image.shape[:2]
    size = (h, w) if k % 2 else (w, h)
    return warp(image, objects, _rot90_matrix(k, w, h), size)


def _about_centre(linear: np.ndarray, src: tuple[float, float], dst: tuple[float, float]) -> np.ndarray:
    """``u -> linear (u - src) + dst`` (3 x 3)."""
    return _translation(*dst) @ linear @ _translation(-src[0], -src[1])


def rotate(
    image: np.ndarray, objects: Objects, angle: float, *, min_visible: float = MIN_VISIBLE
) -> tuple[np.ndarray, Objects]:
    """Rotate by ``angle`` radians (clockwise on screen) about the image centre, on the same frame; the
    corners of the image leave it (objects there are clipped or dropped), grey fills the uncovered
    corners."""
    h, w = image.shape[:2]
    c = (w / 2, h / 2)
    return warp(image, objects, _about_centre(_rotation(angle), c, c), (w, h), min_visible=min_visible)


def scale(
    image: np.ndarray, objects: Objects, factor: float, *, min_visible: float = MIN_VISIBLE
) -> tuple[np.ndarray, Objects]:
    """Zoom by ``factor`` about the image centre, on the same frame (> 1 crops, < 1 leaves a grey
    border)."""
    h, w = image.shape[:2]
    c = (w / 2, h / 2)
    m = _about_centre(_linear(np.eye(2) * factor), c, c)
    return warp(image, objects, m, (w, h), min_visible=min_visible)


# ---------------------------------------------------------------------------------------- letterbox
def resize_to_fit(image: np.ndarray, objects: Objects, imgsz: int) -> tuple[np.ndarray, Objects, float]:
    """Resize by ``scale = imgsz / max(H, W)`` (the longer side becomes ``imgsz``); returns a new array.

    ``cv2.resize`` with ``fx = fy = scale`` maps coordinates by exactly ``scale`` (the last row or column
    of the output may be partly outside the input when ``scale * side`` is not an integer). Shrinking
    uses area averaging, enlarging bilinear interpolation.
    """
    h, w = image.shape[:2]
    r = imgsz / max(h, w)
    if r == 1:
        return image.copy(), objects.transformed(np.eye(3)), 1.0
    if min(round(h * r), round(w * r)) < 1:
        raise ValueError(f"a {w} x {h} image cannot be fitted into {imgsz} pixels (aspect ratio too large)")
    interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR
    out = cv2.resize(image, None, fx=r, fy=r, interpolation=interp)
    if out.ndim < image.ndim:
        out = out[..., None]
    return out, objects.transformed(np.diag([r, r, 1.0])), r


def pad_to_square(
    image: np.ndarray, objects: Objects, imgsz: int, *, border: int = PAD_VALUE
) -> tuple[np.ndarray, Objects, tuple[int, int]]:
    """Centre an image no larger than ``imgsz`` on an ``imgsz`` x ``imgsz`` grey canvas; returns the
    canvas, the shifted objects and the padding ``(left, top)`` (whole pixels)."""
    h, w = image.shape[:2]
    if h > imgsz or w > imgsz:
        raise ValueError(f"a {w} x {h} image does not fit into {imgsz} x {imgsz}")
    left, top = (imgsz - w) // 2, (imgsz - h) // 2
    out = np.full((imgsz, imgsz, *image.shape[2:]), border, dtype=image.dtype)
    out[top : top + h, left : left + w] = image
    return out, objects.transformed(_translation(left, top)), (left, top)


def letterbox(
    image: np.ndarray, objects: Objects, imgsz: int
) -> tuple[np.ndarray, Objects, float, tuple[int, int]]:
    """Resize keeping the aspect ratio so that the image fits ``imgsz`` x ``imgsz``, then pad with grey
    (:data:`PAD_VALUE`) to that square, centred. Returns ``(image, objects, scale, (pad_left, pad_top))``:
    a point ``u`` of the input lands at ``u * scale + pad``. Objects are clipped to the input image.

    Worked example: a 200 x 100 image and ``imgsz`` 128 -> scale 0.64, a 128 x 64 picture, pad (0, 32).
    """
    h, w = image.shape[:2]
    objects = clip_objects(objects, (0.0, 0.0, float(w), float(h)), min_visible=0.0, min_side=0.0)
    resized, objs, r = resize_to_fit(image, objects, imgsz)
    out, objs, pad = pad_to_square(resized, objs, imgsz)
    objs = clip_objects(objs, (0.0, 0.0, float(imgsz), float(imgsz)), min_visible=0.0)
    return out, objs, r, pad


# ------------------------------------------------------------------------------- random affine maps
@dataclass(frozen=True)
class AffineParams:
    """One draw of the geometric augmentation: flips, then ``rot90`` quarter turns, then a free rotation
    by ``angle`` radians, then a zoom by ``scale``, all about the frame's centre (clockwise on screen)."""

    hflip: bool = False
    vflip: bool = False
    rot90: int = 0
    angle: float = 0.0
    scale: float = 1.0

    def linear(self) -> np.ndarray:
        """The 3 x 3 linear part."""
        m = _linear(np.diag([-1.0 if self.hflip else 1.0, -1.0 if self.vflip else 1.0]))
        m = _rotation(self.rot90 * math.pi / 2) @ m
        m[:2, :2] = np.round(m[:2, :2])  # exact quarter turns: cos(pi/2) is not 0 in floating point
        return _linear(self.scale * np.eye(2)) @ _rotation(self.angle) @ m

    def is_identity(self) -> bool:
        return (
            not self.hflip and not self.vflip and self.rot90 % 4 == 0 and self.angle == 0 and self.scale == 1
        )


def affine_matrix(
    params: AffineParams, src_centre: tuple[float, float], dst_centre: tuple[float, float]
) -> np.ndarray:
    """The 3 x 3 map ``u -> L (u - src_centre) + dst_centre`` of the augmentation ``params``."""
    return _about_centre(params.linear(), src_centre, dst_centre)


def draw_affine(rng: np.random.Generator, spec: AugmentSpec) -> AffineParams:
    """Draw flips (probabilities ``hflip``, ``vflip``), a quarter turn (probability ``rot90``: 1, 2 or 3
    turns, uniform), a rotation uniform in ``[-rotate_deg, rotate_deg]`` and a zoom uniform in
    ``[1 - scale, 1 + scale]``. Always seven numbers from ``rng``."""
    u = rng.random(3)
    turns = int(rng.integers(1, 4))
    angle_deg = float(rng.uniform(-1.0, 1.0)) * spec.rotate_deg
    zoom = 1.0 + float(rng.uniform(-1.0, 1.0)) * spec.scale
    return AffineParams(
        hflip=bool(u[0] < spec.hflip),
        vflip=bool(u[1] < spec.vflip),
        rot90=turns if u[2] < spec.rot90 else 0,
        angle=math.radians(angle_deg),
        scale=zoom,
    )


# --------------------------------------------------------------------------------------------- colour
def draw_hsv(rng: np.random.Generator, spec: AugmentSpec) -> tuple[float, float, float]:
    """``(hue shift, saturation gain, value gain)``: the shift uniform in ``[-hsv_h, hsv_h]`` of the hue
    circle, the gains uniform in ``[1 - hsv_s, 1 + hsv_s]`` and ``[1 - hsv_v, 1 + hsv_v]``."""
    u = rng.uniform(-1.0, 1.0, 3)
    return float(u[0] * spec.hsv_h), float(1 + u[1] * spec.hsv_s), float(1 + u[2] * spec.hsv_v)


def hsv_jitter(image: np.ndarray, hsv: tuple[float, float, float]) -> np.ndarray:
    """Shift the hue by ``hsv[0]`` of the circle and multiply saturation and value by ``hsv[1]``,
    ``hsv[2]`` (clipped), on an RGB ``uint8`` image, through lookup tables; returns a new image (the
    image itself when there is nothing to change)."""
    shift, sat, val = hsv
    if shift == 0 and sat == 1 and val == 1:
        return image
    x = np.arange(256, dtype=np.float64)
    lut_h = np.mod(np.round(x + shift * 180), 180).astype(np.uint8)  # OpenCV's 8-bit hue is 0..179
    lut_s = np.clip(np.round(x * sat), 0, 255).astype(np.uint8)
    lut_v = np.clip(np.round(x * val), 0, 255).astype(np.uint8)
    hue, s, v = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    merged = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    return cv2.cvtColor(merged, cv2.COLOR_HSV2RGB)


# --------------------------------------------------------------------------------------------- mosaic
def mosaic(
    tiles: Sequence[tuple[np.ndarray, Objects]],
    imgsz: int,
    centre: tuple[int, int],
    *,
    border: int = PAD_VALUE,
    min_visible: float = MIN_VISIBLE,
) -> tuple[np.ndarray, Objects]:
    """Four images around ``centre = (xc, yc)`` on a ``2 imgsz`` x ``2 imgsz`` canvas: the first ends at
    the centre from the top left, the second starts there towards the top right, the third towards the
    bottom left, the fourth towards the bottom right; parts beyond the canvas are cut off, and so are the
    objects there (:func:`clip_objects`). Pixels are copied, not resampled."""
    if len(tiles) != 4:
        raise ValueError(f"mosaic takes 4 images, got {len(tiles)}")
    s2 = 2 * imgsz
    xc, yc = centre
    if not (0 <= xc <= s2 and 0 <= yc <= s2):
        raise ValueError(f"mosaic centre {centre} is outside the {s2} x {s2} canvas")
    first = tiles[0][0]
    canvas = np.full((s2, s2, *first.shape[2:]), border, dtype=first.dtype)
    parts: list[Objects] = []
    for i, (img, objs) in enumerate(tiles):
        h, w = img.shape[:2]
        # canvas rectangle (x1a, y1a, x2a, y2a) and the image's top-left corner (ox, oy) on the canvas
        ox = xc - w if i in (0, 2) else xc
        oy = yc - h if i in (0, 1) else yc
        x1a, y1a = max(ox, 0), max(oy, 0)
        x2a, y2a = min(ox + w, s2), min(oy + h, s2)
        if x2a <= x1a or y2a <= y1a:
            continue
        canvas[y1a:y2a, x1a:x2a] = img[y1a - oy : y2a - oy, x1a - ox : x2a - ox]
        moved = objs.transformed(_translation(ox, oy))
        rect = (float(x1a), float(y1a), float(x2a), float(y2a))
        parts.append(clip_objects(moved, rect, min_visible=min_visible))
    return canvas, Objects.concat(parts)
