from __future__ import annotations

import math

import pytest
import torch

from daik_core.config import AssignerSpec, DetectionLossSpec
from daik_core.losses import DetectionLoss, csl_targets
from daik_core.models.decode import obb_to_distances
from daik_core.models.detector import DetectorOutput
from daik_core.presets import build_detector
from daik_core.structures.targets import Targets

REG_MAX = 16
R = REG_MAX + 1


def anchors(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    pts, strides = [], []
    for s in (8, 16, 32):
        c = (torch.arange(size // s, dtype=torch.float32) + 0.5) * s
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        p = torch.stack((xx, yy), -1).reshape(-1, 2)
        pts.append(p)
        strides.append(torch.full((p.shape[0],), float(s)))
    return torch.cat(pts), torch.cat(strides)


def logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-4, 1 - 1e-4)
    return torch.log(p) - torch.log1p(-p)


def fake_outputs(
    bsz: int, num_classes: int, size: int = 64, seed: int = 0, requires_grad: bool = True
) -> DetectorOutput:
    g = torch.Generator().manual_seed(seed)
    pts, strides = anchors(size)
    a = pts.shape[0]
    out = DetectorOutput(
        torch.randn(bsz, a, num_classes, generator=g) - 3,
        torch.randn(bsz, a, 4, R, generator=g),
        torch.randn(bsz, a, 180, generator=g),
        pts,
        strides,
        [],
    )
    if requires_grad:
        for t in (out.cls_logits, out.box_logits, out.angle_logits):
            t.requires_grad_(True)
    return out


def one_image_targets(boxes: list[list[float]], labels: list[int]) -> Targets:
    return Targets(
        torch.tensor([boxes], dtype=torch.float32),
        torch.tensor([labels], dtype=torch.long),
        torch.ones(1, len(boxes), dtype=torch.bool),
    )


def perfect_outputs(gt: list[float], label: int, num_classes: int, size: int = 64) -> DetectorOutput:
    """Outputs whose box and angle branches encode ``gt`` exactly at every anchor inside it, and whose
    class branch scores ``label`` high there and everything else low."""
    pts, strides = anchors(size)
    a = pts.shape[0]
    box = torch.tensor(gt)
    dist = obb_to_distances(box.expand(a, 5), pts) / strides[:, None]  # (A, 4)
    inside = (dist >= 0).all(-1)
    d = dist.clamp(0, R - 1 - 0.01)
    left = d.floor().long()
    w_right = d - left
    probs = torch.full((a, 4, R), 1e-6)
    probs.scatter_(-1, left[..., None], (1 - w_right)[..., None])
    probs.scatter_(-1, (left + 1)[..., None], w_right[..., None])
    box_logits = torch.log(probs)[None]
    angle_logits = logit(csl_targets(box[4:5], 180, 6.0)).expand(1, a, 180).clone()
    cls_logits = torch.full((1, a, num_classes), -6.0)
    cls_logits[0, inside, label] = 2.0
    return DetectorOutput(cls_logits, box_logits, angle_logits, pts, strides, [])


def test_image_without_objects() -> None:
    out = fake_outputs(2, 3)
    empty = Targets(
        torch.zeros(2, 0, 5), torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.bool)
    )
    losses, assign = DetectionLoss(3, REG_MAX)(out, empty)
    assert set(losses) == {"loss_cls", "loss_box", "loss_dfl", "loss_angle"}
    for key in ("loss_box", "loss_dfl", "loss_angle"):
        assert float(losses[key].detach()) == 0.0
    cls = float(losses["loss_cls"].detach())
    assert math.isfinite(cls) and cls > 0
    assert not bool(assign.fg_mask.any())
    total = sum(losses.values())
    assert isinstance(total, torch.Tensor)
    total.backward()
    assert out.cls_logits.grad is not None and bool((out.cls_logits.grad > 0).all())  # every score down
    assert out.box_logits.grad is not None and float(out.box_logits.grad.abs().sum()) == 0.0


def test_image_without_objects_beside_one_with_objects() -> None:
    out = fake_outputs(2, 3)
    targets = Targets(
        torch.tensor([[[30.0, 30.0, 30.0, 12.0, 0.4]], [[0.0, 0.0, 0.0, 0.0, 0.0]]]),
        torch.tensor([[2], [0]]),
        torch.tensor([[True], [False]]),
    )
    losses, assign = DetectionLoss(3, REG_MAX)(out, targets)
    assert int(assign.fg_mask[0].sum()) > 0 and not bool(assign.fg_mask[1].any())
    assert all(math.isfinite(float(v.detach())) and float(v.detach()) > 0 for v in losses.values())


def test_perfect_prediction_beats_perturbed_ones() -> None:
    gt = [32.0, 28.0, 40.0, 16.0, 0.6]
    targets = one_image_targets([gt], [1])
    criterion = DetectionLoss(2, REG_MAX, AssignerSpec(overlap="rotated_iou"))
    perfect = perfect_outputs(gt, 1, 2)
    best, assign = criterion(perfect, targets)
    assert int(assign.fg_mask.sum()) > 0
    assert float(best["loss_box"]) < 0.01  # 1 - IoU of the exact box
    base_total = float(sum(best.values()))

    shifted_box = perfect_outputs(gt, 1, 2)
    shifted_box.box_logits.copy_(torch.roll(shifted_box.box_logits, 2, dims=-1))  # every side 2 bins off
    worse_box, _ = criterion(shifted_box, targets)
    assert float(worse_box["loss_box"]) > float(best["loss_box"]) + 0.1
    assert float(worse_box["loss_dfl"]) > float(best["loss_dfl"]) + 0.1
    assert float(sum(worse_box.values())) > base_total

    turned = perfect_outputs(gt, 1, 2)
    turned.angle_logits.copy_(torch.roll(turned.angle_logits, 25, dims=-1))  # 25 degrees off
    worse_angle, _ = criterion(turned, targets)
    assert float(worse_angle["loss_angle"]) > float(best["loss_angle"])
    assert float(sum(worse_angle.values())) > base_total

    wrong_class = perfect_outputs(gt, 0, 2)
    worse_cls, _ = criterion(wrong_class, targets)
    assert float(worse_cls["loss_cls"]) > float(best["loss_cls"])


def test_weights_multiply_each_term() -> None:
    targets = one_image_targets([[30.0, 30.0, 30.0, 12.0, 0.4]], [0])
    out = fake_outputs(1, 2, requires_grad=False)
    ref, _ = DetectionLoss(2, REG_MAX, loss=DetectionLossSpec(w_cls=1, w_box=1, w_dfl=1, w_angle=1))(
        out, targets
    )
    spec = DetectionLossSpec(w_cls=2.0, w_box=0.0, w_dfl=0.5, w_angle=3.0)
    got, _ = DetectionLoss(2, REG_MAX, loss=spec)(out, targets)
    torch.testing.assert_close(got["loss_cls"], 2.0 * ref["loss_cls"])
    assert float(got["loss_box"]) == 0.0
    torch.testing.assert_close(got["loss_dfl"], 0.5 * ref["loss_dfl"])
    torch.testing.assert_close(got["loss_angle"], 3.0 * ref["loss_angle"])


def test_square_gt_angle_is_ambiguous_by_90_degrees() -> None:
    criterion = DetectionLoss(2, REG_MAX)
    for side_h, same in ((24.0, True), (18.0, False)):
        gt = [32.0, 32.0, 24.0, side_h, 0.3]
        targets = one_image_targets([gt], [0])
        out = perfect_outputs(gt, 0, 2)
        turned = perfect_outputs(gt, 0, 2)
        turned.angle_logits.copy_(torch.roll(turned.angle_logits, 90, dims=-1))
        a, _ = criterion(out, targets)
        b, _ = criterion(turned, targets)
        if same:
            torch.testing.assert_close(a["loss_angle"], b["loss_angle"])
        else:
            assert float(b["loss_angle"]) > 2 * float(a["loss_angle"])


@pytest.mark.parametrize(
    ("overlap", "box_loss", "gamma"),
    [("probiou", "rotated_iou", 0.0), ("rotated_iou", "probiou", 0.0), ("hbb_iou", "rotated_iou", 1.0)],
)
def test_options_run_and_give_finite_gradients(overlap: str, box_loss: str, gamma: float) -> None:
    out = fake_outputs(2, 3, seed=1)
    targets = Targets(
        torch.tensor(
            [
                [[20.0, 20.0, 24.0, 8.0, 0.2], [44.0, 40.0, 16.0, 16.0, 1.0]],
                [[30.0, 34.0, 40.0, 10.0, 2.5], [0.0] * 5],
            ]
        ),
        torch.tensor([[0, 2], [1, 0]]),
        torch.tensor([[True, True], [True, False]]),
    )
    spec = AssignerSpec(overlap=overlap, gamma=gamma, aal_ar_bins=20, aal_angle_bins=20)  # type: ignore[arg-type]
    losses, assign = DetectionLoss(3, REG_MAX, spec, DetectionLossSpec(box_loss=box_loss))(out, targets)  # type: ignore[arg-type]
    assert int(assign.fg_mask.sum()) > 0
    total = sum(losses.values())
    assert isinstance(total, torch.Tensor) and math.isfinite(float(total.detach()))
    total.backward()
    for t in (out.cls_logits, out.box_logits, out.angle_logits):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all()) and float(t.grad.abs().sum()) > 0


def test_shape_errors_name_the_tensor() -> None:
    out = fake_outputs(1, 3, requires_grad=False)
    targets = one_image_targets([[30.0, 30.0, 30.0, 12.0, 0.4]], [0])
    with pytest.raises(ValueError, match="cls_logits"):
        DetectionLoss(4, REG_MAX)(out, targets)
    with pytest.raises(ValueError, match="reg_max=8"):
        DetectionLoss(3, 8)(out, targets)


def test_real_detector_gradients_are_finite() -> None:
    torch.manual_seed(0)
    model = build_detector("n", num_classes=3)
    g = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 64, 64, generator=g)
    centre = 8 + torch.rand(2, 4, 2, generator=g) * 48
    w = 6 + torch.rand(2, 4, generator=g) * 40
    h = w / (1 + 3 * torch.rand(2, 4, generator=g))
    boxes = torch.cat((centre, w[..., None], h[..., None], torch.rand(2, 4, 1, generator=g) * math.pi), -1)
    targets = Targets(
        boxes,
        torch.randint(0, 3, (2, 4), generator=g),
        torch.tensor([[True] * 4, [True, True, False, False]]),
    )
    losses, assign = DetectionLoss(3, REG_MAX)(model(images), targets)
    assert all(k.startswith("loss_") for k in losses)
    assert int(assign.fg_mask.sum()) > 0
    total = sum(losses.values())
    assert isinstance(total, torch.Tensor)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 0
    assert all(bool(torch.isfinite(gr).all()) for gr in grads)
    for name in ("cls_pred", "box_pred", "angle_pred"):
        weight = model.get_parameter(f"head.levels.0.{name}.weight")
        assert weight.grad is not None and float(weight.grad.abs().sum()) > 0


def test_overfits_one_tiny_image() -> None:
    torch.manual_seed(0)
    model = build_detector("n", num_classes=2)
    image = torch.zeros(1, 3, 128, 128)
    image[:, 0, 30:50, 20:80] = 1.0
    image[:, 1, 70:110, 80:100] = 1.0
    targets = one_image_targets(
        [[50.0, 40.0, 60.0, 20.0, 0.0], [90.0, 90.0, 40.0, 20.0, math.pi / 2]], [0, 1]
    )
    criterion = DetectionLoss(2, REG_MAX)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(30):
        losses, _ = criterion(model(image), targets)
        total = sum(losses.values())
        assert isinstance(total, torch.Tensor)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(float(total.detach()))
    assert all(math.isfinite(v) for v in history)
    assert min(history[-3:]) < 0.7 * history[0], history
