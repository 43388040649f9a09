"""Box-exact augmentations and the letterbox (daik_core.data.transforms)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daik_core.config import AugmentSpec
from daik_core.data.transforms import (
    PAD_VALUE,
    AffineParams,
    Objects,
    affine_matrix,
    clip_objects,
    draw_affine,
    draw_hsv,
    hflip,
    hsv_jitter,
    letterbox,
    mosaic,
    rot90,
    rotate,
    scale,
    vflip,
    warp,
)

PI = math.pi
W, H = 200, 160

Transform = Callable[[np.ndarray, Objects], tuple[np.ndarray, Objects]]

# boxes of reasonable size (sides >= 16 px) inside a 200 x 160 image, some near the edges, one square-ish
SCENE = np.array(
    [
        [50.0, 40.0, 60.0, 20.0, 0.3],
        [150.0, 50.0, 40.0, 24.0, 2.0],
        [100.0, 110.0, 70.0, 30.0, 1.1],
        [24.0, 130.0, 30.0, 18.0, 0.0],
        [175.0, 128.0, 36.0, 20.0, PI / 2],
        [110.0, 30.0, 22.0, 20.0, 0.7],
    ]
)


def scene_objects() -> Objects:
    # labels carry the object's number, so a transformed object can be matched with its mask
    return Objects.from_obb(SCENE, labels=np.arange(len(SCENE)))


def noise_image(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def raster(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels (H, W) bool whose centres lie in the polygon (continuous coordinates, pixel centres at +0.5)."""
    pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    x, y = pts[:, 0], pts[:, 1]
    if float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) < 0:
        pts = pts[::-1]  # make the corners turn the same way for the half-plane test
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    inside = np.ones(shape, dtype=bool)
    for a, b in zip(pts, np.roll(pts, -1, axis=0), strict=True):
        inside &= (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]) >= 0
    return inside


def object_masks(objs: Objects, shape: tuple[int, int]) -> list[np.ndarray]:
    """One uint8 (H, W, 1) image per object: 255 inside its polygon, 0 outside."""
    return [(raster(p, shape).astype(np.uint8) * 255)[..., None] for p in objs.polys]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def box_poly(obb_row: np.ndarray) -> np.ndarray:
    return Objects.from_obb(obb_row[None]).polys[0]


def assert_convention(objs: Objects) -> None:
    obb = objs.obb()
    assert np.all(obb[:, 2] >= obb[:, 3]), obb
    assert np.all((obb[:, 4] >= 0) & (obb[:, 4] < PI)), obb


def check_masks_follow_boxes(
    fn: Transform, image: np.ndarray, objs: Objects, *, min_iou: float = 0.9, expect_all: bool = True
) -> None:
    """Apply ``fn`` to the image with its objects and to each object's mask; every kept box must match its
    transformed mask (IoU of the rasterised box with the mask), and cover it when the object was cut."""
    out_img, out_objs = fn(image, objs)
    assert_convention(out_objs)
    if expect_all:
        assert sorted(out_objs.labels.tolist()) == list(range(len(objs)))
    masks = object_masks(objs, image.shape[:2])
    obb = out_objs.obb()
    assert len(out_objs) > 0
    for k, label in enumerate(out_objs.labels.tolist()):
        warped, _ = fn(masks[label], Objects.empty())
        mask = warped[..., 0] > 127
        box = raster(box_poly(obb[k]), out_img.shape[:2])
        assert mask.sum() > 50, f"object {label}: its mask left the frame"
        covered = float((mask & box).sum()) / float(mask.sum())
        assert covered > 0.95, f"object {label}: box covers {covered:.3f} of its pixels"
        if mask.sum() == (warped[..., 0] > 0).sum() or iou(mask, box) > min_iou:
            assert iou(mask, box) > min_iou, f"object {label}: IoU {iou(mask, box):.3f}"


# ------------------------------------------------------------------------------------------ hand cases
def test_hflip_hand_case_and_exact_pixels() -> None:
    img = noise_image()
    out, objs = hflip(img, Objects.from_obb(np.array([[50.0, 30.0, 40.0, 10.0, 0.3]])))
    assert np.array_equal(out, img[:, ::-1])
    np.testing.assert_allclose(objs.obb()[0], [W - 50, 30, 40, 10, PI - 0.3], atol=1e-9)


def test_vflip_hand_case_and_exact_pixels() -> None:
    img = noise_image()
    out, objs = vflip(img, Objects.from_obb(np.array([[50.0, 30.0, 40.0, 10.0, 0.3]])))
    assert np.array_equal(out, img[::-1])
    np.testing.assert_allclose(objs.obb()[0], [50, H - 30, 40, 10, PI - 0.3], atol=1e-9)


def test_flip_of_angle_zero_stays_zero() -> None:
    # (pi - 0) mod pi = 0: a horizontal box stays horizontal, not at angle pi
    _, objs = hflip(noise_image(), Objects.from_obb(np.array([[50.0, 30.0, 40.0, 10.0, 0.0]])))
    np.testing.assert_allclose(objs.obb()[0], [W - 50, 30, 40, 10, 0.0], atol=1e-9)


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (1, [H - 30, 50, 40, 10, 0.3 + PI / 2]),
        (2, [W - 50, H - 30, 40, 10, 0.3]),
        (3, [30, W - 50, 40, 10, 0.3 + PI / 2]),
        (4, [50, 30, 40, 10, 0.3]),
    ],
)
def test_rot90_hand_cases_and_exact_pixels(k: int, expected: list[float]) -> None:
    img = noise_image()
    out, objs = rot90(img, Objects.from_obb(np.array([[50.0, 30.0, 40.0, 10.0, 0.3]])), k)
    assert np.array_equal(out, np.rot90(img, -k))  # numpy turns counter-clockwise on screen
    np.testing.assert_allclose(objs.obb()[0], expected, atol=1e-9)


def test_letterbox_hand_case() -> None:
    img = noise_image(100, 200)
    out, objs, s, pad = letterbox(img, Objects.from_obb(np.array([[100.0, 50.0, 40.0, 10.0, 0.3]])), 128)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert s == pytest.approx(0.64) and pad == (0, 32)
    assert (out[:32] == PAD_VALUE).all() and (out[96:] == PAD_VALUE).all()
    np.testing.assert_allclose(objs.obb()[0], [64, 64, 25.6, 6.4, 0.3], atol=1e-9)
    # a tall image is padded left and right
    out, _, s, pad = letterbox(noise_image(200, 100), Objects.empty(), 128)
    assert s == pytest.approx(0.64) and pad == (32, 0) and (out[:, :32] == PAD_VALUE).all()


def test_letterbox_enlarges_small_images() -> None:
    _, objs, s, pad = letterbox(noise_image(32, 64), Objects.from_obb(np.array([[32, 16, 20, 4, 0]])), 128)
    assert s == 2.0 and pad == (0, 32)
    np.testing.assert_allclose(objs.obb()[0], [64, 64, 40, 8, 0], atol=1e-9)


def test_clip_objects_hand_cases() -> None:
    objs = Objects.from_obb(
        np.array(
            [
                [50, 50, 40, 10, 0],  # inside: unchanged
                [90, 50, 40, 10, 0],  # x 70..110: 3/4 visible -> the visible part, (85, 50, 30, 10)
                [110, 50, 40, 10, 0],  # x 90..130: 1/4 visible -> dropped
                [50, 50, 40, 0.5, 0],  # thinner than a pixel -> dropped
                [300, 50, 40, 10, 0],  # outside -> dropped
            ]
        ),
        labels=np.arange(5),
        difficult=np.array([1, 2, 0, 0, 0]),
    )
    out = clip_objects(objs, (0, 0, 100, 100))
    assert out.labels.tolist() == [0, 1]
    assert out.difficult.tolist() == [1, 2]  # flags travel with their objects
    np.testing.assert_allclose(out.obb(), [[50, 50, 40, 10, 0], [85, 50, 30, 10, 0]], atol=1e-9)
    assert len(clip_objects(Objects.empty(), (0, 0, 10, 10))) == 0


# ------------------------------------------------------------------------- masks follow the boxes
@pytest.mark.parametrize(
    "fn",
    [
        hflip,
        vflip,
        lambda im, o: rot90(im, o, 1),
        lambda im, o: rot90(im, o, 3),
        lambda im, o: scale(im, o, 0.7),
        lambda im, o: letterbox(im, o, 128)[:2],
        lambda im, o: letterbox(im, o, 320)[:2],
    ],
    ids=["hflip", "vflip", "rot90", "rot270", "scale0.7", "letterbox128", "letterbox320"],
)
def test_boxes_follow_pixels_exactly(fn: Transform) -> None:
    check_masks_follow_boxes(fn, noise_image(), scene_objects())


@pytest.mark.parametrize("angle", [0.4, -1.0, PI / 4])
def test_free_rotation_boxes_follow_pixels(angle: float) -> None:
    # the corners of the frame leave it: objects there are cut (box covers the visible part) or dropped
    check_masks_follow_boxes(
        lambda im, o: rotate(im, o, angle), noise_image(), scene_objects(), expect_all=False
    )


def test_zoom_in_cuts_objects_at_the_frame() -> None:
    fn: Transform = lambda im, o: scale(im, o, 1.6)  # noqa: E731
    _, out = fn(noise_image(), scene_objects())
    assert 0 < len(out) < len(SCENE)  # some left the frame
    check_masks_follow_boxes(fn, noise_image(), scene_objects(), expect_all=False)


def test_wrong_angle_sign_would_be_caught() -> None:
    # the check itself must be able to fail: a box mirrored without its angle misses its mask
    def bad_hflip(im: np.ndarray, o: Objects) -> tuple[np.ndarray, Objects]:
        out, objs = hflip(im, o)
        obb = objs.obb()
        obb[:, 4] = SCENE[objs.labels, 4]  # keeps the old angle: wrong
        return out, Objects.from_obb(obb, objs.labels, objs.difficult)

    with pytest.raises(AssertionError):
        check_masks_follow_boxes(bad_hflip, noise_image(), scene_objects())


def test_composed_random_affine_follows_pixels() -> None:
    spec = AugmentSpec(hflip=0.5, vflip=0.5, rot90=0.5, rotate_deg=30, scale=0.3)
    rng = np.random.default_rng(7)
    for _ in range(4):
        params = draw_affine(rng, spec)
        # the dataset's map: letterbox placement then the augmentation about the square's centre
        m = affine_matrix(params, (80.0, 80.0), (80.0, 80.0))
        fn: Transform = lambda im, o, m=m: warp(im, o, m, (160, 160))  # noqa: E731
        check_masks_follow_boxes(fn, noise_image(), scene_objects(), expect_all=False)


def test_mosaic_boxes_follow_pixels() -> None:
    imgsz = 128
    sizes = [(100, 80), (128, 128), (90, 128), (128, 60)]  # (h, w) of the four letterboxed tiles
    rng = np.random.default_rng(3)
    tiles: list[tuple[np.ndarray, Objects]] = []
    n = 0
    for h, w in sizes:
        boxes = np.array(
            [[w * 0.3, h * 0.3, 24, 14, rng.uniform(0, PI)], [w * 0.7, h * 0.65, 30, 16, rng.uniform(0, PI)]]
        )
        tiles.append((noise_image(h, w, seed=n), Objects.from_obb(boxes, labels=np.array([n, n + 1]))))
        n += 2
    centre = (120, 140)
    canvas, objs = mosaic(tiles, imgsz, centre)
    assert canvas.shape == (2 * imgsz, 2 * imgsz, 3)
    assert np.array_equal(canvas[140 - 100 : 140, 120 - 80 : 120], tiles[0][0])  # first tile ends at centre
    assert_convention(objs)
    params = AffineParams(hflip=True, angle=0.3, scale=1.1)
    m = affine_matrix(params, (float(imgsz), float(imgsz)), (imgsz / 2, imgsz / 2))
    out, out_objs = warp(canvas, objs, m, (imgsz, imgsz))
    assert out.shape == (imgsz, imgsz, 3) and len(out_objs) > 0
    assert_convention(out_objs)
    obb = out_objs.obb()
    for k, label in enumerate(out_objs.labels.tolist()):
        t = label // 2
        src = tiles[t][1].take(np.array([label % 2]))
        mask = object_masks(src, sizes[t])[0]
        mask_tiles = [
            (mask if j == t else np.zeros((*sizes[j], 1), np.uint8), Objects.empty()) for j in range(4)
        ]
        mcanvas, _ = mosaic(mask_tiles, imgsz, centre, border=0)
        mout, _ = warp(mcanvas, Objects.empty(), m, (imgsz, imgsz), border=0)
        visible = mout[..., 0] > 127
        box = raster(box_poly(obb[k]), (imgsz, imgsz))
        assert float((visible & box).sum()) / max(float(visible.sum()), 1.0) > 0.95
        assert float((visible & box).sum()) / float(box.sum()) > 0.8  # and not much bigger than the object


def test_mosaic_rejects_bad_arguments() -> None:
    tile = (noise_image(10, 10), Objects.empty())
    with pytest.raises(ValueError, match="4 images"):
        mosaic([tile] * 3, 16, (16, 16))
    with pytest.raises(ValueError, match="outside"):
        mosaic([tile] * 4, 16, (40, 16))


# ------------------------------------------------------------------------------- the box convention
@settings(max_examples=60, deadline=None)
@given(
    cx=st.floats(20, 180),
    cy=st.floats(20, 140),
    w=st.floats(2, 60),
    h=st.floats(2, 60),
    a=st.floats(-4, 4),
    op=st.sampled_from(["hflip", "vflip", "rot90", "rotate", "scale", "letterbox"]),
)
def test_long_side_convention_after_every_transform(
    cx: float, cy: float, w: float, h: float, a: float, op: str
) -> None:
    img = np.zeros((H, W, 3), dtype=np.uint8)
    objs = Objects.from_obb(np.array([[cx, cy, w, h, a]]))
    ops: dict[str, Transform] = {
        "hflip": hflip,
        "vflip": vflip,
        "rot90": lambda im, o: rot90(im, o, 1),
        "rotate": lambda im, o: rotate(im, o, 0.5),
        "scale": lambda im, o: scale(im, o, 1.2),
        "letterbox": lambda im, o: letterbox(im, o, 96)[:2],
    }
    _, out = ops[op](img, objs)
    assert_convention(out)
    if op in ("hflip", "vflip", "rot90") and len(out):
        # a whole-pixel map keeps the sides; only a cut can shrink them
        before, after = sorted((w, h)), sorted(out.obb()[0, 2:4].tolist())
        assert after[1] <= before[1] + 1e-6 and after[0] <= before[0] + 1e-6


# --------------------------------------------------------------------------------------- randomness
def test_draws_are_reproducible_and_respect_probabilities() -> None:
    spec = AugmentSpec(rotate_deg=10)
    a = [draw_affine(np.random.default_rng(5), spec) for _ in range(2)]
    assert a[0] == a[1]
    off = AugmentSpec(hflip=0, vflip=0, rot90=0, rotate_deg=0, scale=0)
    assert all(draw_affine(np.random.default_rng(s), off).is_identity() for s in range(20))
    on = AugmentSpec(hflip=1, vflip=1, rot90=1, rotate_deg=0, scale=0)
    p = draw_affine(np.random.default_rng(0), on)
    assert p.hflip and p.vflip and p.rot90 in (1, 2, 3)
    rng = np.random.default_rng(1)
    draws = [draw_affine(rng, spec) for _ in range(200)]
    assert all(abs(d.angle) <= math.radians(10) and 0.75 <= d.scale <= 1.25 for d in draws)
    assert 60 < sum(d.hflip for d in draws) < 140


def test_hsv_jitter() -> None:
    red = np.zeros((4, 4, 3), dtype=np.uint8)
    red[..., 0] = 255
    assert hsv_jitter(red, (0.0, 1.0, 1.0)) is red  # identity: nothing to do
    cyan = hsv_jitter(red, (0.5, 1.0, 1.0))  # half way round the hue circle
    assert cyan.dtype == np.uint8 and cyan.shape == red.shape
    np.testing.assert_array_equal(cyan[0, 0], [0, 255, 255])
    dark = hsv_jitter(red, (0.0, 1.0, 0.5))
    assert abs(int(dark[0, 0, 0]) - 128) <= 1 and dark[0, 0, 1] == 0
    assert draw_hsv(np.random.default_rng(0), AugmentSpec(hsv_h=0, hsv_s=0, hsv_v=0)) == (0.0, 1.0, 1.0)
    g = draw_hsv(np.random.default_rng(0), AugmentSpec())
    assert g == draw_hsv(np.random.default_rng(0), AugmentSpec()) and g != (0.0, 1.0, 1.0)
