"""Distillation losses of DAIK (METHOD.md, "DAIK components"), composed with the detection loss::

    rank = sad_rank_metric(det_loss.assigner, t_out, targets)  # only with SAD on
    det_losses, assign = det_loss(s_out, targets, rank_metric=rank)
    losses = det_losses | kd_loss(s_out, t_out, assign, epoch, epochs)

The teacher runs in ``eval()`` under ``no_grad``; every term here detaches the teacher's tensors anyway.

Shape letters: B images, A anchor points, C classes, K angle bins, R = reg_max + 1 DFL bins, N positive
anchors, T candidate (anchor, GT) pairs, L feature levels.

Every KL is ``KL(teacher || student)`` computed as ``F.kl_div(log_softmax(s / tau), log_softmax(t / tau),
log_target=True)`` (no ``log(softmax)``), times ``tau^2`` (Hinton: keeps the gradient scale independent of
``tau``). Normalisations:

* ``angle_kd``, ``localization_kd`` and ``class_kd`` on the positives: a weighted mean over the positive
  anchors, ``sum(w * kl) / max(sum w, 1)``; the weight ``w`` of a positive is chosen by ``losses.weighting``:
  the student's normalised alignment ``t_hat`` (the detection loss's target), the teacher's
  (:func:`teacher_alignment`: its metric on the same anchor and GT, normalised per GT the same way) or 1.
* ``class_kd`` on all anchors or the teacher's foreground: the per-anchor terms summed and divided by the
  number of positive anchors (at least 1), as BCKD does: a mean over every anchor would let the ~10k
  background anchors dilute the few hundred positives, and ``sum t_hat`` (``loss_cls``'s normaliser) is
  close to 0 at the start of training, which would make the term hundreds of times the others.
* ``hinton_kd`` (the logit-KD baseline): mean over every anchor.
* ``sad_kl``: mean over the GTs. ``fitnet_loss``, ``cwd_loss``: mean over the levels.

How multi-label (sigmoid) class logits become distributions (``cls_kd.form``):

* ``softmax``: one categorical distribution per anchor, ``softmax over the C classes of logits / tau``. It
  transfers the teacher's *relative* class preferences at an anchor, not its objectness: adding a constant
  to every logit leaves it unchanged; with ``C = 1`` it is identically 0.
* ``sigmoid_softmax`` (the method's reference form, YOLOv6's ``softmax(pred_scores / T)``): the softmax of
  ``sigmoid(logits) / tau``; it sees the probabilities, so a shift of every logit changes it.
* ``binary`` (BCKD): one Bernoulli distribution ``(sigmoid(x / tau), 1 - sigmoid(x / tau))`` per (anchor,
  class), the KL summed over the C classes; it carries the absolute scores (also with ``C = 1``).
  ``hinton_kd`` uses the same per-anchor term.

An empty selection (no positives, no GTs) gives an exact 0 that stays attached to the student's graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from daik_core.assigners import (
    AssignResult,
    CandidatePairs,
    PairMetric,
    RotatedTaskAlignedAssigner,
    normalized_alignment,
)
from daik_core.config import DetectionLossSpec, DistillSpec
from daik_core.models.decode import decode_boxes
from daik_core.models.detector import DetectorOutput
from daik_core.structures.targets import Targets

__all__ = [
    "DistillationLoss",
    "angle_kd",
    "class_kd",
    "cosine_decay",
    "cwd_loss",
    "decode_predictions",
    "fitnet_loss",
    "hinton_kd",
    "localization_kd",
    "sad_kl",
    "sad_rank_metric",
    "teacher_alignment",
]

RankMetric = Callable[[CandidatePairs], PairMetric]


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")


def _kl_rows(student: Tensor, teacher: Tensor, tau: float) -> Tensor:
    """``tau^2 * KL(softmax(t/tau) || softmax(s/tau))`` over the last dimension: ``(..., n) -> (...)``.
    The teacher is detached."""
    _check_tau(tau)
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher must have one shape, got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    s_logp = F.log_softmax(student.float() / tau, dim=-1)
    t_logp = F.log_softmax(teacher.detach().float() / tau, dim=-1)
    return F.kl_div(s_logp, t_logp, reduction="none", log_target=True).sum(-1) * (tau * tau)


def _weighted_mean(per_anchor: Tensor, weight: Tensor, student: Tensor) -> Tensor:
    """``sum(per_anchor * weight) / max(sum(weight), 1)``; 0 (attached to ``student``) when empty."""
    if per_anchor.numel() == 0:
        return student.sum() * 0.0
    if weight.shape != per_anchor.shape:
        raise ValueError(f"weight must have shape {tuple(per_anchor.shape)}, got {tuple(weight.shape)}")
    w = weight.detach().float()
    return (per_anchor * w).sum() / w.sum().clamp_min(1.0)


def angle_kd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    weight: Tensor,
    tau: float = 10.0,
    sigmoid_softmax: bool = False,
) -> Tensor:
    """AD: ``tau^2 KL(q_T || p_S)`` over the K angle bins of the positives, scalar.

    ``student_logits, teacher_logits (N, K)`` angle (CSL) logits of the positive anchors, ``weight (N,)``
    their ``t_hat``; ``p = softmax(S / tau)``, ``q = softmax(T / tau)`` (``sigmoid_softmax``: of
    ``sigmoid(logits) / tau``). Weighted by ``t_hat``, divided by ``max(sum t_hat, 1)``.
    """
    s, t = student_logits.float(), teacher_logits.detach().float()
    if sigmoid_softmax:
        s, t = s.sigmoid(), t.sigmoid()
    return _weighted_mean(_kl_rows(s, t, tau), weight, student_logits)


def localization_kd(
    student_logits: Tensor, teacher_logits: Tensor, weight: Tensor, tau: float = 20.0
) -> Tensor:
    """LD: ``tau^2 KL(softmax(z_T / tau) || softmax(z_S / tau))`` of the DFL distributions, scalar.

    ``student_logits, teacher_logits (N, 4, R)`` box (DFL) logits of the positives, ``weight (N,)`` their
    ``t_hat``. Mean over the 4 sides (as ``loss_dfl``), weighted by ``t_hat``, divided by
    ``max(sum t_hat, 1)``.
    """
    if student_logits.dim() != 3 or student_logits.shape[1] != 4:
        raise ValueError(f"box logits must have shape (N, 4, R), got {tuple(student_logits.shape)}")
    return _weighted_mean(_kl_rows(student_logits, teacher_logits, tau).mean(-1), weight, student_logits)


def _bernoulli_kl(student_logits: Tensor, teacher_logits: Tensor, tau: float) -> Tensor:
    """Per (anchor, class) ``tau^2 KL`` of the Bernoulli distributions ``(sigmoid(x / tau), 1 - sigmoid(x /
    tau))`` of teacher and student: ``(N, C) -> (N, C)``."""
    # log of the two-bin distribution (p, 1 - p) = log_softmax of (x, 0): kl over the last dim
    s = torch.stack((student_logits.float(), torch.zeros_like(student_logits, dtype=torch.float32)), -1)
    t = torch.stack(
        (teacher_logits.detach().float(), torch.zeros_like(teacher_logits, dtype=torch.float32)), -1
    )
    return _kl_rows(s, t, tau)


ClassKDForm = Literal["softmax", "sigmoid_softmax", "binary"]


def class_kd(
    student_logits: Tensor, teacher_logits: Tensor, tau: float = 10.0, form: ClassKDForm = "softmax"
) -> Tensor:
    """Classification distillation of each anchor, unreduced: ``(N, C) -> (N,)`` ``tau^2 KL(teacher ||
    student)`` of the class distributions of ``form`` (module docstring): ``softmax`` of ``logits / tau``,
    ``sigmoid_softmax`` (softmax of ``sigmoid(logits) / tau``) or ``binary`` (per-class Bernoulli KLs,
    summed over the C classes). The caller weights and reduces (:class:`DistillationLoss`)."""
    if student_logits.dim() != 2:
        raise ValueError(f"class logits must have shape (N, C), got {tuple(student_logits.shape)}")
    if form == "binary":
        return _bernoulli_kl(student_logits, teacher_logits, tau).sum(-1)
    s, t = student_logits.float(), teacher_logits.detach().float()
    if form == "sigmoid_softmax":
        s, t = s.sigmoid(), t.sigmoid()
    elif form != "softmax":
        raise ValueError(f"form must be softmax, sigmoid_softmax or binary, got {form!r}")
    return _kl_rows(s, t, tau)


def hinton_kd(student_logits: Tensor, teacher_logits: Tensor, tau: float = 4.0) -> Tensor:
    """Plain logit KD for sigmoid class logits, scalar: per (anchor, class) the ``tau^2 KL`` of the Bernoulli
    distributions ``(sigmoid(x / tau), 1 - sigmoid(x / tau))``, summed over the C classes, mean over the
    N anchors. ``student_logits, teacher_logits (N, C)``."""
    kl = class_kd(student_logits, teacher_logits, tau, "binary")
    return kl.mean() if kl.numel() else student_logits.sum() * 0.0


def _check_levels(student: Sequence[Tensor], teacher: Sequence[Tensor]) -> None:
    if len(student) != len(teacher) or not student:
        raise ValueError(
            f"need the same number (>= 1) of student and teacher levels, got {len(student)}, {len(teacher)}"
        )
    for i, (s, t) in enumerate(zip(student, teacher, strict=True)):
        if s.dim() != 4 or s.shape != t.shape:
            raise ValueError(
                f"level {i}: adapted student and teacher features must have one shape (B, C, H, W), got "
                f"{tuple(s.shape)} and {tuple(t.shape)}"
            )


def fitnet_loss(student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> Tensor:
    """FitNet feature imitation, scalar: per level the mean squared error of the student's features *after
    the 1x1 adapter* (``(B, C_t, H, W)``) and the teacher's ``(B, C_t, H, W)``; mean over the L levels."""
    _check_levels(student_feats, teacher_feats)
    terms = [
        F.mse_loss(s.float(), t.detach().float()) for s, t in zip(student_feats, teacher_feats, strict=True)
    ]
    return torch.stack(terms).mean()


def cwd_loss(student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor], tau: float = 4.0) -> Tensor:
    """Channel-wise distillation (Shu et al., ICCV 2021), scalar. Per level and channel, the spatial
    distribution ``softmax over the H * W positions of x / tau``; ``tau^2 KL(teacher || student)``, mean
    over the ``B * C`` channels, then over the L levels. Student features after the adapter,
    ``(B, C_t, H, W)``."""
    _check_levels(student_feats, teacher_feats)
    terms = [
        _kl_rows(s.flatten(2), t.flatten(2), tau).mean()
        for s, t in zip(student_feats, teacher_feats, strict=True)
    ]
    return torch.stack(terms).mean()


def _group_max(x: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Maximum of ``x (T,)`` per group ``group (T,)`` in ``[0, num_groups)``: ``(num_groups,)``."""
    return x.new_full((num_groups,), -math.inf).scatter_reduce(0, group, x, "amax", include_self=False)


def _group_log_softmax(x: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """``log_softmax`` of ``x (T,)`` inside each group ``group (T,)`` in ``[0, num_groups)``: ``(T,)``."""
    top = _group_max(x.detach(), group, num_groups)
    z = x - top[group]
    total = x.new_zeros(num_groups).index_add(0, group, z.exp())
    return z - total.log()[group]


def sad_kl(
    student_metric: Tensor, teacher_metric: Tensor, group: Tensor, tau: float = 20.0, normalize: bool = True
) -> Tensor:
    """SAD-KL, scalar: per GT, ``tau^2 KL(softmax_i(t^T_i / tau) || softmax_i(t^S_i / tau))`` over its
    candidate anchors i; mean over the GTs.

    ``student_metric, teacher_metric (T,)`` the alignment metrics ``t`` of the candidate pairs (the student's
    differentiable), ``group (T,)`` int64 any id of each pair's GT (e.g. ``batch * M + gt``).

    ``normalize`` (default, our *reading*): each model's ``t`` is first divided by its (detached) maximum
    over the GT's candidates, so both lie in ``[0, 1]`` with a top of 1. Raw ``t = s^alpha u^beta W^gamma``
    is tiny (about 1e-5 early in training with beta = 4..6), and ``softmax(t / 20)`` of raw values is
    uniform to float32 precision: the term would vanish. After it, ``tau^2 KL`` is close to half the
    variance (under the teacher's distribution) of the difference of the normalised metrics.
    """
    _check_tau(tau)
    if student_metric.shape != teacher_metric.shape or group.shape != student_metric.shape:
        raise ValueError(
            f"metrics and group must have one shape (T,), got {tuple(student_metric.shape)}, "
            f"{tuple(teacher_metric.shape)}, {tuple(group.shape)}"
        )
    if student_metric.numel() == 0:
        return student_metric.sum() * 0.0
    ids, inverse = torch.unique(group, return_inverse=True)
    n = ids.numel()
    s, t = student_metric.float(), teacher_metric.detach().float()
    if normalize:
        s = s / (_group_max(s.detach(), inverse, n)[inverse] + 1e-12)
        t = t / (_group_max(t, inverse, n)[inverse] + 1e-12)
    s_logp = _group_log_softmax(s / tau, inverse, n)
    t_logp = _group_log_softmax(t / tau, inverse, n)
    per_pair = F.kl_div(s_logp, t_logp, reduction="none", log_target=True)
    per_gt = per_pair.new_zeros(n).index_add(0, inverse, per_pair).clamp_min(0.0)  # >= 0 (float rounding)
    return per_gt.mean() * (tau * tau)


def cosine_decay(epoch: float, epochs: float) -> float:
    """YOLOv6's KD fade ``1 - 0.99 (1 - cos(pi e / E)) / 2``: 1 at ``e = 0``, 0.01 at ``e = E``."""
    if not epochs > 0:
        raise ValueError(f"epochs must be > 0, got {epochs}")
    if not 0 <= epoch <= epochs:
        raise ValueError(f"epoch must lie in [0, {epochs}], got {epoch}")
    return 1.0 - 0.99 * (1.0 - math.cos(math.pi * epoch / epochs)) / 2.0


def decode_predictions(outputs: DetectorOutput) -> tuple[Tensor, Tensor]:
    """Scores ``sigmoid(cls_logits) (B, A, C)`` and boxes ``(B, A, 5)`` obb px of a detector's output, decoded
    as :class:`~daik_core.losses.DetectionLoss` does for its assigner (DFL expectation, angle = centre of the
    argmax CSL bin). Differentiable in the scores and the distances unless called under ``no_grad``."""
    boxes = decode_boxes(outputs.box_logits, outputs.angle_logits, outputs.anchor_points, outputs.strides)
    return outputs.cls_logits.float().sigmoid(), boxes


def sad_rank_metric(
    assigner: RotatedTaskAlignedAssigner, teacher_out: DetectorOutput, targets: Targets
) -> RankMetric:
    """SAD's ``rank_metric`` for ``assigner.assign`` (and ``DetectionLoss.forward``): the teacher's alignment
    metric (the assigner's alpha, beta, gamma and AAL) of each candidate pair, so the student's positives are
    the teacher's top-k inside each GT (conflicts by the teacher's overlap); the student's own metric still
    normalises ``t_hat``. The teacher is decoded once, here, under ``no_grad``."""
    with torch.no_grad():
        scores, boxes = decode_predictions(teacher_out)

    def rank(pairs: CandidatePairs) -> PairMetric:
        with torch.no_grad():
            return assigner.pair_metric(scores, boxes, targets, pairs, teacher_out.anchor_points)

    return rank


def teacher_alignment(
    assigner: RotatedTaskAlignedAssigner, teacher_out: DetectorOutput, targets: Targets, assign: AssignResult
) -> Tensor:
    """The teacher's normalised alignment ``t_hat`` at the student's positives, ``(N,)`` in the order of
    ``assign.fg_mask.nonzero()``: the assigner's metric of the teacher's predictions on each positive's
    (anchor, assigned GT) pair, normalised per GT over the GT's positives as the assigner normalises the
    student's (``t * max(u) / max(t)``). No gradient."""
    b, a = assign.fg_mask.nonzero(as_tuple=True)
    j = assign.matched_gt[b, a]
    with torch.no_grad():
        scores, boxes = decode_predictions(teacher_out)
        pm = assigner.pair_metric(scores, boxes, targets, CandidatePairs(b, a, j), teacher_out.anchor_points)
        m = targets.boxes.shape[1]
        return normalized_alignment(pm.metric, pm.overlap, b * m + j, assign.fg_mask.shape[0] * m)


class DistillationLoss(nn.Module):
    """The enabled distillation terms of a :class:`~daik_core.config.DistillSpec` (module docstring).

    ``student_channels`` / ``teacher_channels``: the neck channels per level ``[P3, P4, P5]``, used only by
    the feature terms, which own one 1x1 conv adapter per level (student -> teacher channels; initialised to
    the identity when the two counts match, so equal features give 0 at the start).

    ``loss_spec``: the detection weights that METHOD's total puts in front of the KD terms (``w_cls`` for
    ``loss_cls_kd`` and ``loss_logit_kd``, ``w_dfl`` for ``loss_ld``, ``w_angle`` for ``loss_ad``); default
    ``DetectionLossSpec()``, as in :class:`~daik_core.losses.DetectionLoss`.
    """

    def __init__(
        self,
        spec: DistillSpec | None = None,
        student_channels: Sequence[int] = (),
        teacher_channels: Sequence[int] = (),
        loss_spec: DetectionLossSpec | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec if spec is not None else DistillSpec()
        self.loss_spec = loss_spec if loss_spec is not None else DetectionLossSpec()
        self.adapters = nn.ModuleList()
        if self.spec.feat.kind != "none":
            if len(student_channels) != len(teacher_channels) or not student_channels:
                raise ValueError(
                    "feature distillation needs the channels of each level of student and teacher, got "
                    f"{list(student_channels)} and {list(teacher_channels)}"
                )
            for cs, ct in zip(student_channels, teacher_channels, strict=True):
                if cs < 1 or ct < 1:
                    raise ValueError(f"channel counts must be >= 1, got {cs} and {ct}")
                conv = nn.Conv2d(cs, ct, kernel_size=1)
                if cs == ct:
                    with torch.no_grad():
                        conv.weight.copy_(torch.eye(cs)[:, :, None, None])
                        assert conv.bias is not None
                        conv.bias.zero_()
                self.adapters.append(conv)

    def forward(
        self,
        student_out: DetectorOutput,
        teacher_out: DetectorOutput,
        assign: AssignResult,
        epoch: float,
        epochs: float,
        *,
        targets: Targets | None = None,
        assigner: RotatedTaskAlignedAssigner | None = None,
    ) -> dict[str, Tensor]:
        """The enabled terms, each already multiplied by its weight(s) and the decay: ``loss_ad``,
        ``loss_ld``, ``loss_cls_kd``, ``loss_logit_kd``, ``loss_sad`` (SAD-KL, needs ``targets`` and the
        distillation ``assigner``), ``loss_feat``. ``assign``: the student's assignment (from
        ``DetectionLoss``); ``epoch`` in ``[0, epochs]`` drives the decay."""
        spec, w = self.spec, self.loss_spec
        decay = cosine_decay(epoch, epochs) if spec.decay == "cosine" else 1.0
        s_cls, t_cls = student_out.cls_logits, teacher_out.cls_logits.detach()
        if s_cls.shape != t_cls.shape:
            raise ValueError(
                "student and teacher cls_logits differ in shape: "
                f"{tuple(s_cls.shape)} and {tuple(t_cls.shape)}"
            )
        b, a = assign.fg_mask.nonzero(as_tuple=True)  # (N,) each
        weight = self._positive_weights(teacher_out, assign, targets, assigner)  # (N,)
        losses: dict[str, Tensor] = {}

        if spec.ad.enabled:
            kd = angle_kd(
                student_out.angle_logits[b, a],
                teacher_out.angle_logits.detach()[b, a],
                weight,
                spec.ad.tau,
                spec.ad.sigmoid_softmax,
            )
            losses["loss_ad"] = w.w_angle * spec.ad.weight * decay * kd
        if spec.ld.enabled:
            kd = localization_kd(
                student_out.box_logits[b, a], teacher_out.box_logits.detach()[b, a], weight, spec.ld.tau
            )
            losses["loss_ld"] = w.w_dfl * spec.ld.weight * decay * kd
        if spec.cls_kd.enabled:
            ck = spec.cls_kd
            if ck.scope == "positives":
                per_anchor = class_kd(s_cls[b, a], t_cls[b, a], ck.temperature, ck.form)
                kd = _weighted_mean(per_anchor, weight, s_cls)
            else:
                selected = torch.ones_like(assign.fg_mask)  # (B, A)
                if ck.scope == "teacher_fg":
                    selected = assign.fg_mask | (t_cls.float().sigmoid().amax(-1) >= ck.fg_thr)
                per_anchor = class_kd(s_cls[selected], t_cls[selected], ck.temperature, ck.form)
                norm = max(int(assign.fg_mask.sum()), 1)
                kd = per_anchor.sum() / norm if per_anchor.numel() else s_cls.sum() * 0.0
            losses["loss_cls_kd"] = w.w_cls * ck.weight * decay * kd
        if spec.logit_kd.enabled:
            kd = hinton_kd(s_cls.flatten(0, 1), t_cls.flatten(0, 1), spec.logit_kd.tau)
            losses["loss_logit_kd"] = w.w_cls * spec.logit_kd.weight * decay * kd
        if spec.sad.enabled and spec.sad.kl_weight > 0:
            if targets is None or assigner is None:
                raise ValueError("SAD-KL (losses.sad.kl_weight > 0) needs targets= and assigner=")
            losses["loss_sad"] = (
                spec.sad.kl_weight * decay * self._sad_kl(student_out, teacher_out, targets, assigner)
            )
        if spec.feat.kind != "none":
            levels = len(self.adapters)
            if len(student_out.features) != levels or len(teacher_out.features) != levels:
                raise ValueError(
                    f"expected {len(self.adapters)} feature levels, got {len(student_out.features)} "
                    f"(student) and {len(teacher_out.features)} (teacher)"
                )
            s_feats = [adapter(f) for adapter, f in zip(self.adapters, student_out.features, strict=True)]
            t_feats = [f.detach() for f in teacher_out.features]
            kd = (
                fitnet_loss(s_feats, t_feats)
                if spec.feat.kind == "fitnet"
                else cwd_loss(s_feats, t_feats, spec.feat.tau)
            )
            losses["loss_feat"] = spec.feat.weight * decay * kd
        return losses

    def _positive_weights(
        self,
        teacher_out: DetectorOutput,
        assign: AssignResult,
        targets: Targets | None,
        assigner: RotatedTaskAlignedAssigner | None,
    ) -> Tensor:
        """The weight ``(N,)`` of each positive in AD, LD and class KD on the positives
        (``losses.weighting``)."""
        b, a = assign.fg_mask.nonzero(as_tuple=True)
        kind = self.spec.weighting
        if kind == "uniform":
            return torch.ones(b.numel(), device=assign.fg_mask.device)
        if kind == "teacher":
            if targets is None or assigner is None:
                raise ValueError("losses.weighting: teacher needs targets= and assigner=")
            return teacher_alignment(assigner, teacher_out, targets, assign)
        return assign.target_scores[b, a].sum(-1)

    def _sad_kl(
        self,
        student_out: DetectorOutput,
        teacher_out: DetectorOutput,
        targets: Targets,
        assigner: RotatedTaskAlignedAssigner,
    ) -> Tensor:
        pairs = assigner.candidates(student_out.anchor_points, targets)
        s_scores, s_boxes = decode_predictions(student_out)  # differentiable in scores and distances
        points = student_out.anchor_points
        with torch.no_grad():
            t_scores, t_boxes = decode_predictions(teacher_out)
            t_metric = assigner.pair_metric(t_scores, t_boxes, targets, pairs, points).metric
        s_metric = assigner.pair_metric(s_scores, s_boxes, targets, pairs, points).metric
        group = pairs.batch * targets.boxes.shape[1] + pairs.gt
        if group.numel() == 0:
            return student_out.cls_logits.sum() * 0.0
        return sad_kl(s_metric, t_metric, group, self.spec.sad.tau)
