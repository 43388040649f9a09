"""Inference post-processing: decode, multi-label threshold, class-aware rotated NMS, max_det."""

from __future__ import annotations

import math

import pytest
import torch

from daik_core.models import Detections, DetectorOutput, decode_boxes, postprocess
from daik_core.presets import build_detector
from daik_core.structures.boxes import ANGLE_BINS


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _hand_output() -> DetectorOutput:
    """3 anchors (stride 8), 2 classes. Anchors 0 and 1 predict almost the same box; anchor 2 a box far
    away. Every box: (l, t, r, b) = (2, 1, 2, 1) strides -> 32 x 16 px, angle bin 10."""
    points = torch.tensor([[100.0, 100.0], [102.0, 100.0], [300.0, 300.0]])
    strides = torch.full((3,), 8.0)
    box = torch.full((1, 3, 4, 17), -math.inf)
    box[..., [0, 2], 2] = 0.0
    box[..., [1, 3], 1] = 0.0
    angle = torch.zeros(1, 3, ANGLE_BINS)
    angle[..., 10] = 1.0
    cls = torch.tensor([[[_logit(0.1), _logit(0.9)], [_logit(0.2), _logit(0.8)], [_logit(0.7), _logit(0.6)]]])
    return DetectorOutput(cls, box, angle, points, strides, [])


def test_postprocess_hand_case() -> None:
    out = _hand_output()
    (dets,) = postprocess(out, conf_thr=0.5, iou_thr=0.5)
    assert isinstance(dets, Detections)
    # anchor 1 / class 1 (0.8) overlaps anchor 0 / class 1 (0.9) and is suppressed; anchor 2 keeps both
    # of its classes (multi-label); everything of score <= 0.5 is dropped
    torch.testing.assert_close(dets.scores, torch.tensor([0.9, 0.7, 0.6]))
    assert dets.labels.tolist() == [1, 0, 1]
    boxes = decode_boxes(out.box_logits, out.angle_logits, out.anchor_points, out.strides)[0]
    torch.testing.assert_close(dets.boxes, boxes[[0, 2, 2]])
    torch.testing.assert_close(dets.boxes[0, 2:4], torch.tensor([32.0, 16.0]))
    # max_det keeps the best ones
    (top1,) = postprocess(out, conf_thr=0.5, iou_thr=0.5, max_det=1)
    assert top1.labels.tolist() == [1] and top1.scores.tolist() == pytest.approx([0.9])


def test_postprocess_nms_is_class_aware() -> None:
    out = _hand_output()
    out.cls_logits[0, 1] = torch.tensor([_logit(0.8), _logit(0.1)])  # anchor 1 now votes class 0
    (dets,) = postprocess(out, conf_thr=0.5, iou_thr=0.5)
    # anchor 1 / class 0 overlaps anchor 0 / class 1 but has another class: both stay
    assert dets.labels.tolist() == [1, 0, 0, 1]
    torch.testing.assert_close(dets.scores, torch.tensor([0.9, 0.8, 0.7, 0.6]))


def test_predict_on_a_fresh_model() -> None:
    torch.manual_seed(0)
    model = build_detector("n", 3).eval()
    results = model.predict(torch.rand(2, 3, 64, 64), conf_thr=0.0, max_det=7, pre_nms_topk=50)
    assert len(results) == 2
    for dets in results:
        n = dets.boxes.shape[0]
        assert 1 <= n <= 7
        assert dets.boxes.shape == (n, 5) and dets.scores.shape == (n,) and dets.labels.shape == (n,)
        assert dets.labels.dtype == torch.int64 and ((dets.labels >= 0) & (dets.labels < 3)).all()
        assert torch.isfinite(dets.boxes).all()
        assert (dets.scores[:-1] >= dets.scores[1:]).all()
        assert (dets.boxes[:, 2] >= dets.boxes[:, 3]).all()  # long-side rule
        assert ((dets.boxes[:, 4] >= 0) & (dets.boxes[:, 4] < math.pi)).all()


def test_postprocess_with_nothing_above_threshold() -> None:
    (dets,) = postprocess(_hand_output(), conf_thr=0.95)
    assert dets.boxes.shape == (0, 5) and dets.scores.shape == (0,) and dets.labels.shape == (0,)
