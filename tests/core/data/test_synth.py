"""The synthetic aerial dataset generator (``daik synth``)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from daik_core.cli import main
from daik_core.data.classes import DOTA_V1_0
from daik_core.data.dota import read_label_file
from daik_core.data.synth import (
    MAX_OVERLAP,
    SYNTH_CLASSES,
    TINY_SIDE,
    generate_dataset,
    image_name,
    render_image,
)
from daik_core.data.synth import scene as synth_scene
from daik_core.data.synth import sprites as synth_sprites
from daik_core.data.synth.levels import LEVELS
from daik_core.errors import DaikError
from daik_core.structures import obb_to_poly, poly_to_obb


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sides(poly: tuple[float, ...]) -> tuple[float, float]:
    p = np.asarray(poly, dtype=np.float64).reshape(4, 2)
    a, b = float(np.linalg.norm(p[1] - p[0])), float(np.linalg.norm(p[2] - p[1]))
    return max(a, b), min(a, b)


@pytest.fixture(scope="module")
def medium_set() -> list[tuple[np.ndarray, list]]:
    """20 medium images of 256 px: (image, label objects)."""
    out = []
    for i in range(20):
        image, label = render_image(7, i, size=256, difficulty="medium")
        out.append((image, label.objects))
    return out


# ------------------------------------------------------------------------------------------ classes
def test_classes_are_a_dota_v1_subset_in_dota_order() -> None:
    assert set(SYNTH_CLASSES) <= set(DOTA_V1_0)
    assert list(SYNTH_CLASSES) == [c for c in DOTA_V1_0 if c in SYNTH_CLASSES]
    for needed in (
        "small-vehicle",
        "large-vehicle",
        "ship",
        "plane",
        "storage-tank",
        "tennis-court",
        "basketball-court",
    ):
        assert needed in SYNTH_CLASSES


def test_every_class_appears_over_twenty_images(medium_set: list) -> None:
    seen = {o.name for _, objs in medium_set for o in objs}
    assert seen == set(SYNTH_CLASSES)


# ------------------------------------------------------------------------------------------ files, seeds
def test_writes_images_labels_and_classes(tmp_path: Path) -> None:
    summary = generate_dataset(tmp_path / "ds", images=3, size=128, seed=1, progress=False)
    names = [image_name(i) for i in range(3)]
    assert names[0] == "synth_000000"
    assert sorted(p.stem for p in (tmp_path / "ds/images").glob("*.png")) == names
    assert sorted(p.stem for p in (tmp_path / "ds/labelTxt").glob("*.txt")) == names
    assert (tmp_path / "ds/classes.txt").read_text().split() == list(SYNTH_CLASSES)
    n = 0
    for name in names:
        label = read_label_file(tmp_path / "ds/labelTxt" / f"{name}.txt", classes=SYNTH_CLASSES)
        assert label.imagesource == "daik-synth" and label.gsd is not None and label.gsd > 0
        n += len(label.objects)
    assert summary.objects == n and summary.images == 3
    assert sum(summary.per_class.values()) == n
    assert "3 synthetic images" in summary.describe()


def test_same_seed_same_bytes_whatever_the_image_count(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", images=3, size=128, seed=11, difficulty="hard", progress=False)
    generate_dataset(tmp_path / "b", images=5, size=128, seed=11, difficulty="hard", progress=False)
    generate_dataset(tmp_path / "c", images=3, size=128, seed=12, difficulty="hard", progress=False)
    for i in range(3):
        name = image_name(i)
        for sub, ext in (("images", "png"), ("labelTxt", "txt")):
            a = tmp_path / "a" / sub / f"{name}.{ext}"
            assert _digest(a) == _digest(tmp_path / "b" / sub / f"{name}.{ext}")
            assert _digest(a) != _digest(tmp_path / "c" / sub / f"{name}.{ext}")


def test_parallel_workers_give_the_same_files(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "one", images=4, size=96, seed=3, progress=False, workers=1)
    generate_dataset(tmp_path / "two", images=4, size=96, seed=3, progress=False, workers=2)
    for p in sorted((tmp_path / "one").rglob("*.*")):
        assert _digest(p) == _digest(tmp_path / "two" / p.relative_to(tmp_path / "one"))


def test_render_image_matches_the_written_label(tmp_path: Path) -> None:
    generate_dataset(tmp_path, images=2, size=128, seed=4, difficulty="easy", progress=False)
    image, label = render_image(4, 1, size=128, difficulty="easy")
    written = read_label_file(tmp_path / "labelTxt" / f"{image_name(1)}.txt")
    assert written.objects == label.objects
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8


# ------------------------------------------------------------------------------------------ labels
def test_polys_are_rectangles_in_the_box_convention_inside_the_image(medium_set: list) -> None:
    polys = [o.poly for _, objs in medium_set for o in objs]
    assert len(polys) > 50
    p = torch.tensor(polys, dtype=torch.float64)
    assert float(p.min()) >= 0.0 and float(p.max()) <= 256.0
    obb = poly_to_obb(p)
    assert bool((obb[:, 2] >= obb[:, 3]).all())
    assert bool(((obb[:, 4] >= 0) & (obb[:, 4] < math.pi)).all())
    # the corners are exactly obb_to_poly of their box (same order), up to the 2-decimal rounding; a
    # square's long side is a matter of rounding, so only its corner set is compared
    square = (obb[:, 2] - obb[:, 3]) < 0.05
    assert bool((~square).any())
    torch.testing.assert_close(obb_to_poly(obb[~square]), p[~square], atol=0.03, rtol=0)
    for q, r in zip(obb_to_poly(obb[square]), p[square], strict=True):
        a = sorted(map(tuple, q.reshape(4, 2).round(decimals=1).tolist()))
        b = sorted(map(tuple, r.reshape(4, 2).round(decimals=1).tolist()))
        assert a == b


def test_round_tanks_have_axis_aligned_square_boxes(medium_set: list) -> None:
    tanks = [o.poly for _, objs in medium_set for o in objs if o.name == "storage-tank"]
    assert tanks
    for poly in tanks:
        _, y1, x2, y2, x3, *_ = poly
        assert y1 == pytest.approx(y2, abs=0.02) and x2 == pytest.approx(x3, abs=0.02)
        assert _sides(poly)[0] == pytest.approx(_sides(poly)[1], abs=0.02)


def test_objects_do_not_overlap_beyond_the_allowed_amount() -> None:
    for difficulty in ("medium", "hard"):
        for i in range(3):
            _, label = render_image(2, i, size=384, difficulty=difficulty)
            shapes = [Polygon(np.asarray(o.poly).reshape(4, 2)) for o in label.objects]
            assert len(shapes) > 10
            for a in range(len(shapes)):
                for b in range(a + 1, len(shapes)):
                    inter = shapes[a].intersection(shapes[b]).area
                    assert inter <= MAX_OVERLAP * min(shapes[a].area, shapes[b].area) + 0.05


def test_difficult_marks_exactly_the_tiny_objects(medium_set: list) -> None:
    flags = {0: 0, 1: 0}
    for _, objs in medium_set:
        for o in objs:
            short_side = _sides(o.poly)[1]
            if abs(short_side - TINY_SIDE) > 0.02:  # (the polygon is rounded to 0.01 px)
                assert o.difficult == int(short_side < TINY_SIDE)
                flags[o.difficult] += 1
    assert flags[0] > 0 and flags[1] > 0


def test_vehicle_and_ship_shapes_have_their_aspect_ratios(medium_set: list) -> None:
    ratios: dict[str, list[float]] = {}
    for _, objs in medium_set:
        for o in objs:
            long_side, short_side = _sides(o.poly)
            ratios.setdefault(o.name, []).append(long_side / short_side)
    assert 1.6 < np.median(ratios["small-vehicle"]) < 2.5
    assert 2.8 < np.median(ratios["large-vehicle"]) < 4.6
    assert 3.8 < np.median(ratios["ship"]) < 7.2
    assert np.median(ratios["storage-tank"]) < 1.01


def test_tennis_and_basketball_courts_differ_in_aspect_ratio() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = synth_sprites.tennis_court(rng, 70.0, 70.0 / rng.uniform(2.08, 2.26))
        b = synth_sprites.basketball_court(rng, 60.0, 60.0 / rng.uniform(1.78, 1.95))
        assert t.half_l / t.half_w > 2.05 > 1.96 > b.half_l / b.half_w


# ------------------------------------------------------------------------------------------ difficulty
def test_hard_has_more_and_smaller_objects_than_easy() -> None:
    stats = {}
    for difficulty in ("easy", "hard"):
        short, count = [], 0
        for i in range(4):
            _, label = render_image(5, i, size=256, difficulty=difficulty)
            count += len(label.objects)
            short += [_sides(o.poly)[1] for o in label.objects if o.name == "small-vehicle"]
        stats[difficulty] = (
            count,
            float(np.median(short)) if short else math.inf,
            np.mean(np.array(short) < 8),
        )
    assert stats["hard"][0] > 2 * stats["easy"][0]
    assert stats["hard"][1] < stats["easy"][1]
    assert stats["hard"][2] > stats["easy"][2]


def test_hard_images_have_less_contrast_and_more_noise_than_easy() -> None:
    def noise_and_contrast(difficulty: str) -> tuple[float, float]:
        noise, contrast = [], []
        for i in range(3):
            image, _ = render_image(9, i, size=192, difficulty=difficulty)
            g = image.astype(np.float64).mean(2)
            noise.append(float(np.median(np.abs(np.diff(g, axis=1)))))
            contrast.append(float(g.std()))
        return float(np.mean(noise)), float(np.mean(contrast))

    easy, hard = noise_and_contrast("easy"), noise_and_contrast("hard")
    assert hard[0] > easy[0]
    assert hard[1] < easy[1]


# ------------------------------------------------------------------------------------------ heading
def _front_back(sprite: synth_sprites.Sprite, heading: float, ground: int = 120) -> float:
    """Mean grey of the front half minus the back half of a sprite drawn alone."""
    n = int(2 * max(sprite.half_l, sprite.half_w) + 16)
    img = np.full((n, n, 3), ground, dtype=np.uint8)
    c = n / 2
    synth_sprites.draw_sprite(img, sprite, c, c, heading)
    g = img.astype(np.float64).mean(2)
    ys, xs = np.mgrid[0:n, 0:n] + 0.5
    u = (xs - c) * math.cos(heading) + (ys - c) * math.sin(heading)
    v = -(xs - c) * math.sin(heading) + (ys - c) * math.cos(heading)
    inside = (np.abs(u) < sprite.half_l - 0.5) & (np.abs(v) < sprite.half_w - 0.5)
    return float(g[inside & (u > 0.5)].mean() - g[inside & (u < -0.5)].mean())


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: synth_sprites.small_vehicle(rng, 18.0, 8.5),
        lambda rng: synth_sprites.large_vehicle(rng, 42.0, 11.0),
        lambda rng: synth_sprites.ship(rng, 80.0, 14.0),
        lambda rng: synth_sprites.ship(rng, 30.0, 7.0, small=True),
    ],
    ids=["small-vehicle", "large-vehicle", "ship", "boat"],
)
def test_heading_marker_makes_front_and_back_differ(make) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    diffs = [abs(_front_back(make(rng), rng.uniform(0, 2 * math.pi))) for _ in range(40)]
    assert np.mean(np.array(diffs) > 8.0) >= 0.85
    assert np.median(diffs) > 12.0


def test_heading_is_visible_in_rendered_scenes() -> None:
    """In whole easy scenes, the two halves of a vehicle or ship along its long axis differ; a symmetric
    object (a storage tank, whose halves are split the same way) much less so."""
    asym: list[float] = []
    for i in range(3):
        sc = synth_scene.plan(np.random.default_rng([21, i]), 256, LEVELS["easy"])
        g = synth_scene.render(sc).astype(np.float64).mean(2)
        ys, xs = np.mgrid[0:256, 0:256] + 0.5
        for o in sc.objects:
            if o.name not in ("small-vehicle", "large-vehicle", "ship") or o.sprite.half_w < 3:
                continue
            u = (xs - o.cx) * math.cos(o.heading) + (ys - o.cy) * math.sin(o.heading)
            v = -(xs - o.cx) * math.sin(o.heading) + (ys - o.cy) * math.cos(o.heading)
            inside = (np.abs(u) < o.sprite.half_l - 0.5) & (np.abs(v) < o.sprite.half_w - 0.5)
            asym.append(abs(g[inside & (u > 0.5)].mean() - g[inside & (u < -0.5)].mean()))
    assert len(asym) >= 10
    assert np.median(asym) > 10.0


# ------------------------------------------------------------------------------------------ geometry helper
def test_convex_intersection_area_against_shapely() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = (
            synth_sprites.rect_corners(*rng.uniform([0, 0, 1, 1, 0], [20, 20, 10, 10, 6.3]).tolist())
            for _ in "ab"
        )
        ref = Polygon(a).intersection(Polygon(b)).area
        assert synth_sprites.convex_intersection_area(a, b) == pytest.approx(ref, abs=1e-9)
    square = synth_sprites.rect_corners(0, 0, 1, 1, 0)
    shift = np.array([1.0, 0.0])
    assert synth_sprites.convex_intersection_area(square, square + shift) == pytest.approx(2.0)
    assert synth_sprites.convex_intersection_area(square, square + 2 * shift) == pytest.approx(0.0)


def test_label_obb_follows_the_long_side_rule() -> None:
    assert synth_sprites.label_obb(5, 5, 10, 4, 0.0) == (5, 5, 20, 8, 0.0)
    _, _, w, h, a = synth_sprites.label_obb(5, 5, 4, 10, 0.0)  # wider than long: a plane's wings
    assert (w, h) == (20, 8) and a == pytest.approx(math.pi / 2)
    assert synth_sprites.label_obb(0, 0, 10, 4, 3 * math.pi / 2)[4] == pytest.approx(math.pi / 2)
    assert synth_sprites.label_obb(0, 0, 10, 4, math.pi)[4] == pytest.approx(0.0)


# ------------------------------------------------------------------------------------------ errors, CLI
@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"images": 0}, "images"),
        ({"size": 32}, "size"),
        ({"seed": -1}, "seed"),
        ({"difficulty": "extreme"}, "difficulty"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments_raise_daik_error_naming_them(tmp_path: Path, kwargs: dict, word: str) -> None:
    args: dict = {"images": 1, "size": 64, "seed": 0, "difficulty": "easy", "progress": False, **kwargs}
    with pytest.raises(DaikError, match=word):
        generate_dataset(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


def test_out_must_be_a_folder(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DaikError, match="out"):
        generate_dataset(f, images=1, size=64, seed=0, progress=False)


def test_cli_synth_writes_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["synth", str(out), "--images", "2", "--size", "128", "-q"]) == 0
    assert len(list((out / "images").glob("*.png"))) == 2
    assert len(list((out / "labelTxt").glob("*.txt"))) == 2
    assert "2 synthetic images" in capsys.readouterr().out


def test_cli_synth_bad_size_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path / "o"), "--images", "1", "--size", "10", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("daik: error: size") and "\n" not in err
