"""The detector: shapes, anchors, initialisation, fuse equality, presets, sizes and the info command."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from daik_core.cli import main
from daik_core.models import Detector, DetectorConfig, DetectorOutput, make_anchor_points, model_info
from daik_core.models.head import PRIOR_PROB
from daik_core.presets import PRESETS, build_detector, detector_config
from tests.core.models.helpers import randomize_

NUM_CLASSES = 15


def _num_anchors(h: int, w: int) -> int:
    return sum((h // s) * (w // s) for s in (8, 16, 32))


@pytest.mark.parametrize("preset", PRESETS)
def test_forward_backward_shapes_and_finite(preset: str) -> None:
    torch.manual_seed(0)
    model = build_detector(preset, NUM_CLASSES)
    h, w = 64, 96
    out = model(torch.randn(2, 3, h, w))
    a = _num_anchors(h, w)
    assert isinstance(out, DetectorOutput)
    assert out.cls_logits.shape == (2, a, NUM_CLASSES)
    assert out.box_logits.shape == (2, a, 4, 17)
    assert out.angle_logits.shape == (2, a, 180)
    assert out.anchor_points.shape == (a, 2) and out.anchor_points.dtype == torch.float32
    assert out.strides.shape == (a,)
    cfg = model.config
    assert [tuple(f.shape) for f in out.features] == [
        (2, c, h // s, w // s) for c, s in zip(cfg.head_channels, (8, 16, 32), strict=True)
    ]
    for t in (out.cls_logits, out.box_logits, out.angle_logits, *out.features):
        assert torch.isfinite(t).all()
    loss = out.cls_logits.sigmoid().mean() + out.box_logits.softmax(-1).pow(2).mean()
    loss = loss + out.angle_logits.sigmoid().mean() + sum(f.mean() for f in out.features)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone.stem.dense is not None
    assert model.backbone.stem.dense.conv.weight.grad is not None
    assert model.backbone.stem.dense.conv.weight.grad.abs().sum() > 0  # gradients reach the input layer


def test_anchor_points_and_strides_for_64x96() -> None:
    model = build_detector("n", 3).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 96))
    points, strides = out.anchor_points, out.strides
    # P3: 8 x 12 cells of 8 px, P4: 4 x 6 of 16 px, P5: 2 x 3 of 32 px
    assert points.shape == (96 + 24 + 6, 2)
    assert strides.tolist() == [8.0] * 96 + [16.0] * 24 + [32.0] * 6
    assert points[0].tolist() == [4.0, 4.0]
    assert points[1].tolist() == [12.0, 4.0]  # row-major: x first
    assert points[11].tolist() == [92.0, 4.0]
    assert points[12].tolist() == [4.0, 12.0]
    assert points[95].tolist() == [92.0, 60.0]
    assert points[96].tolist() == [8.0, 8.0]
    assert points[120].tolist() == [16.0, 16.0]
    assert points[125].tolist() == [80.0, 48.0]
    # the same function on bare feature maps
    feats = [torch.zeros(1, 1, 64 // s, 96 // s) for s in (8, 16, 32)]
    p2, s2 = make_anchor_points(feats, (8, 16, 32))
    assert torch.equal(p2, points) and torch.equal(s2, strides)


@pytest.mark.parametrize("shape", [(1, 3, 64, 80), (1, 3, 48, 64), (3, 64, 64), (1, 1, 64, 64)])
def test_forward_rejects_bad_input_shapes(shape: tuple[int, ...]) -> None:
    model = build_detector("n", 2)
    with pytest.raises(ValueError, match=r"multiples of 32|shape"):
        model(torch.zeros(shape))


def test_cls_bias_prior_gives_sigmoid_near_0_01() -> None:
    torch.manual_seed(0)
    model = build_detector("n", NUM_CLASSES)
    prior = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)
    for level in model.head.levels:
        assert torch.allclose(level.cls_pred.bias, torch.full((NUM_CLASSES,), prior))
    with torch.no_grad():  # train mode: BN normalises the features as in the first steps
        scores = model(torch.randn(2, 3, 64, 64)).cls_logits.sigmoid()
    assert abs(scores.mean().item() - 0.01) < 0.002
    assert scores.min() > 0.005 and scores.max() < 0.02


@pytest.mark.parametrize("preset", PRESETS)
def test_fused_equals_unfused_in_eval(preset: str) -> None:
    torch.manual_seed(0)
    model = build_detector(preset, NUM_CLASSES)
    randomize_(model, seed=1)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    n_unfused = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        ref = model(x)
        model.fuse()
        fused = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) < n_unfused
    for name in ("cls_logits", "box_logits", "angle_logits"):
        r, f = getattr(ref, name), getattr(fused, name)
        assert r.std() > 0.03, name  # outputs depend on the input, so the comparison can fail
        torch.testing.assert_close(f, r, rtol=1e-4, atol=1e-4, msg=name)
    for r, f in zip(ref.features, fused.features, strict=True):
        assert r.std() > 0.1
        torch.testing.assert_close(f, r, rtol=1e-4, atol=1e-4)
    assert torch.equal(ref.anchor_points, fused.anchor_points)


def test_presets_follow_yolov6_v3() -> None:
    n, s, m, l = (detector_config(p, NUM_CLASSES) for p in PRESETS)
    assert (n.depth_multiple, n.width_multiple, n.block, n.csp_sppf) == (0.33, 0.25, "rep", True)
    assert (s.depth_multiple, s.width_multiple, s.block) == (0.33, 0.50, "rep")
    assert (m.depth_multiple, m.width_multiple, m.block, m.csp_sppf) == (0.60, 0.75, "csp", False)
    assert (l.depth_multiple, l.width_multiple, l.block) == (1.0, 1.0, "csp")
    assert m.csp_e == pytest.approx(2 / 3) and l.csp_e == 0.5
    assert n.backbone_channels == (16, 32, 64, 128, 256)
    assert n.neck_channels == (64, 32, 32, 64, 64, 128)
    assert n.backbone_repeats == (1, 2, 4, 6, 2) and n.neck_repeats == (4, 4, 4, 4)
    assert m.backbone_repeats == (1, 4, 7, 11, 4) and m.head_channels == (96, 192, 384)
    assert l.backbone_repeats == (1, 6, 12, 18, 6) and l.head_channels == (128, 256, 512)
    assert all(c.strides == (8, 16, 32) for c in (n, s, m, l))
    assert detector_config("n", 3, reg_max=7).reg_max == 7


def test_unknown_preset_names_itself() -> None:
    with pytest.raises(ValueError, match="'xl'"):
        detector_config("xl", 15)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("num_classes", 0, "num_classes"),
        ("block", "dense", "'dense'"),
        ("reg_max", 0, "reg_max"),
        ("strides", (8, 16, 32, 64), "strides"),
        ("csp_e", 1.5, "csp_e"),
        ("width_multiple", 0.0, "width_multiple"),
    ],
)
def test_config_validation_names_the_bad_value(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(detector_config("n", 15), **{field: value})


def test_reg_max_and_angle_bins_are_config_fields() -> None:
    cfg = DetectorConfig(num_classes=2, depth_multiple=0.33, width_multiple=0.25, reg_max=7, angle_bins=90)
    out = Detector(cfg).eval()(torch.zeros(1, 3, 32, 32))
    assert out.box_logits.shape == (1, 21, 4, 8) and out.angle_logits.shape == (1, 21, 90)


def test_plain_rep_pan_neck() -> None:
    cfg = dataclasses.replace(detector_config("n", 4), bifusion=False)
    model = Detector(cfg)
    randomize_(model)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        fused = model.fuse()(x)
    assert ref.cls_logits.shape == (1, _num_anchors(64, 64), 4)
    torch.testing.assert_close(fused.box_logits, ref.box_logits, rtol=1e-4, atol=1e-4)


def test_param_counts_are_plausible() -> None:
    counts = {p: sum(t.numel() for t in build_detector(p, NUM_CLASSES).parameters()) for p in PRESETS}
    print(counts)
    assert 3e6 < counts["n"] < 8e6  # YOLOv6-N v3: 4.7 M (80 classes, no angle branch)
    assert 12e6 < counts["s"] < 30e6
    assert 25e6 < counts["m"] < 50e6
    assert 45e6 < counts["l"] < 90e6
    assert counts["n"] < counts["s"] < counts["m"] < counts["l"]


def test_model_info_counts_flops_and_restores_mode() -> None:
    model = build_detector("n", NUM_CLASSES)
    model.train()
    small, big = model_info(model, 64), model_info(model, (128, 128))
    assert model.training
    assert small["params"] == big["params"] == sum(p.numel() for p in model.parameters())
    assert small["gflops"] > 0
    assert big["gflops"] == pytest.approx(4 * small["gflops"], rel=1e-6)  # convs scale with H x W
    fused = model_info(model.eval().fuse(), 64)
    assert fused["params"] < small["params"] and fused["gflops"] < small["gflops"]


def test_cli_info(capsys: pytest.CaptureFixture[str]) -> None:
    """The fused model's count by default (what trained models report), the training model's on request."""
    argv = ["info", "--preset", "n", "--imgsz", "256", "--num-classes", "3"]
    fused = build_detector("n", 3).eval().fuse()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{sum(p.numel() for p in fused.parameters()):,} params" in out
    assert out.rstrip().endswith(", fused") and "GFLOPs" in out and "3 classes" in out
    assert main([*argv, "--fused"]) == 0  # the default, still accepted
    assert capsys.readouterr().out == out
    assert main([*argv, "--unfused"]) == 0
    unfused = capsys.readouterr().out
    assert f"{sum(p.numel() for p in build_detector('n', 3).parameters()):,} params" in unfused
    assert "unfused (the training model" in unfused


def test_cli_info_rejects_a_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--imgsz", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
