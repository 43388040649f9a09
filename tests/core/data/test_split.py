"""Splitting large images into patches (daik_core.data.split)."""

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon, box

from daik_core.cli import main
from daik_core.data.dota import DotaLabel, DotaObject, read_label_file, write_label_file
from daik_core.data.split import (
    clip_polygon,
    crop_patch,
    format_rate,
    parse_patch_name,
    patch_name,
    patch_windows,
    read_image,
    resize_image,
    scaled_size,
    split_dataset,
    split_image,
    split_label,
    split_sample,
    window_starts,
)
from daik_core.errors import DaikError, DataFormatError


def label_of(*objs: tuple[tuple[float, ...], int]) -> DotaLabel:
    return DotaLabel([DotaObject(tuple(map(float, p)), "ship", d) for p, d in objs], "GoogleEarth", 0.25)


def shoelace(poly: tuple[float, ...]) -> float:
    x, y = np.array(poly[0::2]), np.array(poly[1::2])
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2


# ---------------------------------------------------------------------------------------------- windows
def test_window_starts_hand_cases() -> None:
    assert window_starts(2500, 1024, 200) == [0, 824, 1476]
    assert window_starts(1024, 1024, 200) == [0]
    assert window_starts(500, 1024, 200) == [0]
    assert window_starts(1848, 1024, 200) == [0, 824]  # the second window ends exactly at the edge
    assert window_starts(1849, 1024, 200) == [0, 824, 825]
    assert window_starts(1111, 512, 128) == [0, 384, 599]
    assert window_starts(10, 4, 0) == [0, 4, 6]


def test_patch_windows_left_major() -> None:
    assert patch_windows(2500, 500, 1024, 200) == [(0, 0), (824, 0), (1476, 0)]
    assert patch_windows(1100, 1100, 1024, 200) == [(0, 0), (0, 76), (76, 0), (76, 76)]


@pytest.mark.parametrize(("size", "gap", "problem"), [(0, 0, "size"), (512, 512, "gap"), (512, -1, "gap")])
def test_bad_window_geometry(size: int, gap: int, problem: str) -> None:
    with pytest.raises(DaikError, match=problem):
        patch_windows(100, 100, size, gap)


@given(length=st.integers(1, 5000), size=st.integers(16, 1200), gap_frac=st.floats(0, 0.9, allow_nan=False))
@settings(max_examples=100, deadline=None)
def test_windows_cover_the_image(length: int, size: int, gap_frac: float) -> None:
    gap = int(size * gap_frac)
    starts = window_starts(length, size, gap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert starts[-1] + size >= length and starts[-1] == max(length - size, 0)
    assert all(b - a <= size - gap for a, b in itertools.pairwise(starts))


# ------------------------------------------------------------------------------------------------ names
@pytest.mark.parametrize("base", ["P0706", "a__b", "x_", "__", "P1__1__2___3", "img.v2 (1)"])
@pytest.mark.parametrize(("rate", "text"), [(0.5, "0.5"), (1.0, "1"), (1, "1"), (1.5, "1.5"), (2.0, "2")])
def test_patch_name_round_trip(base: str, rate: float, text: str) -> None:
    name = patch_name(base, rate, 824, 0)
    assert name == f"{base}__{text}__824___0"
    assert parse_patch_name(name) == (base, rate, 824, 0)


def test_parse_patch_name_reads_the_devkit_float_form_and_rejects_others() -> None:
    assert parse_patch_name("P0001__1.0__0___1024") == ("P0001", 1.0, 0, 1024)
    for bad in (
        "P0001",
        "P0001__1__0__0",
        "P0001__1__a___0",
        "P0001__-1__0___0",
        "__1__0___0",
        "P__0__0___0",
    ):
        with pytest.raises(ValueError, match="patch name"):
            parse_patch_name(bad)


def test_format_rate() -> None:
    assert [format_rate(r) for r in (1.0, 0.5, 1.5, 2, 0.1, 1e-5)] == [
        "1",
        "0.5",
        "1.5",
        "2",
        "0.1",
        "0.00001",
    ]
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(DaikError, match="scale rate"):
            format_rate(bad)


# ---------------------------------------------------------------------------------------------- clipping
def test_object_inside_is_kept_exactly() -> None:
    label = label_of(((110.5, 120, 130, 120, 130, 140, 110.5, 140), 1))
    out = split_label(label, 100, 100, 100)
    assert out.objects == [DotaObject((10.5, 20, 30, 20, 30, 40, 10.5, 40), "ship", 1)]
    assert (out.imagesource, out.gsd) == ("GoogleEarth", 0.25)


def test_object_cut_in_half_is_difficult() -> None:
    label = label_of(((90, 10, 110, 10, 110, 20, 90, 20), 0))
    (obj,) = split_label(label, 0, 0, 100).objects
    assert obj.poly == (90, 10, 100, 10, 100, 20, 90, 20) and obj.difficult == 2
    (obj,) = split_label(label, 50, 0, 100).objects  # the same object, whole in the next window
    assert obj.poly == (40, 10, 60, 10, 60, 20, 40, 20) and obj.difficult == 0


@pytest.mark.parametrize(
    ("x0", "kept", "difficult"), [(80, 0.8, 1), (93, 0.7, 2), (92, 0.8, 1), (99, 0.1, 2)]
)
def test_kept_fraction_threshold(x0: float, kept: float, difficult: int) -> None:
    width = 25 if x0 == 80 else 10
    poly = (x0, 0, x0 + width, 0, x0 + width, 10, x0, 10)
    (obj,) = split_label(label_of((poly, 1)), 0, 0, 100).objects
    assert shoelace(obj.poly) == pytest.approx(kept * shoelace(poly))
    assert obj.difficult == difficult
    (obj,) = split_label(label_of((poly, 1)), 0, 0, 100, thresh=0.05).objects
    assert obj.difficult == 1


def test_no_overlap_or_shared_edge_only() -> None:
    label = label_of(((150, 10, 160, 10, 160, 20, 150, 20), 0), ((100, 10, 110, 10, 110, 20, 100, 20), 0))
    assert split_label(label, 0, 0, 100).objects == []


def test_five_vertex_clip_merges_the_shortest_edge() -> None:
    poly = (80, 40, 106, 50, 90, 60, 70, 50)  # corner (106, 50) pokes out of x <= 100
    (obj,) = split_label(label_of((poly, 0)), 0, 0, 100).objects
    y_a = 40 + 10 * 20 / 26  # the clip's points on x = 100, 6.06 apart: the shortest edge
    y_b = 50 + 10 * 6 / 16
    np.testing.assert_allclose(obj.poly, (80, 40, 100, (y_a + y_b) / 2, 90, 60, 70, 50))
    assert obj.difficult == 0  # kept fraction 0.97


def test_triangle_clip_is_kept_exactly_as_a_quad() -> None:
    poly = (105, 40, 115, 50, 105, 60, 95, 50)  # a diamond whose left corner is inside
    (obj,) = split_label(label_of((poly, 0)), 0, 0, 100).objects
    assert obj.difficult == 2
    assert sorted(zip(obj.poly[0::2], obj.poly[1::2], strict=True)) == [
        (95, 50),
        (100, 45),
        (100, 50),
        (100, 55),
    ]
    assert shoelace(obj.poly) == pytest.approx(25)  # the triangle's area, same orientation as the object
    assert split_label(label_of((poly, 0)), 0, 0, 100, complex_clips="drop").objects == []


def test_six_vertex_clip_keeps_four_of_its_points() -> None:
    # a rotated box across the window's corner (taken from P0706 at 512/128): a hexagon is left
    poly = (95, 66, 103, 75, 75, 104, 66, 95)
    hexagon = clip_polygon(np.array(poly), (0, 0, 100, 100))
    np.testing.assert_allclose(
        hexagon, [(95, 66), (100, 71.625), (100, 78.107143), (78.862069, 100), (71, 100), (66, 95)], atol=1e-6
    )
    (obj,) = split_label(label_of((poly, 0)), 0, 0, 100).objects
    # the flattest corners go first: (100, 71.625) spans 16.2 px^2 with its neighbours, then (71, 100) 19.7
    np.testing.assert_allclose(obj.poly, [95, 66, 100, 78.107143, 78.862069, 100, 66, 95], atol=1e-6)
    out, part = Polygon(np.reshape(obj.poly, (4, 2))), Polygon(hexagon)
    assert part.contains(out) and out.area / part.area > 0.9
    assert obj.difficult == 0  # 0.95 of the object is kept
    assert split_label(label_of((poly, 0)), 0, 0, 100, complex_clips="drop").objects == []


def test_cut_object_keeps_orientation_and_start_corner() -> None:
    cw = (90, 10, 110, 10, 110, 20, 90, 20)  # clockwise on screen
    ccw = (90, 20, 110, 20, 110, 10, 90, 10)
    assert split_label(label_of((cw, 0)), 0, 0, 100).objects[0].poly == (90, 10, 100, 10, 100, 20, 90, 20)
    assert split_label(label_of((ccw, 0)), 0, 0, 100).objects[0].poly == (90, 20, 100, 20, 100, 10, 90, 10)
    # the first corner is cut off: the new first corner is the one nearest to it
    first_out = (110, 10, 110, 20, 90, 20, 90, 10)
    assert split_label(label_of((first_out, 0)), 0, 0, 100).objects[0].poly == (
        100,
        10,
        100,
        20,
        90,
        20,
        90,
        10,
    )


def test_image_edge_cuts_objects_in_the_padding() -> None:
    poly = (40, 10, 60, 10, 60, 20, 40, 20)
    assert split_label(label_of((poly, 0)), 0, 0, 100).objects[0].poly == poly
    (obj,) = split_label(label_of((poly, 0)), 0, 0, 100, image_size=(50, 80)).objects
    assert obj.poly == (40, 10, 50, 10, 50, 20, 40, 20) and obj.difficult == 2


def test_rate_scales_coordinates_and_gsd() -> None:
    label = label_of(((100, 100, 140, 100, 140, 120, 100, 120), 0))
    out = split_label(label, 10, 20, 100, rate=0.5)
    assert out.objects[0].poly == (40, 30, 60, 30, 60, 40, 40, 40)
    assert out.gsd == 0.5


def test_degenerate_objects_are_dropped() -> None:
    label = label_of(((10, 10, 20, 20, 30, 30, 40, 40), 0), ((5, 5, 5, 5, 5, 5, 5, 5), 0))
    assert split_label(label, 0, 0, 100).objects == []


def rotated_quads() -> st.SearchStrategy[np.ndarray]:
    def make(cx: float, cy: float, w: float, h: float, a: float) -> np.ndarray:
        c, s = np.cos(a), np.sin(a)
        local = np.array([(-w, -h), (w, -h), (w, h), (-w, h)]) / 2
        return local @ np.array([[c, s], [-s, c]]) + (cx, cy)

    coord, side = st.floats(-60, 160), st.floats(0.5, 120)
    return st.builds(make, coord, coord, side, side, st.floats(0, 3.2))


@given(quad=rotated_quads())
@settings(max_examples=150, deadline=None)
def test_clip_polygon_matches_shapely(quad: np.ndarray) -> None:
    rect = (0.0, 0.0, 100.0, 80.0)
    ours = clip_polygon(quad, rect)
    ref = Polygon(quad).intersection(box(*rect))
    assert abs(abs(shoelace(tuple(ours.reshape(-1)))) - ref.area) < 1e-6 * max(1.0, Polygon(quad).area)
    if len(ours):
        assert ours[:, 0].min() >= 0 and ours[:, 0].max() <= 100 and ours[:, 1].max() <= 80
        assert len(ours) == len(ref.exterior.coords) - 1 or not ref.area > 1e-6


@given(quad=rotated_quads())
@settings(max_examples=150, deadline=None)
def test_split_label_invariants(quad: np.ndarray) -> None:
    poly = tuple(quad.reshape(-1).tolist())
    out = split_label(label_of((poly, 0)), 20, 10, 64)
    kept = Polygon(quad).intersection(box(20, 10, 84, 74)).area / Polygon(quad).area
    if kept <= 1e-9:
        assert out.objects == []
        return
    (obj,) = out.objects
    q = np.array(obj.poly)
    assert q.min() >= 0 and q.max() <= 64
    assert obj.difficult == (2 if kept <= 0.7 else 0)
    inside = all(20 <= x <= 84 and 10 <= y <= 74 for x, y in quad)
    if inside:
        np.testing.assert_allclose(q, quad.reshape(-1) - np.tile([20, 10], 4), atol=1e-9)


# ------------------------------------------------------------------------------------------------ images
def test_crop_patch_pads_with_zeros() -> None:
    image = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    patch = crop_patch(image, 3, 2, 4)
    assert patch.shape == (4, 4, 3)
    np.testing.assert_array_equal(patch[:4, :2], image[2:6, 3:5])
    assert not patch[:, 2:].any()
    assert crop_patch(image, 3, 2, 4, pad=False).shape == (4, 2, 3)
    patch[0, 0] = 255
    assert image[2, 3, 0] != 255  # a copy


def test_split_image_and_sample() -> None:
    image = np.random.default_rng(0).integers(0, 255, (300, 700, 3), dtype=np.uint8)
    patches = list(split_image(image, size=256, gap=56))
    assert [(l, u) for l, u, _ in patches] == patch_windows(700, 300, 256, 56)
    for left, up, patch in patches:
        np.testing.assert_array_equal(patch, image[up : up + 256, left : left + 256])
    label = label_of(((10, 10, 30, 10, 30, 20, 10, 20), 1))
    samples = list(split_sample(image, label, size=256, gap=56, rate=0.5))
    assert [(p.left, p.up) for p in samples] == patch_windows(350, 150, 256, 56)
    assert samples[0].image.shape == (256, 256, 3) and samples[0].name("img") == "img__0.5__0___0"
    assert samples[0].label is not None and samples[0].label.objects[0].poly == (5, 5, 15, 5, 15, 10, 5, 10)
    assert all(p.label is None for p in split_sample(image, None, size=256, gap=56))


@pytest.mark.parametrize("rate", [0.5, 1.5, 1 / 3, 0.75])
@pytest.mark.parametrize(("w", "h"), [(1111, 1182), (557, 712), (5, 3)])
def test_scaled_size_matches_resize(w: int, h: int, rate: float) -> None:
    resized = resize_image(np.zeros((h, w, 3), np.uint8), rate)
    assert scaled_size(w, h, rate) == (resized.shape[1], resized.shape[0])


def test_resize_to_nothing_is_an_error() -> None:
    with pytest.raises(DaikError, match=r"a 3 x 1 image scaled by 0\.3 has no pixels left"):
        resize_image(np.zeros((1, 3, 3), np.uint8), 0.3)


# ------------------------------------------------------------------------------------------------ dataset
def make_dataset(root: Path, sizes: dict[str, tuple[int, int]], labels: dict[str, str]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    rng = np.random.default_rng(1)
    for name, (w, h) in sizes.items():
        cv2.imwrite(str(root / "images" / f"{name}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    for name, text in labels.items():
        (root / "labelTxt" / f"{name}.txt").write_text(text)
    return root


def imread(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def read_patch(dst: Path, name: str) -> tuple[np.ndarray, DotaLabel]:
    return imread(dst / "images" / f"{name}.png"), read_label_file(dst / "labelTxt" / f"{name}.txt")


@pytest.fixture(scope="module")
def example_split(tmp_path_factory: pytest.TempPathFactory, dota_example: Path) -> Path:
    dst = tmp_path_factory.mktemp("split") / "out"
    summary = split_dataset(dota_example, dst, size=512, gap=128, progress=False)
    assert summary.images == 2 and summary.patches == 9 + 4
    assert summary.source_objects == 538 - 2 + 66 - 2  # header lines
    assert "2 images into 13 patches" in summary.describe()
    return dst


@pytest.mark.parametrize("name", ["P0706", "P1888"])
def test_round_trip_on_dota_example(example_split: Path, dota_example: Path, name: str) -> None:
    dst = example_split
    image = imread(dota_example / "images" / f"{name}.png")
    height, width = image.shape[:2]
    source = read_label_file(dota_example / "labelTxt" / f"{name}.txt")
    windows = patch_windows(width, height, 512, 128)
    assert len(windows) > 1
    assert sorted(p.stem for p in (dst / "images").glob(f"{name}__*.png")) == sorted(
        patch_name(name, 1.0, l, u) for l, u in windows
    )
    found: dict[tuple[int, int], set[DotaObject]] = {}
    for left, up in windows:
        patch, label = read_patch(dst, patch_name(name, 1.0, left, up))
        assert patch.shape == (512, 512, 3)
        np.testing.assert_array_equal(patch, crop_patch(image, left, up, 512))  # pixel-exact
        assert (label.imagesource, label.gsd) == (source.imagesource, source.gsd)
        found[left, up] = {
            DotaObject(
                tuple(v + (left if i % 2 == 0 else up) for i, v in enumerate(o.poly)), o.name, o.difficult
            )
            for o in label.objects
        }
        for o in label.objects:
            assert min(o.poly) >= 0 and max(o.poly) <= 512
    whole = 0
    for obj in source.objects:
        shape = Polygon(np.reshape(obj.poly, (4, 2)))
        if shape.area == 0:
            continue
        covered = False
        xs, ys = obj.poly[0::2], obj.poly[1::2]
        for left, up in windows:
            x1, y1 = min(left + 512, width), min(up + 512, height)
            if max(xs) <= left or min(xs) >= x1 or max(ys) <= up or min(ys) >= y1:
                continue  # not even the bounding boxes overlap
            if min(xs) >= left and max(xs) <= x1 and min(ys) >= up and max(ys) <= y1:
                assert obj in found[left, up], f"{obj} lost in window {(left, up)}"
                whole += 1
                covered = True
            elif shape.intersection(box(left, up, x1, y1)).area > 0:
                # its cut part: same class, inside the object (all reductions to 4 points stay inside)
                near = [
                    o
                    for o in found[left, up]
                    if o.name == obj.name
                    and min(o.poly[0::2]) >= min(xs) - 1e-6
                    and max(o.poly[0::2]) <= max(xs) + 1e-6
                    and min(o.poly[1::2]) >= min(ys) - 1e-6
                    and max(o.poly[1::2]) <= max(ys) + 1e-6
                ]
                grown = shape.buffer(1e-4)
                assert any(grown.contains(Polygon(np.reshape(o.poly, (4, 2)))) for o in near), (
                    f"cut {obj} missing in window {(left, up)}"
                )
                covered = True
        assert covered, f"{obj} is in no patch"
    assert whole >= len(source.objects) * 0.8


def test_rates_and_process_pool(tmp_path: Path) -> None:
    text = "imagesource:x\ngsd:0.5\n10 10 50 10 50 30 10 30 plane 0\n280 10 330 10 330 40 280 40 ship 1\n"
    src = make_dataset(tmp_path / "src", {"a": (400, 300), "b__c": (150, 100)}, {"a": text, "b__c": text})
    one = split_dataset(src, tmp_path / "one", size=128, gap=28, rates=(0.5, 1.5), progress=False)
    two = split_dataset(src, tmp_path / "two", size=128, gap=28, rates=(0.5, 1.5), progress=False, workers=2)
    assert (
        one.patches
        == two.patches
        == sum(
            len(patch_windows(*scaled_size(w, h, r), 128, 28))
            for w, h in ((400, 300), (150, 100))
            for r in (0.5, 1.5)
        )
    )
    names = sorted(p.name for p in (tmp_path / "one" / "labelTxt").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two" / "labelTxt").iterdir())
    for n in names:
        assert (tmp_path / "one" / "labelTxt" / n).read_text() == (
            tmp_path / "two" / "labelTxt" / n
        ).read_text()
    image, label = read_patch(tmp_path / "one", "a__0.5__0___0")
    assert label.gsd == 1.0 and label.objects[0] == DotaObject((5, 5, 25, 5, 25, 15, 5, 15), "plane", 0)
    np.testing.assert_array_equal(
        image, crop_patch(resize_image(read_image(src / "images" / "a.png"), 0.5), 0, 0, 128)
    )
    assert parse_patch_name(sorted((tmp_path / "one" / "images").glob("b__c__1.5*"))[0].stem)[:2] == (
        "b__c",
        1.5,
    )


def test_empty_patches_missing_labels_and_images_only(tmp_path: Path) -> None:
    src = make_dataset(
        tmp_path / "src", {"a": (300, 100), "b": (50, 50)}, {"a": "10 10 50 10 50 30 10 30 plane\n"}
    )
    with pytest.raises(DataFormatError, match=r"labelTxt/b\.txt: no label file for image b\.png"):
        split_dataset(src, tmp_path / "x", size=128, gap=28, progress=False)
    s = split_dataset(src, tmp_path / "y", size=128, gap=28, progress=False, missing_labels="empty")
    assert (s.patches, s.empty_patches, s.missing_labels) == (3 + 1, 3, 1)
    assert read_label_file(tmp_path / "y" / "labelTxt" / "b__1__0___0.txt").objects == []
    s = split_dataset(
        src, tmp_path / "z", size=128, gap=28, progress=False, missing_labels="empty", keep_empty=False
    )
    assert sorted(p.stem for p in (tmp_path / "z" / "images").iterdir()) == ["a__1__0___0"]
    assert s.skipped_empty == 3 and "3 not written" in s.describe()
    s = split_dataset(src, tmp_path / "w", size=128, gap=28, progress=False, labels=False)
    assert s.patches == 4 and not (tmp_path / "w" / "labelTxt").exists()
    assert len(list((tmp_path / "w" / "images").iterdir())) == 4


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    src = make_dataset(tmp_path / "src", {"a": (60, 60)}, {"a": "", "b": ""})
    (src / "images" / "b.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match=r"images/b\.png: not a readable image"):
        split_dataset(src, tmp_path / "out", size=32, gap=8, progress=False)
    (src / "images" / "b.png").unlink()
    (src / "labelTxt" / "a.txt").write_text("1 2 3 4 5 6 7 8 plane\n1 2 3 plane\n")
    for workers in (1, 2):
        with pytest.raises(DataFormatError, match=r"labelTxt/a\.txt:2: expected 9 or 10 fields") as info:
            split_dataset(src, tmp_path / "out", size=32, gap=8, progress=False, workers=workers)
        assert info.value.line == 2
    with pytest.raises(DataFormatError, match="image folder does not exist"):
        split_dataset(tmp_path / "nothing", tmp_path / "out", progress=False)
    with pytest.raises(DaikError, match="repeated scale rates"):
        split_dataset(src, tmp_path / "out", rates=(1, 1.0), progress=False)
    with pytest.raises(DaikError, match="unknown class 'plane'"):
        split_dataset(src, tmp_path / "out", size=32, gap=8, classes=("ship",), progress=False)


def test_cli_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_dataset(
        tmp_path / "src", {"a": (700, 600)}, {"a": "imagesource:x\n10 10 50 10 50 30 10 30 plane\n"}
    )
    assert main(["split", str(src), str(tmp_path / "out"), "--size", "512", "--gap", "128", "-q"]) == 0
    out = capsys.readouterr()
    assert "1 images into 4 patches" in out.out and out.err == ""
    assert len(list((tmp_path / "out" / "labelTxt").iterdir())) == 4

    write_label_file(src / "labelTxt" / "a.txt", DotaLabel([DotaObject((1, 2, 3, 4, 5, 6, 7, 8), "plane")]))
    with (src / "labelTxt" / "a.txt").open("a") as f:
        f.write("1 2 3 4 5 6 7 8 plane 7\n")
    assert main(["split", str(src), str(tmp_path / "out2"), "--size", "512", "--gap", "128", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("daik: error: ") and f"{src / 'labelTxt' / 'a.txt'}:2: difficult flag 7" in err
