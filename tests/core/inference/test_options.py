"""InferenceOptions: one place that checks the options of inference and resolves them against a checkpoint."""

from __future__ import annotations

import re
from typing import Any

import pytest

from daik_core.engine.checkpoint import CheckpointMeta
from daik_core.errors import DaikError
from daik_core.inference.options import PREDICT_CONF, PREDICT_MAX_DET, InferenceOptions, InferenceSettings


def _meta(spec: dict[str, Any]) -> CheckpointMeta:
    return CheckpointMeta(
        preset="n", num_classes=2, classes=("a", "b"), reg_max=16, imgsz=64, epoch=1, step=1, spec=spec
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"imgsz": 48}, "--imgsz must be a positive multiple of 32"),
        ({"conf": 1.0}, "--conf must be in [0, 1)"),
        ({"iou": 1.5}, "--iou must be in [0, 1]"),
        ({"merge_iou": -0.1}, "--merge-iou must be in [0, 1]"),
        ({"max_det": 0}, "--max-det must be >= 1"),
        ({"batch": 0}, "--batch must be >= 1"),
        ({"split_size": -1}, "--split-size must be >= 0"),
    ],
)
def test_bad_options_are_named_when_made(options: dict[str, Any], message: str) -> None:
    with pytest.raises(DaikError, match=re.escape(message)):
        InferenceOptions(**options)


def test_unset_options_take_the_checkpoint_s_defaults_for_images() -> None:
    meta = _meta({"dataset": {"split": {"size": 96, "gap": 32}}, "hparams": {"nms_iou": 0.6}})
    assert InferenceOptions().for_images(meta) == InferenceSettings(
        imgsz=64,
        conf=PREDICT_CONF,
        iou=0.6,
        max_det=PREDICT_MAX_DET,
        split_size=96,
        gap=32,
        merge_iou=0.1,
        batch=8,
    )
    given = InferenceOptions(imgsz=128, conf=0.5, iou=0.3, max_det=10, split_size=0, batch=2)
    assert given.for_images(meta) == InferenceSettings(128, 0.5, 0.3, 10, 0, 32, 0.1, 2)


def test_a_gap_as_large_as_the_window_is_an_error() -> None:
    with pytest.raises(DaikError, match="--gap must be in"):
        InferenceOptions(split_size=64, gap=64).for_images(_meta({}))
    assert InferenceOptions(split_size=0).for_images(_meta({})).split_size == 0  # no tiling
