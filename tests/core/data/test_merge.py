"""Merging patch detections back to full images (daik_core.data.merge)."""

from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon

from daik_core.cli import main
from daik_core.data.dota import (
    Task1Detections,
    read_label_file,
    read_task1_file,
    write_task1_file,
)
from daik_core.data.merge import merge_detections, merge_task1_dir, patch_to_full
from daik_core.data.split import parse_patch_name, patch_name, patch_windows, scaled_size
from daik_core.errors import DaikError, DataFormatError


def rbox(cx: float, cy: float, w: float, h: float, a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    local = np.array([(-w, -h), (w, -h), (w, h), (-w, h)]) / 2
    return (local @ np.array([[c, s], [-s, c]]) + (cx, cy)).reshape(-1)


def simulate(
    base: str,
    polys: np.ndarray,
    scores: np.ndarray,
    width: int,
    height: int,
    rates: tuple[float, ...],
    size: int = 512,
    gap: int = 128,
    seed: int = 0,
) -> tuple[Task1Detections, np.ndarray]:
    """A detector that finds every object entirely inside a patch, in patch pixels, with a score a bit
    below the object's (by a different amount in every patch). Returns the detections and how many times
    each object was found (N,)."""
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    out_scores: list[float] = []
    out_polys: list[np.ndarray] = []
    found = np.zeros(len(polys), dtype=np.int64)
    for rate in rates:
        w, h = scaled_size(width, height, rate)
        scaled = polys * rate
        for left, up in patch_windows(w, h, size, gap):
            xs, ys = scaled[:, 0::2], scaled[:, 1::2]
            inside = (
                (xs.min(1) >= left)
                & (xs.max(1) <= left + size)
                & (ys.min(1) >= up)
                & (ys.max(1) <= up + size)
            )
            found += inside
            for i in np.flatnonzero(inside):
                ids.append(patch_name(base, rate, left, up))
                out_scores.append(scores[i] - rng.uniform(0, 0.01))
                out_polys.append(scaled[i] - np.tile([left, up], 4))
    dets = Task1Detections(ids, np.array(out_scores), np.array(out_polys).reshape(-1, 8))
    return dets, found


def sorted_rows(ids: list[str], polys: np.ndarray) -> list[tuple[str, tuple[float, ...]]]:
    return sorted((i, tuple(np.round(p, 6).tolist())) for i, p in zip(ids, polys, strict=True))


# ------------------------------------------------------------------------------------------- coordinates
@pytest.mark.parametrize("base", ["P0706", "a__b", "x_", "P1__0.5__2___3"])
@pytest.mark.parametrize("rate", [0.5, 1.0, 1.5])
def test_parse_patch_name_inverts_the_naming(base: str, rate: float) -> None:
    assert parse_patch_name(patch_name(base, rate, 1476, 824)) == (base, rate, 1476, 824)


def test_patch_to_full_hand_case() -> None:
    polys = np.array([[10, 10, 20, 10, 20, 30, 10, 30], [0, 0, 1, 0, 1, 1, 0, 1]], dtype=np.float64)
    full = patch_to_full(polys, np.array([0.5, 1.0]), np.array([100, 824]), np.array([50, 0]))
    np.testing.assert_array_equal(full[0], [220, 120, 240, 120, 240, 160, 220, 160])
    np.testing.assert_array_equal(full[1], [824, 0, 825, 0, 825, 1, 824, 1])


# ------------------------------------------------------------------------------------------------- merge
def test_merge_restores_one_detection_per_object() -> None:
    # a grid of rotated boxes over a 1500 x 1100 image; no two of them overlap
    polys = np.array(
        [rbox(60 + 130 * i, 60 + 120 * j, 70, 25, 0.3 * (i + j)) for i in range(11) for j in range(9)]
    )
    scores = np.linspace(0.3, 0.99, len(polys))
    dets, found = simulate("P0001", polys, scores, 1500, 1100, rates=(1.0, 0.5))
    assert (found >= 2).all() and (found >= 3).sum() > len(polys) / 2  # at both rates, often several times
    merged = merge_detections(dets)
    assert len(merged) == len(polys) and set(merged.image_ids) == {"P0001"}
    assert sorted_rows(merged.image_ids, merged.polys) == sorted_rows(["P0001"] * len(polys), polys)
    # the kept duplicate is the best one of each object
    best = {tuple(np.round(p, 6)): -1.0 for p in polys}
    for name, s, p in zip(dets.image_ids, dets.scores, dets.polys, strict=True):
        _, rate, left, up = parse_patch_name(name)
        key = tuple(np.round((p + np.tile([left, up], 4)) / rate, 6))
        best[key] = max(best[key], s)
    for s, p in zip(merged.scores, merged.polys, strict=True):
        assert s == best[tuple(np.round(p, 6))]
    assert (np.diff(merged.scores) <= 0).all()  # one image: descending scores


def test_merge_on_dota_example_objects(dota_example: Path) -> None:
    label = read_label_file(dota_example / "labelTxt" / "P0706.txt")
    # one Task1 file holds one class: the ships, minus any that overlaps another one by IoU > 0.1 (which
    # NMS could rightly remove; there is none in this image)
    polys = np.array([o.poly for o in label.objects if o.name == "ship"], dtype=np.float64)
    shapes = [Polygon(p.reshape(4, 2)) for p in polys]
    lo = np.stack((polys[:, 0::2].min(1), polys[:, 1::2].min(1)), 1)
    hi = np.stack((polys[:, 0::2].max(1), polys[:, 1::2].max(1)), 1)
    touch = np.triu(((lo[:, None] < hi[None]) & (lo[None] < hi[:, None])).all(-1), k=1)
    crowded = np.zeros(len(polys), dtype=bool)
    for i, j in zip(*np.nonzero(touch), strict=True):
        inter = shapes[i].intersection(shapes[j]).area
        if inter / (shapes[i].area + shapes[j].area - inter) > 0.1:
            crowded[[i, j]] = True
    polys = polys[~crowded]
    assert len(polys) > 500
    scores = np.random.default_rng(3).uniform(0.2, 1.0, len(polys))
    dets, found = simulate("P0706", polys, scores, 1111, 1182, rates=(1.0,))
    assert (found >= 2).sum() > 50 and (found == 0).sum() <= 5  # a few are cut by every patch
    merged = merge_detections(dets)
    expected = sorted_rows(["P0706"] * int((found > 0).sum()), polys[found > 0])
    assert sorted_rows(merged.image_ids, merged.polys) == expected


def test_images_never_suppress_each_other_and_duplicates_do() -> None:
    p = rbox(300, 300, 80, 30, 0.4)
    q = p + 2.0  # a shifted duplicate: IoU far above 0.1
    dets = Task1Detections(
        ["b__1__0___0", "a__1__0___0", "a__1__100___0", "a__0.5__0___0", "c__1__0___0"],
        np.array([0.5, 0.9, 0.8, 0.95, 0.1]),
        np.stack([p, p, q - np.tile([100, 0], 4), p / 2, p + 1000]),
    )
    merged = merge_detections(dets)
    assert merged.image_ids == ["a", "b", "c"]  # by image name, then by descending score
    np.testing.assert_allclose(merged.scores, [0.95, 0.5, 0.1])
    np.testing.assert_allclose(merged.polys, np.stack([p, p, p + 1000]))
    # IoU <= thr survives: two boxes overlapping by IoU 1/3 are both kept at thr 0.5, one at 0.1
    sq = np.array([[0, 0, 10, 0, 10, 10, 0, 10], [5, 0, 15, 0, 15, 10, 5, 10]], dtype=np.float64)
    two = Task1Detections(["a__1__0___0"] * 2, np.array([0.9, 0.8]), sq)
    assert len(merge_detections(two, iou_thr=0.5)) == 2
    assert len(merge_detections(two, iou_thr=1 / 3 + 1e-9)) == 2
    assert len(merge_detections(two, iou_thr=0.1)) == 1


def test_merge_errors_and_empty() -> None:
    assert len(merge_detections(Task1Detections.empty())) == 0
    bad = Task1Detections(["P0706"], np.array([0.5]), np.zeros((1, 8)))
    with pytest.raises(DataFormatError, match=r"Task1_ship\.txt: 'P0706' is not a patch name"):
        merge_detections(bad, source="Task1_ship.txt")
    with pytest.raises(DaikError, match="iou_thr"):
        merge_detections(bad, iou_thr=1.5)


# -------------------------------------------------------------------------------------------------- dirs
def test_merge_task1_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tmp_path / "patches", tmp_path / "merged"
    polys = np.array([rbox(100 + 150 * i, 200, 60, 20, 0.2 * i) for i in range(6)])
    dets, found = simulate("P0001", polys, np.linspace(0.5, 0.9, 6), 1000, 600, rates=(1.0,))
    assert (found > 0).all() and len(dets) > 6
    write_task1_file(src / "Task1_plane.txt", dets.image_ids, dets.scores, dets.polys)
    write_task1_file(src / "Task1_ship.txt", ["P0002__1__0___0"], np.array([0.7]), polys[:1])
    write_task1_file(src / "Task1_harbor.txt", [], np.zeros(0), np.zeros((0, 8)))
    (src / "notes.txt").write_text("not a detection file\n")
    summary = merge_task1_dir(src, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["Task1_harbor.txt", "Task1_plane.txt", "Task1_ship.txt"]
    assert (summary.files, summary.images, summary.detections_in, summary.detections_out) == (
        3,
        2,
        len(dets) + 1,
        7,
    )
    assert "3 Task1 files" in summary.describe()
    plane = read_task1_file(dst / "Task1_plane.txt")
    assert set(plane.image_ids) == {"P0001"}
    np.testing.assert_allclose(sorted(map(tuple, plane.polys)), sorted(map(tuple, polys)), atol=0.006)

    assert main(["merge", str(src), str(tmp_path / "cli")]) == 0
    assert "7 detections on 2 images" in capsys.readouterr().out
    (src / "Task1_ship.txt").write_text("P0002 0.5 1 2 3 4 5 6 7 8\n")
    assert main(["merge", str(src), str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Task1_ship.txt: 'P0002' is not a patch name" in err


def test_merge_task1_dir_needs_files(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="detection folder does not exist"):
        merge_task1_dir(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(DataFormatError, match=r"no Task1_<class>\.txt"):
        merge_task1_dir(tmp_path, tmp_path / "out")
