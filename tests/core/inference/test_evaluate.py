"""Validation inference maps boxes back to the source images and merges tiles: an oracle that "detects"
every item's ground truth in the input frame must score mAP50 = 1 on the source annotations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import daik_core.inference.evaluate as evaluate_mod
from daik_core.config import SplitSpec
from daik_core.data.dataset import DotaDataset
from daik_core.data.synth import SYNTH_CLASSES
from daik_core.inference.evaluate import PredictSettings, evaluate_model, predict_dataset
from daik_core.models.detector import Detections
from daik_core.structures.boxes import obb_to_poly


class _Null(nn.Module):
    def forward(self, images: Tensor) -> Tensor:
        return images


def _oracle(monkeypatch: pytest.MonkeyPatch, dataset: DotaDataset) -> None:
    """Replace postprocess: item k (in loader order, no shuffle) "detects" its own input-frame boxes,
    scored by their area (a tile's cut part scores below the whole object of another tile)."""
    items: Iterator[int] = iter(range(len(dataset)))

    def fake(outputs: Any, **_: Any) -> list[Detections]:
        dets = []
        for _image in outputs:
            sample = dataset[next(items)]
            boxes = torch.from_numpy(sample.boxes).float()
            scores = (boxes[:, 2] * boxes[:, 3]) / 1e4
            dets.append(Detections(boxes, scores, torch.from_numpy(sample.labels)))
        return dets

    monkeypatch.setattr(evaluate_mod, "postprocess", fake)


def test_oracle_untiled_maps_back_exactly(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 160 px images letterboxed to 96: scale 0.6, so the boxes must be mapped back
    dataset = DotaDataset(data_root / "val", SYNTH_CLASSES, 96, train=False)
    _oracle(monkeypatch, dataset)
    per_image = predict_dataset(_Null(), dataset, PredictSettings(batch_size=2))
    for i, rec in enumerate(dataset.images):
        boxes, _, labels = per_image[rec.image_id]
        objs = dataset.source_objects(i)
        assert len(boxes) == len(objs)
        assert sorted(labels.tolist()) == sorted(objs.labels.tolist())
        got = obb_to_poly(boxes).reshape(-1, 4, 2).numpy()
        # same rectangles (corner order may start elsewhere; labels have 2 decimals): sorted corners
        for g, w in zip(sorted(got.tolist()), sorted(objs.polys.tolist()), strict=True):
            assert np.allclose(sorted(map(tuple, g)), sorted(map(tuple, w)), atol=0.05)
    _oracle(monkeypatch, dataset)
    out = evaluate_model(_Null(), dataset, PredictSettings(batch_size=2))
    assert out.result.map == pytest.approx(1.0)


def test_oracle_tiled_is_merged_on_source_images(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    split = SplitSpec(size=96, gap=32)
    dataset = DotaDataset(data_root / "val", SYNTH_CLASSES, 64, split=split, train=False)
    assert len(dataset) > dataset.num_images  # really tiled
    _oracle(monkeypatch, dataset)
    out = evaluate_model(_Null(), dataset, PredictSettings(batch_size=3))
    assert out.result.map == pytest.approx(1.0)
    num_gt = sum(len(dataset.source_objects(i)) for i in range(dataset.num_images))
    num_det = sum(len(d) for d in out.detections.values())
    assert num_det == num_gt  # the tiles' duplicates were merged away
    assert {i for d in out.detections.values() for i in d.image_ids} <= {r.image_id for r in dataset.images}
