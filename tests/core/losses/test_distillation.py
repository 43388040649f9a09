from __future__ import annotations

import math

import pytest
import torch

from daik_core.config import AssignerSpec, DetectionLossSpec, DistillSpec
from daik_core.losses import (
    DetectionLoss,
    DistillationLoss,
    angle_kd,
    class_kd,
    cosine_decay,
    cwd_loss,
    fitnet_loss,
    hinton_kd,
    localization_kd,
    sad_kl,
    sad_rank_metric,
    teacher_alignment,
)
from daik_core.models.detector import DetectorOutput
from daik_core.structures.targets import Targets

from .test_detection import REG_MAX, anchors, fake_outputs, one_image_targets

LN3 = math.log(3.0)


def val(t: torch.Tensor) -> float:
    return float(t.detach())


# KL((3/4, 1/4) || (1/2, 1/2)) = 3/4 ln(3/2) + 1/4 ln(1/2), by hand
KL_2BIN = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)

ALL_ON = DistillSpec.model_validate(
    {
        "ad": {"enabled": True},
        "ld": {"enabled": True},
        "cls_kd": {"enabled": True},
        "logit_kd": {"enabled": True},
        "sad": {"enabled": True, "kl_weight": 0.1},
        "feat": {"kind": "cwd"},
    }
)
TERMS = {"loss_ad", "loss_ld", "loss_cls_kd", "loss_logit_kd", "loss_sad", "loss_feat"}


def with_features(out: DetectorOutput, seed: int, channels: tuple[int, ...] = (4, 6)) -> DetectorOutput:
    g = torch.Generator().manual_seed(seed)
    feats = [
        torch.randn(out.cls_logits.shape[0], c, 8 // (i + 1), 8 // (i + 1), generator=g)
        for i, c in enumerate(channels)
    ]
    for f in feats:
        f.requires_grad_(True)
    return DetectorOutput(
        out.cls_logits, out.box_logits, out.angle_logits, out.anchor_points, out.strides, feats
    )


def clone_outputs(out: DetectorOutput) -> DetectorOutput:
    """An equal copy with its own leaves (the 'teacher' of a student that matches it exactly)."""

    def leaf(t: torch.Tensor) -> torch.Tensor:
        return t.detach().clone().requires_grad_(True)

    return DetectorOutput(
        leaf(out.cls_logits),
        leaf(out.box_logits),
        leaf(out.angle_logits),
        out.anchor_points,
        out.strides,
        [leaf(f) for f in out.features],
    )


TARGETS = one_image_targets([[30.0, 30.0, 30.0, 12.0, 0.4], [44.0, 20.0, 16.0, 16.0, 0.0]], [2, 0])


# --- hand-computed values on two-bin distributions ---------------------------------------------------


def test_two_bin_hand_values() -> None:
    s = torch.tensor([[0.0, 0.0]])
    for tau in (1.0, 2.0):
        t = torch.tensor([[LN3 * tau, 0.0]])  # softmax(t / tau) = (3/4, 1/4)
        expect = tau * tau * KL_2BIN
        assert val(angle_kd(s, t, torch.ones(1), tau)) == pytest.approx(expect, rel=1e-5)
        assert val(class_kd(s, t, tau)[0]) == pytest.approx(expect, rel=1e-5)
        box_s, box_t = s.expand(4, 2)[None], t.expand(4, 2)[None]  # (1, 4, 2): four equal sides
        assert val(localization_kd(box_s, box_t, torch.ones(1), tau)) == pytest.approx(expect, rel=1e-5)
        # Bernoulli: sigmoid(ln3 * tau / tau) = 3/4 against sigmoid(0) = 1/2
        assert val(hinton_kd(s[:, :1], t[:, :1], tau)) == pytest.approx(expect, rel=1e-5)
        # CWD: one channel, two spatial positions
        fs, ft = s.reshape(1, 1, 1, 2), t.reshape(1, 1, 1, 2)
        assert val(cwd_loss([fs], [ft], tau)) == pytest.approx(expect, rel=1e-5)
        # SAD-KL: GT 0 has the two-bin case, GT 7 agrees: mean over the 2 GTs
        group = torch.tensor([0, 0, 7, 7])
        sm = torch.tensor([0.0, 0.0, 0.3, 0.1])
        tm = torch.tensor([LN3 * tau, 0.0, 0.3, 0.1])
        assert val(sad_kl(sm, tm, group, tau, normalize=False)) == pytest.approx(expect / 2, rel=1e-5)


def test_sad_kl_normalises_the_scale_of_the_metric() -> None:
    group = torch.tensor([0, 0, 0])
    s, t = torch.tensor([1.0, 0.5, 0.0]), torch.tensor([0.2, 1.0, 0.4])
    value = val(sad_kl(s, t, group, 20.0))
    # raw metrics are ~1e-5 in practice: the same shapes at that scale give the same value
    assert val(sad_kl(s * 1e-5, t * 3e-5, group, 20.0)) == pytest.approx(value, rel=1e-4)
    # by hand: normalised s = (1, .5, 0), t = (.2, 1, .4); tau^2 KL close to Var_q(t - s) / 2 at large tau
    q = torch.softmax(t.double() / 20.0, 0)
    d = (t - s).double()
    approx = 0.5 * val((q * d * d).sum() - (q * d).sum() ** 2)
    assert value == pytest.approx(approx, rel=0.05)
    assert val(sad_kl(s * 1e-5, t * 1e-5, group, 20.0, normalize=False)) < 1e-6  # raw: vanishes


def test_direction_is_kl_teacher_to_student() -> None:
    # KL((1/2, 1/2) || (3/4, 1/4)) = 1/2 ln(2/3) + 1/2 ln(2) differs from KL_2BIN
    s, t = torch.tensor([[LN3, 0.0]]), torch.tensor([[0.0, 0.0]])
    reverse = 0.5 * math.log(2 / 3) + 0.5 * math.log(2.0)
    assert val(class_kd(s, t, 1.0)[0]) == pytest.approx(reverse, rel=1e-5)


def test_t_hat_weighting_and_normalisation() -> None:
    s = torch.zeros(2, 2)
    t = torch.tensor([[LN3, 0.0], [0.0, 0.0]])  # row 0: KL_2BIN, row 1: 0
    # sum t_hat = 2: (1.5 * KL + 0.5 * 0) / 2
    assert val(angle_kd(s, t, torch.tensor([1.5, 0.5]), 1.0)) == pytest.approx(0.75 * KL_2BIN, rel=1e-5)
    # sum t_hat = 0.5 < 1: divided by max(sum, 1) = 1, as the detection loss's S
    assert val(angle_kd(s, t, torch.tensor([0.25, 0.25]), 1.0)) == pytest.approx(0.25 * KL_2BIN, rel=1e-5)


def test_sigmoid_softmax_option_by_hand() -> None:
    # sigmoid(0) = 1/2 and sigmoid(ln 3) = 3/4; softmax((1/2, 3/4) / 1) vs softmax((1/2, 1/2))
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, LN3]])
    q = torch.softmax(torch.tensor([0.5, 0.75], dtype=torch.float64), 0)
    expect = val((q * torch.log(q / 0.5)).sum())
    got = angle_kd(s, t, torch.ones(1), 1.0, sigmoid_softmax=True)
    assert val(got) == pytest.approx(expect, rel=1e-5)
    assert val(class_kd(s, t, 1.0, "sigmoid_softmax")[0]) == pytest.approx(expect, rel=1e-5)


def test_fitnet_hand_value() -> None:
    s, t = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)
    s2, t2 = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 3.0)
    assert val(fitnet_loss([s, s2], [t, t2])) == pytest.approx((1.0 + 9.0) / 2)


def test_binary_class_kd_by_hand_sums_the_classes() -> None:
    # two anchors, two classes: one (anchor, class) pair differs (3/4 vs 1/2), the others agree
    s = torch.zeros(2, 2)
    t = torch.tensor([[LN3, 0.0], [0.0, 0.0]])
    got = class_kd(s, t, 1.0, "binary")
    assert got.tolist() == pytest.approx([KL_2BIN, 0.0], rel=1e-5)
    # tau: sigmoid(ln3 * 2 / 2) = 3/4 again, times tau^2
    assert val(class_kd(s, t * 2.0, 2.0, "binary")[0]) == pytest.approx(4 * KL_2BIN, rel=1e-5)
    # hinton_kd (the logit-KD baseline) is its mean over the anchors
    assert val(hinton_kd(s, t, 1.0)) == pytest.approx(KL_2BIN / 2, rel=1e-5)
    x = torch.randn(5, 3)
    assert val(class_kd(x, x, 1.0, "binary").sum()) == pytest.approx(0.0, abs=1e-6)


def test_a_constant_added_to_every_logit_is_invisible_only_to_the_raw_softmax() -> None:
    """Objectness: a teacher that is surer an object is there (every logit + 2) teaches nothing through a
    softmax of raw logits, but does through the sigmoid forms."""
    s = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.4]])
    t = s + 2.0
    assert class_kd(s, t, 1.0, "softmax").tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    for form in ("sigmoid_softmax", "binary"):
        assert (class_kd(s, t, 1.0, form) > 1e-4).all(), form  # type: ignore[arg-type]


def test_sigmoid_softmax_is_a_softmax_of_the_probabilities_by_hand() -> None:
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, LN3]])  # probabilities (1/2, 1/2), (3/4, 3/4)
    # both softmaxes are uniform: the form sees a shift of both probabilities only through their
    # differences, so an equal shift of every class is still 0 (but a shift of one class is not)
    assert val(class_kd(s, t, 1.0, "sigmoid_softmax")[0]) == pytest.approx(0.0, abs=1e-7)
    one = torch.tensor([[LN3, 0.0]])
    q = torch.softmax(torch.tensor([0.75, 0.5], dtype=torch.float64) / 0.5, 0)
    expect = 0.25 * val((q * torch.log(q / 0.5)).sum())  # tau 0.5: softmax of p / 0.5, times tau^2
    assert val(class_kd(s, one, 0.5, "sigmoid_softmax")[0]) == pytest.approx(expect, rel=1e-5)


def cls_kd_loss(cls_kd: dict, weighting: str = "student", **kw: object) -> tuple:
    """``loss_cls_kd`` of random student / teacher outputs on TARGETS, and what it was computed from."""
    spec = DistillSpec.model_validate({"cls_kd": {"enabled": True, **cls_kd}, "weighting": weighting})
    s_out, t_out = fake_outputs(1, 3, seed=1), fake_outputs(1, 3, seed=2, requires_grad=False)
    det = DetectionLoss(3, REG_MAX)
    _, assign = det(s_out, TARGETS)
    got = DistillationLoss(spec)(s_out, t_out, assign, 0, 10, targets=TARGETS, assigner=det.assigner)
    return got["loss_cls_kd"], s_out, t_out, assign, det


def test_cls_kd_over_all_anchors_is_summed_and_divided_by_the_positives() -> None:
    got, s_out, t_out, assign, _ = cls_kd_loss({"form": "binary", "weight": 2.0})
    norm = int(assign.fg_mask.sum())
    assert norm > 1
    per = class_kd(s_out.cls_logits.flatten(0, 1), t_out.cls_logits.flatten(0, 1), 1.0, "binary")
    assert val(got) == pytest.approx(2.0 * val(per.sum()) / max(norm, 1.0), rel=1e-5)
    got.backward()
    assert s_out.cls_logits.grad is not None and t_out.cls_logits.grad is None


def test_cls_kd_on_the_positives_is_a_weighted_mean() -> None:
    got, s_out, t_out, assign, _ = cls_kd_loss(
        {"form": "sigmoid_softmax", "scope": "positives", "weight": 1.0}
    )
    b, a = assign.fg_mask.nonzero(as_tuple=True)
    w = assign.target_scores[b, a].sum(-1)
    per = class_kd(s_out.cls_logits[b, a], t_out.cls_logits[b, a], 10.0, "sigmoid_softmax")
    assert b.numel() > 1
    assert val(got) == pytest.approx(val((per * w).sum() / w.sum().clamp_min(1.0)), rel=1e-5)
    uniform, *_ = cls_kd_loss(
        {"form": "sigmoid_softmax", "scope": "positives", "weight": 1.0}, weighting="uniform"
    )
    assert val(uniform) == pytest.approx(val(per.mean()), rel=1e-5)


def test_cls_kd_teacher_foreground_takes_the_positives_and_the_teachers_confident_anchors() -> None:
    _, s_out, t_out, assign, _ = cls_kd_loss({"form": "binary"})
    t_best = t_out.cls_logits[0].sigmoid().amax(-1)  # (A,)
    thr = float(t_best.quantile(0.9))
    got, *_ = cls_kd_loss({"form": "binary", "scope": "teacher_fg", "fg_thr": thr, "weight": 1.0})
    selected = assign.fg_mask[0] | (t_best >= thr)
    assert 0 < int(selected.sum()) < selected.numel()
    per = class_kd(s_out.cls_logits[0][selected], t_out.cls_logits[0][selected], 1.0, "binary")
    norm = int(assign.fg_mask.sum())
    assert val(got) == pytest.approx(val(per.sum()) / norm, rel=1e-5)


def test_teacher_alignment_is_the_teachers_normalised_metric_at_the_students_positives() -> None:
    s_out, t_out = fake_outputs(1, 3, seed=1), fake_outputs(1, 3, seed=2, requires_grad=False)
    det = DetectionLoss(3, REG_MAX)
    _, assign = det(s_out, TARGETS)
    got = teacher_alignment(det.assigner, t_out, TARGETS, assign)
    b, a = assign.fg_mask.nonzero(as_tuple=True)
    assert got.shape == b.shape and (got >= 0).all()
    # a teacher equal to the student gives the student's own t_hat
    same = teacher_alignment(det.assigner, clone_outputs(s_out), TARGETS, assign)
    assert torch.allclose(same, assign.target_scores[b, a].sum(-1), atol=1e-6)
    # per GT its best positive carries the GT's best overlap (t_hat = t * max u / max t)
    j = assign.matched_gt[b, a]
    for gt in j.unique().tolist():
        assert val(got[j == gt].max()) <= 1.0 + 1e-6


def test_teacher_weighting_needs_targets_and_assigner() -> None:
    spec = DistillSpec.model_validate({"ad": {"enabled": True}, "weighting": "teacher"})
    student = fake_outputs(1, 3, seed=0)
    _, assign = DetectionLoss(3, REG_MAX)(student, TARGETS)
    with pytest.raises(ValueError, match="weighting"):
        DistillationLoss(spec)(student, fake_outputs(1, 3, seed=1), assign, 0, 10)


def test_empty_selection_is_an_attached_zero() -> None:
    s = torch.zeros(0, 5, requires_grad=True)
    for value in (
        angle_kd(s, s, torch.zeros(0)),
        class_kd(s, s).sum(),
        hinton_kd(s, s),
    ):
        assert val(value) == 0.0 and value.requires_grad
    m = torch.zeros(0, requires_grad=True)
    assert val(sad_kl(m, m, torch.zeros(0, dtype=torch.long))) == 0.0


def test_cosine_decay() -> None:
    assert cosine_decay(0, 30) == 1.0
    assert cosine_decay(30, 30) == pytest.approx(0.01)
    assert cosine_decay(15, 30) == pytest.approx(0.505)
    with pytest.raises(ValueError, match="epoch"):
        cosine_decay(31, 30)


# --- the module ----------------------------------------------------------------------------------------


def test_every_toggle_off_adds_nothing() -> None:
    student, teacher = fake_outputs(1, 3, seed=0), fake_outputs(1, 3, seed=1)
    det = DetectionLoss(3, REG_MAX)
    alone, _ = det(student, TARGETS)
    losses, assign = det(student, TARGETS)
    kd = DistillationLoss()(student, teacher, assign, 0, 10)
    assert kd == {}
    combined = losses | kd
    assert combined.keys() == alone.keys()
    assert val(sum(combined.values())) == val(sum(alone.values()))


def test_equal_outputs_give_zero_for_every_term() -> None:
    student = with_features(fake_outputs(1, 3, seed=0), seed=0, channels=(4, 6))
    teacher = clone_outputs(student)
    det = DetectionLoss(3, REG_MAX, AssignerSpec(beta=4.0, gamma=3.0))
    _, assign = det(student, TARGETS)
    assert int(assign.fg_mask.sum()) > 0
    for kind in ("cwd", "fitnet"):
        spec = ALL_ON.model_copy(update={"feat": ALL_ON.feat.model_copy(update={"kind": kind})})
        kd = DistillationLoss(spec, (4, 6), (4, 6))(
            student, teacher, assign, 0, 10, targets=TARGETS, assigner=det.assigner
        )
        assert set(kd) == TERMS
        for key, value in kd.items():
            assert val(value) == pytest.approx(0.0, abs=1e-6), key


def test_gradients_reach_only_the_student_and_the_adapters() -> None:
    student = with_features(fake_outputs(1, 3, seed=0), seed=0, channels=(4, 6))
    teacher = with_features(fake_outputs(1, 3, seed=1), seed=1, channels=(8, 8))
    det = DetectionLoss(3, REG_MAX, AssignerSpec(beta=4.0, gamma=3.0))
    _, assign = det(student, TARGETS)
    kd_loss = DistillationLoss(ALL_ON, (4, 6), (8, 8))
    kd = kd_loss(student, teacher, assign, 0, 10, targets=TARGETS, assigner=det.assigner)
    assert set(kd) == TERMS and all(val(v) > 0 for v in kd.values())
    torch.stack(list(kd.values())).sum().backward()
    for t in (student.cls_logits, student.box_logits, student.angle_logits, *student.features):
        assert t.grad is not None and val(t.grad.abs().sum()) > 0
    for t in (teacher.cls_logits, teacher.box_logits, teacher.angle_logits, *teacher.features):
        assert t.grad is None
    for p in kd_loss.adapters.parameters():
        assert p.grad is not None and val(p.grad.abs().sum()) > 0


def test_weights_loss_spec_and_decay_multiply() -> None:
    student, teacher = fake_outputs(1, 3, seed=0), fake_outputs(1, 3, seed=1)
    _, assign = DetectionLoss(3, REG_MAX)(student, TARGETS)
    b, a = assign.fg_mask.nonzero(as_tuple=True)
    t_hat = assign.target_scores[b, a].sum(-1)
    raw = val(angle_kd(student.angle_logits[b, a], teacher.angle_logits[b, a], t_hat, 10.0))
    spec = DistillSpec.model_validate({"ad": {"enabled": True, "weight": 2.0}, "decay": "cosine"})
    kd = DistillationLoss(spec, loss_spec=DetectionLossSpec(w_angle=0.05))
    assert val(kd(student, teacher, assign, 0, 10)["loss_ad"]) == pytest.approx(0.1 * raw, rel=1e-5)
    assert val(kd(student, teacher, assign, 10, 10)["loss_ad"]) == pytest.approx(0.001 * raw, rel=1e-5)
    flat = DistillationLoss(spec.model_copy(update={"decay": "none"}))
    assert val(flat(student, teacher, assign, 10, 10)["loss_ad"]) == pytest.approx(0.1 * raw, rel=1e-5)


def test_sad_kl_needs_targets_and_assigner() -> None:
    student = fake_outputs(1, 3, seed=0)
    _, assign = DetectionLoss(3, REG_MAX)(student, TARGETS)
    spec = DistillSpec.model_validate({"sad": {"enabled": True, "kl_weight": 0.1}})
    with pytest.raises(ValueError, match="targets"):
        DistillationLoss(spec)(student, fake_outputs(1, 3, seed=1), assign, 0, 10)
    # SAD without the KL option is an assignment, not a loss term
    only_sad = DistillSpec.model_validate({"sad": {"enabled": True}})
    assert DistillationLoss(only_sad)(student, fake_outputs(1, 3, seed=1), assign, 0, 10) == {}


def test_feature_terms_need_channels() -> None:
    with pytest.raises(ValueError, match="channels"):
        DistillationLoss(DistillSpec.model_validate({"feat": {"kind": "fitnet"}}))


# --- SAD: the student's positives follow the teacher ---------------------------------------------------


def ranked_outputs(best: list[int], num_anchors: int) -> DetectorOutput:
    """One image, one class; equal boxes and angles everywhere, score high (in this order) at ``best``."""
    pts, strides = anchors(64)
    cls = torch.full((1, num_anchors, 1), -6.0)
    for rank, i in enumerate(best):
        cls[0, i, 0] = 3.0 - rank
    return DetectorOutput(
        cls, torch.zeros(1, num_anchors, 4, REG_MAX + 1), torch.zeros(1, num_anchors, 180), pts, strides, []
    )


def test_sad_positives_are_the_teachers_topk() -> None:
    pts, _ = anchors(64)
    num_anchors = pts.shape[0]
    targets = Targets(
        torch.tensor([[[32.0, 32.0, 40.0, 40.0, 0.0]]]),
        torch.zeros(1, 1, dtype=torch.long),
        torch.ones(1, 1, dtype=torch.bool),
    )
    # beta = 0: the metric is the score alone, so the ranking is set by the class logits
    det = DetectionLoss(1, REG_MAX, AssignerSpec(topk=2, beta=0.0))
    inside = det.assigner.candidates(pts, targets).anchor.tolist()
    assert len(inside) >= 4
    s_best, t_best = inside[:2], inside[-2:]
    student, teacher = ranked_outputs(s_best, num_anchors), ranked_outputs(t_best, num_anchors)

    _, own = det(student, targets)
    assert sorted(own.fg_mask[0].nonzero().squeeze(1).tolist()) == sorted(s_best)

    _, sad = det(student, targets, rank_metric=sad_rank_metric(det.assigner, teacher, targets))
    assert sorted(sad.fg_mask[0].nonzero().squeeze(1).tolist()) == sorted(t_best)
    # the targets are normalised with the student's own metric: its scores at the teacher's positives
    # (equal there, logit -6) set t and hence the ratio of t_hat, not the teacher's (logits 3 and 2)
    student_scores = student.cls_logits[0, t_best, 0].sigmoid()
    assert torch.allclose(sad.align_metric[0, t_best], student_scores)
    t_hat = sad.target_scores[0, t_best, 0]
    assert val(t_hat[0]) == pytest.approx(val(t_hat[1]), rel=1e-5) and val(t_hat[0]) > 0


def test_sad_rank_metric_is_the_teachers_pair_metric() -> None:
    teacher = fake_outputs(1, 3, seed=1, requires_grad=False)
    targets = one_image_targets([[30.0, 30.0, 30.0, 12.0, 0.4]], [2])
    det = DetectionLoss(3, REG_MAX)
    pairs = det.assigner.candidates(teacher.anchor_points, targets)
    got = sad_rank_metric(det.assigner, teacher, targets)(pairs)
    assert got.metric.shape == pairs.anchor.shape
    # the teacher's own assignment ranks with the same metric: its positives carry exactly these values
    _, assign_t = det(teacher, targets)
    by_anchor = dict(zip(pairs.anchor.tolist(), got.metric.tolist(), strict=True))
    on = assign_t.fg_mask[0].nonzero().squeeze(1).tolist()
    assert on
    for i in on:
        assert by_anchor[i] == pytest.approx(val(assign_t.align_metric[0, i]), rel=1e-6)
