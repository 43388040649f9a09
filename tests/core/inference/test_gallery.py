"""``gallery.json``: the first validation images with their predicted polygons above the score threshold,
paths relative to the dataset folder (hand-made detections; no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from daik_core.data.dataset import ImageRecord
from daik_core.data.dota import Task1Detections
from daik_core.inference.gallery import build_gallery, write_gallery


def _record(folder: Path, stem: str) -> ImageRecord:
    return ImageRecord(stem, folder / "images" / f"{stem}.png", folder / "labelTxt" / f"{stem}.txt", 64, 48)


def _dets(ids: list[str], scores: list[float]) -> Task1Detections:
    polys = np.array([[1, 2, 11, 2, 11, 7, 1, 7]] * len(ids), dtype=np.float64).reshape(-1, 8)
    return Task1Detections(ids, np.array(scores, dtype=np.float64), polys)


def test_first_images_boxes_above_threshold_sorted_by_score(tmp_path: Path) -> None:
    images = [_record(tmp_path, f"p{i}") for i in range(3)]
    detections = {
        "plane": _dets(["p0", "p0", "p2"], [0.3, 0.9, 0.8]),
        "ship": _dets(["p0", "p1"], [0.1, float("nan")]),  # below the threshold, not finite: left out
    }
    gallery = build_gallery(images, tmp_path, detections, limit=2, score_threshold=0.25)
    assert gallery["classes"] == ["plane", "ship"] and gallery["score_threshold"] == 0.25
    assert [g["image"] for g in gallery["images"]] == ["images/p0.png", "images/p1.png"]  # p2: past limit
    first = gallery["images"][0]
    assert (first["width"], first["height"]) == (64, 48)
    assert [(b["class"], b["score"]) for b in first["boxes"]] == [("plane", 0.9), ("plane", 0.3)]
    assert first["boxes"][0]["poly"] == [1, 2, 11, 2, 11, 7, 1, 7]
    assert gallery["images"][1]["boxes"] == []


def test_max_boxes_and_an_image_outside_the_folder(tmp_path: Path) -> None:
    outside = ImageRecord("q", tmp_path / "elsewhere" / "q.png", tmp_path / "q.txt", 8, 8)
    detections = {"plane": _dets(["q"] * 5, [0.5, 0.6, 0.7, 0.8, 0.9])}
    gallery = build_gallery([outside], tmp_path / "dataset", detections, max_boxes=2)
    assert gallery["images"][0]["image"] == "q.png"  # never an absolute path
    assert [b["score"] for b in gallery["images"][0]["boxes"]] == [0.9, 0.8]


def test_write_gallery_is_json_in_the_output_folder(tmp_path: Path) -> None:
    gallery = build_gallery([_record(tmp_path, "p0")], tmp_path, {"plane": _dets(["p0"], [0.5])})
    path = write_gallery(tmp_path, gallery)
    assert path == tmp_path / "gallery.json"
    assert json.loads(path.read_text()) == gallery
