"""The DOTA training dataset: validation, tiling, frames, augmentation (daik_core.data.dataset)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.geometry import Polygon

from daik_core.config import AugmentSpec, SplitSpec
from daik_core.data.classes import DOTA_V1_0
from daik_core.data.dataset import DotaDataset, ItemKey
from daik_core.data.dota import DotaLabel, DotaObject, read_label_file, write_label_file
from daik_core.data.image_header import decode_image
from daik_core.data.synth import SYNTH_CLASSES, generate_dataset, render_image
from daik_core.data.transforms import Objects
from daik_core.errors import DataFormatError

PI = math.pi
HEAVY = AugmentSpec(hflip=0.5, vflip=0.5, rot90=0.5, rotate_deg=45, scale=0.4, hsv_h=0, hsv_s=0, hsv_v=0)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "d"
    generate_dataset(root, images=4, size=256, seed=0, difficulty="easy", progress=False)
    return root


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def poly(row: np.ndarray) -> Polygon:
    p = np.asarray(row, dtype=np.float64).reshape(-1, 2)
    return Polygon(p)


def obb_polys(boxes: np.ndarray) -> np.ndarray:
    return Objects.from_obb(boxes).polys


def assert_convention(boxes: np.ndarray) -> None:
    assert boxes.dtype == np.float32 and boxes.shape[1:] == (5,)
    assert np.all(boxes[:, 2] >= boxes[:, 3]), boxes
    assert np.all((boxes[:, 4] >= 0) & (boxes[:, 4] < np.float32(PI))), boxes


def raster(corners: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels (H, W) bool whose centres lie in a convex polygon (K, 2) of continuous coordinates."""
    pts = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
    x, y = pts[:, 0], pts[:, 1]
    if float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) < 0:
        pts = pts[::-1]
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    inside = np.ones(shape, dtype=bool)
    for a, b in zip(pts, np.roll(pts, -1, axis=0), strict=True):
        inside &= (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]) >= 0
    return inside


def write_sample(root: Path, name: str, image_bgr: np.ndarray, objects: list[DotaObject]) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / f"{name}.png"), image_bgr)
    write_label_file(root / "labelTxt" / f"{name}.txt", DotaLabel(objects))


# ------------------------------------------------------------------------------------------ basics
def test_plain_samples_are_the_letterboxed_labels(synth: Path) -> None:
    ds = DotaDataset(synth, SYNTH_CLASSES, 128, train=False)
    assert len(ds) == ds.num_images == 4
    for i in range(len(ds)):
        s = ds[i]
        assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
        assert_convention(s.boxes)
        assert s.labels.dtype == np.int64 and s.difficult.dtype == np.int64
        assert len(s.boxes) == len(s.labels) == len(s.difficult)
        assert s.meta.image_id == f"synth_{i:06d}" and s.meta.scale == 0.5 and s.meta.pad == (0, 0)
        # the labels of the file, halved
        src = ds.source_objects(i)
        np.testing.assert_allclose(s.boxes, s.meta.from_source(src.obb()).astype(np.float32), atol=1e-4)
        np.testing.assert_allclose(s.meta.to_source(s.boxes), src.obb(), atol=1e-3)
        # the picture is the file's, RGB, halved
        rgb = cv2.cvtColor(decode_image(ds.images[i].path), cv2.COLOR_BGR2RGB)
        small = cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        assert np.array_equal(s.image, small)


def test_item_keys_choose_the_draw(synth: Path) -> None:
    ds = DotaDataset(synth, SYNTH_CLASSES, 128, augment=AugmentSpec(rotate_deg=20, mosaic=0.5))
    a, b = ds[ItemKey(2, 3, 7)], ds.get(2, epoch=3, seed=7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes) and a.meta == b.meta
    other = [ds.get(2, epoch=e, seed=7) for e in range(4, 8)]
    assert all(not np.array_equal(a.image, o.image) for o in other)
    assert not np.array_equal(a.image, ds.get(2, epoch=3, seed=8).image)
    for s in [a, *other]:
        assert_convention(s.boxes)
        assert s.image.shape == (128, 128, 3)


def test_no_augmentation_when_not_training(synth: Path) -> None:
    ds = DotaDataset(synth, SYNTH_CLASSES, 128, augment=HEAVY, train=False)
    assert ds.augment is None
    assert np.array_equal(ds.get(1, epoch=0).image, ds.get(1, epoch=5).image)


def test_image_without_objects_gives_an_empty_sample(synth: Path, tmp_path: Path) -> None:
    root = copy_dataset(synth, tmp_path / "d")
    (root / "labelTxt" / "synth_000001.txt").write_text("imagesource:x\ngsd:null\n", encoding="utf-8")
    for ds in (
        DotaDataset(root, SYNTH_CLASSES, 64, train=False),
        DotaDataset(root, SYNTH_CLASSES, 64, augment=HEAVY),
    ):
        s = ds.get(1, epoch=2)
        assert s.boxes.shape == (0, 5) and s.boxes.dtype == np.float32
        assert s.labels.shape == (0,) and s.difficult.shape == (0,)
        assert s.image.shape == (64, 64, 3)


def test_difficult_objects_are_kept_with_their_flag(tmp_path: Path) -> None:
    img = np.full((100, 100, 3), 40, np.uint8)
    objs = [
        DotaObject((10, 10, 50, 10, 50, 30, 10, 30), "ship", 1),
        DotaObject((60, 60, 90, 60, 90, 80, 60, 80), "plane", 0),
    ]
    write_sample(tmp_path / "d", "a", img, objs)
    s = DotaDataset(tmp_path / "d", DOTA_V1_0, 100, train=False)[0]
    assert s.difficult.tolist() == [1, 0]
    assert s.labels.tolist() == [DOTA_V1_0.index("ship"), DOTA_V1_0.index("plane")]


def test_unknown_classes_fail_or_are_skipped(tmp_path: Path) -> None:
    write_sample(
        tmp_path / "d", "a", np.zeros((50, 50, 3), np.uint8), [DotaObject((1, 1, 9, 1, 9, 5, 1, 5), "ufo")]
    )
    with pytest.raises(DataFormatError, match=r"a\.txt:1: unknown class 'ufo'"):
        DotaDataset(tmp_path / "d", DOTA_V1_0, 64)
    ds = DotaDataset(tmp_path / "d", DOTA_V1_0, 64, skip_unknown=True)
    assert len(ds[0].boxes) == 0


# -------------------------------------------------------------------------------------- validation
def test_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="does not exist"):
        DotaDataset(tmp_path / "nowhere", SYNTH_CLASSES, 64)
    (tmp_path / "d").mkdir()
    with pytest.raises(DataFormatError) as err:
        DotaDataset(tmp_path / "d", SYNTH_CLASSES, 64)
    assert "images: image folder does not exist" in str(err.value)
    assert "labelTxt: label folder does not exist" in str(err.value)


def test_missing_label_file_is_named(synth: Path, tmp_path: Path) -> None:
    root = copy_dataset(synth, tmp_path / "d")
    (root / "labelTxt" / "synth_000002.txt").unlink()
    with pytest.raises(DataFormatError, match=r"synth_000002\.png: no label file"):
        DotaDataset(root, SYNTH_CLASSES, 64)


def test_label_without_image_is_named(synth: Path, tmp_path: Path) -> None:
    root = copy_dataset(synth, tmp_path / "d")
    (root / "images" / "synth_000003.png").unlink()
    with pytest.raises(DataFormatError, match=r"synth_000003\.txt: no image"):
        DotaDataset(root, SYNTH_CLASSES, 64)


def test_corrupt_and_truncated_images_are_named(synth: Path, tmp_path: Path) -> None:
    root = copy_dataset(synth, tmp_path / "d")
    (root / "images" / "synth_000000.png").write_bytes(b"this is not a picture at all" * 10)
    with pytest.raises(DataFormatError, match=r"synth_000000\.png: not a readable image"):
        DotaDataset(root, SYNTH_CLASSES, 64)
    root = copy_dataset(synth, tmp_path / "e")
    png = root / "images" / "synth_000001.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=r"synth_000001\.png: truncated PNG"):
        DotaDataset(root, SYNTH_CLASSES, 64)


def test_malformed_label_line_is_named(synth: Path, tmp_path: Path) -> None:
    root = copy_dataset(synth, tmp_path / "d")
    path = root / "labelTxt" / "synth_000001.txt"
    path.write_text(path.read_text(encoding="utf-8") + "1 2 3 ship\n", encoding="utf-8")
    lineno = len(path.read_text(encoding="utf-8").splitlines())
    with pytest.raises(DataFormatError, match=rf"synth_000001\.txt:{lineno}: expected 9 or 10 fields"):
        DotaDataset(root, SYNTH_CLASSES, 64)


def test_all_problems_in_one_error(synth: Path, tmp_path: Path) -> None:
    root = copy_dataset(synth, tmp_path / "d")
    (root / "labelTxt" / "synth_000000.txt").unlink()
    (root / "images" / "synth_000001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "labelTxt" / "synth_000002.txt").write_text("1 2 3 4 5 6 7 8\n", encoding="utf-8")
    (root / "labelTxt" / "orphan.txt").write_text("", encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        DotaDataset(root, SYNTH_CLASSES, 64)
    msg = str(err.value)
    assert msg.startswith(f"{root}: 4 problems in the dataset")
    for name in ("synth_000000.png", "synth_000001.png", "synth_000002.txt:1", "orphan.txt"):
        assert name in msg
    assert "synth_000003" not in msg


def test_broken_pixels_fail_when_read_naming_the_file(synth: Path, tmp_path: Path) -> None:
    # a PNG whose header and IEND are intact but whose data is garbage passes the cheap check
    root = copy_dataset(synth, tmp_path / "d")
    png = root / "images" / "synth_000002.png"
    data = bytearray(png.read_bytes())
    data[60:-20] = bytes(len(data) - 80)
    png.write_bytes(bytes(data))
    ds = DotaDataset(root, SYNTH_CLASSES, 64)
    with pytest.raises(DataFormatError, match=r"synth_000002\.png"):
        ds[2]


# --------------------------------------------------------------------------------------------- tiling
def make_700x500(root: Path) -> DotaLabel:
    """A 700 x 500 synthetic scene (the top of a 700 x 700 one, objects of that part only)."""
    image, label = render_image(1, 0, size=700, difficulty="easy")
    objs = [o for o in label.objects if max(o.poly[1::2]) <= 500]
    label = DotaLabel(objs)
    write_sample(root, "big", cv2.cvtColor(image[:500], cv2.COLOR_RGB2BGR), objs)
    return label


def window_bounds(ds: DotaDataset, i: int) -> tuple[float, float, float, float]:
    """Item ``i``'s window in source-image pixels."""
    win = ds.windows[i]
    x0, y0 = win.left / win.rate, win.up / win.rate
    return x0, y0, x0 + win.width / win.rate, y0 + win.height / win.rate


def check_maps_back(ds: DotaDataset, min_side: float) -> None:
    """Every box of every item, mapped back to its source image, is a source object's box, of its class:
    exactly when the object lies inside the window, else the visible part of a cut object (the box of
    split_label's clipped quad: a cut-off corner, a triangle, gets a rectangle of twice its area). Every
    source object inside a window (and not tiny) comes back."""
    for i in range(len(ds)):
        s = ds[i]
        assert_convention(s.boxes)
        src = ds.source_objects(ds.windows[i].image)
        x0, y0, x1, y1 = window_bounds(ds, i)
        lo, hi = src.polys.min(1), src.polys.max(1)
        touching = np.flatnonzero((lo[:, 0] < x1) & (hi[:, 0] > x0) & (lo[:, 1] < y1) & (hi[:, 1] > y0))
        tol = 1e-6
        inside_all = (
            (lo[:, 0] >= x0 - tol) & (hi[:, 0] <= x1 + tol) & (lo[:, 1] >= y0 - tol) & (hi[:, 1] <= y1 + tol)
        )
        rect = Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        src_obb = src.obb()
        corners = obb_polys(src_obb[touching])
        cand = [
            (int(j), poly(src.polys[j]), poly(c), bool(inside_all[j]))  # annotated quad, its box, inside?
            for j, c in zip(touching, corners, strict=True)
        ]
        visible = {j: (p if ins else p.intersection(rect)) for j, p, _, ins in cand}
        back = s.meta.to_source(s.boxes.astype(np.float64))
        found = set()
        for box, cls in zip(obb_polys(back), s.labels.tolist(), strict=True):
            b = poly(box)
            # the object it stands for: the best IoU with an object's box (inside) or visible part (cut)
            best, best_score = None, 0.0
            for j, p, pb, ins in cand:
                if src.labels[j] != cls:
                    continue
                t = pb if ins else visible[j]
                if t.area > 0 and b.intersects(t):
                    score = b.intersection(t).area / b.union(t).area
                    if score > best_score:
                        best, best_score = (j, p, pb, ins), score
            assert best is not None, (s.meta, box)
            j, p, pb, ins = best
            if ins:
                # the minimum-area rectangle of the annotated quad (ties between rectangles of equal area
                # may break either way): it holds the quad and has the area of the source's box
                assert b.intersection(p).area > 0.99 * p.area, (s.meta, j)
                assert b.area == pytest.approx(pb.area, rel=1e-3), (s.meta, j)
                found.add(j)
            else:
                assert b.intersection(pb).area > 0.45 * b.area, (s.meta, j)
                assert b.intersection(visible[j]).area > 0.6 * visible[j].area, (s.meta, j)
        scale = s.meta.scale * s.meta.rate
        for j, _, _, ins in cand:
            if ins and src_obb[j, 3] * scale >= min_side:
                assert j in found, (s.meta, j)


def test_tiling_700x500(tmp_path: Path) -> None:
    label = make_700x500(tmp_path / "d")
    names = tuple(sorted({o.name for o in label.objects}))
    ds = DotaDataset(tmp_path / "d", names, 128, split=SplitSpec(size=256, gap=64), train=False)
    # lefts 0, 192, 384, 444 and ups 0, 192, 244
    assert len(ds) == 12
    assert {(w.left, w.up) for w in ds.windows} == {(x, y) for x in (0, 192, 384, 444) for y in (0, 192, 244)}
    s = ds[5]
    assert s.meta.image_id == "big" and s.meta.source_size == (700, 500) and s.meta.window_size == (256, 256)
    assert s.meta.scale == 0.5 and s.meta.offset == (ds.windows[5].left, ds.windows[5].up)
    check_maps_back(ds, min_side=2.0)


def test_tiling_with_two_rates(tmp_path: Path) -> None:
    make_700x500(tmp_path / "d")
    ds = DotaDataset(
        tmp_path / "d", SYNTH_CLASSES, 256, split=SplitSpec(size=256, gap=64, rates=(0.5, 1.0)), train=False
    )
    # rate 0.5: a 350 x 250 image, lefts 0, 94 and one up; rate 1: 12 windows
    assert len(ds) == 14
    assert [(w.rate, w.left, w.up) for w in ds.windows[:2]] == [(0.5, 0, 0), (0.5, 94, 0)]
    check_maps_back(ds, min_side=2.0)


def test_small_images_are_served_whole_when_tiling(synth: Path) -> None:
    ds = DotaDataset(synth, SYNTH_CLASSES, 128, split=SplitSpec(size=256, gap=64), train=False)
    assert len(ds) == 4 and all(w.width == w.height == 256 for w in ds.windows)


def test_tiling_matches_split_label(tmp_path: Path) -> None:
    from daik_core.data.split import split_label

    label = make_700x500(tmp_path / "d")
    ds = DotaDataset(tmp_path / "d", SYNTH_CLASSES, 256, split=SplitSpec(size=256, gap=64), train=False)
    for i, win in enumerate(ds.windows):
        expected = split_label(label, win.left, win.up, 256, image_size=(700, 500))
        got = ds.window_objects(i)
        exp = sorted(tuple(np.round(o.poly, 6)) for o in expected.objects)
        assert sorted(tuple(np.round(p.reshape(-1), 6)) for p in got.polys) == exp
        flags = sorted(o.difficult for o in expected.objects)
        assert sorted(got.difficult.tolist()) == flags


def test_real_dota_example_maps_back(dota_example: Path) -> None:
    ds = DotaDataset(dota_example, DOTA_V1_0, 512, split=SplitSpec(size=512, gap=128), train=False)
    assert ds.num_images == 2 and len(ds) > 2
    check_maps_back(ds, min_side=1.0)


# ----------------------------------------------------------------------------------- augmentation
def colour_scene(root: Path) -> tuple[str, ...]:
    """Two images of filled rotated rectangles on black, apart on a grid, one colour per class."""
    colours = {"plane": (255, 0, 0), "ship": (0, 255, 0), "harbor": (0, 0, 255)}
    names = list(colours)
    rng = np.random.default_rng(0)
    for k, (w, h) in enumerate(((300, 200), (220, 260))):
        img = np.zeros((h, w, 3), np.uint8)
        objs: list[DotaObject] = []
        for n, (cx, cy) in enumerate((x, y) for x in range(50, w - 40, 100) for y in range(50, h - 40, 100)):
            cls = names[(n + k) % 3]
            obb = np.array([[cx, cy, rng.uniform(50, 80), rng.uniform(22, 34), rng.uniform(0, PI)]])
            corners = Objects.from_obb(obb).polys[0]
            pts = np.round((corners - 0.5) * 256).astype(np.int32)
            cv2.fillPoly(img, [pts], colours[cls][::-1], lineType=cv2.LINE_AA, shift=8)
            objs.append(DotaObject(tuple(corners.reshape(-1).tolist()), cls))
        write_sample(root, f"c{k}", img, objs)
    return tuple(names)


@pytest.mark.parametrize("mosaic_p", [0.0, 1.0])
def test_augmented_boxes_sit_on_their_objects(tmp_path: Path, mosaic_p: float) -> None:
    classes = colour_scene(tmp_path / "d")
    spec = AugmentSpec(**{**HEAVY.model_dump(), "mosaic": mosaic_p})
    ds = DotaDataset(tmp_path / "d", classes, 160, augment=spec)
    seen = 0
    for epoch in range(6):
        for i in range(len(ds)):
            s = ds.get(i, epoch=epoch)
            assert s.meta.mosaic == (mosaic_p == 1.0)
            assert_convention(s.boxes)
            for box, cls in zip(obb_polys(s.boxes.astype(np.float64)), s.labels.tolist(), strict=True):
                inside = raster(box, (160, 160))
                if inside.sum() < 40:
                    continue
                # the object's colour (its channel, also where blended with the black ground at the edges)
                pix = s.image[inside].astype(int)
                right = (pix.argmax(1) == cls) & (pix.max(1) > 60)
                assert right.mean() > 0.85, (s.meta, cls, right.mean())
                seen += 1
            if not s.meta.mosaic and len(s.boxes):
                # augmented frames map back too: each box lies on a source object
                src = [poly(p) for p in ds.source_objects(ds.windows[i].image).polys]
                for b in obb_polys(s.meta.to_source(s.boxes.astype(np.float64))):
                    bp = poly(b)
                    assert max(bp.intersection(p).area for p in src) > 0.85 * bp.area
    assert seen > 50
    if mosaic_p:
        with pytest.raises(ValueError, match="mosaic"):
            ds.get(0).meta.to_source(np.zeros((0, 5)))


def test_labels_of_the_example_are_read_once(dota_example: Path) -> None:
    # the dataset's objects are those of the label files (of known classes)
    ds = DotaDataset(dota_example, DOTA_V1_0, 512, train=False)
    total = sum(
        len(read_label_file(p, DOTA_V1_0).objects) for p in sorted((dota_example / "labelTxt").glob("*.txt"))
    )
    assert ds.num_objects == total
