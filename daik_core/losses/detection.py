"""The detection loss: decode -> assign (no grad) -> VariFocal + rotated IoU + DFL + CSL-BCE.

``losses, assign = DetectionLoss(num_classes, reg_max, assigner_spec, loss_spec)(outputs, targets)``;
``sum(losses.values())`` is the total to back-propagate, and ``assign`` (an
:class:`~daik_core.assigners.AssignResult`) is handed on to the distillation losses.

Shape letters: B images, A anchor points, C classes, M objects, R = reg_max + 1, K angle bins, N positives.

Steps:

1. **Decode** (no grad) the predicted boxes for the assigner with
   :func:`~daik_core.models.decode.decode_boxes`, the one decoding that inference, SAD's teacher ranking and
   the assigner share (distances ``dfl_expectation(box_logits) * stride``, angle = centre of the argmax CSL
   bin); scores = ``sigmoid(cls_logits)``.
2. **Assign** with the rotated task-aligned assigner (:mod:`daik_core.assigners.tal`): per anchor a GT or
   background and the normalised target ``t_hat`` on the GT's class (``target_scores (B, A, C)``).
3. **Losses**, each normalised by ``S = max(sum t_hat, 1)`` over the batch:

   * ``loss_cls``: VariFocal of every (anchor, class) against ``target_scores``, summed, / S.
   * on positives, each weighted by its ``t_hat`` (the sum over classes of its ``target_scores``), / S:

     - ``loss_box``: ``1 - IoU`` (exact rotated IoU, or probIoU when ``box_loss = "probiou"``) of the GT
       and the predicted box **decoded with the GT's angle**, ``distances_to_obb(dfl_expectation *
       stride, gt_angle, anchor)``: the box branch learns the extent and offset independently of the
       angle branch (whose argmax is not differentiable anyway); the angle is the CSL loss's job;
     - ``loss_dfl``: DFL of the four distances against ``obb_to_distances(gt, anchor) / stride``
       (the GT's frame; clamped to ``[0, reg_max - 0.01]``), mean over the four sides;
     - ``loss_angle``: CSL-BCE (summed over the K bins; ``angle_reduction: mean`` divides by K) against
       the circular Gaussian window (``csl_sigma`` bins) around the GT angle's bin. Long-side ambiguity:
       a square's long side (hence its angle) is defined only modulo 90 degrees; GTs with ``long / short
       <= csl_square_ar`` (default 1.0: exact squares) take the smaller loss of the targets at ``angle``
       and ``angle + pi/2``. Near-square GTs above that ratio keep their long-side angle, which may flip
       by 90 degrees under small label noise.

4. **Weights**: the returned terms are already multiplied by ``w_cls, w_box, w_dfl, w_angle``, so the
   total is the sum of the dict's values.

An image (or batch) without objects is valid: no positives, so ``loss_box = loss_dfl = loss_angle = 0``
(still attached to the graph) and ``loss_cls`` pushes every score down. ``S`` is per process (no
all-reduce under DDP).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from daik_core.assigners import AssignResult, RotatedTaskAlignedAssigner, build_assigner
from daik_core.assigners.tal import RankMetricFn
from daik_core.config import AssignerSpec, DetectionLossSpec
from daik_core.losses.functional import csl_bce, csl_targets, dfl_loss, varifocal_loss
from daik_core.models.decode import decode_boxes, dfl_expectation, distances_to_obb, obb_to_distances
from daik_core.models.detector import DetectorOutput
from daik_core.ops import probiou_aligned, rotated_iou_aligned
from daik_core.structures.targets import Targets

__all__ = ["DetectionLoss"]


class DetectionLoss(nn.Module):
    """Detection loss of the oriented detector (module docstring). Stateless across calls; the assigner
    (and its AAL table) is a submodule and follows ``.to(device)``."""

    def __init__(
        self,
        num_classes: int,
        reg_max: int,
        assigner: AssignerSpec | None = None,
        loss: DetectionLossSpec | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if reg_max < 1:
            raise ValueError(f"reg_max must be >= 1, got {reg_max}")
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.spec = loss if loss is not None else DetectionLossSpec()
        self.assigner: RotatedTaskAlignedAssigner = build_assigner(
            num_classes, assigner if assigner is not None else AssignerSpec()
        )

    def forward(
        self, outputs: DetectorOutput, targets: Targets, *, rank_metric: RankMetricFn | None = None
    ) -> tuple[dict[str, Tensor], AssignResult]:
        """``rank_metric``: optional SAD hook handed to the assigner (``sad_rank_metric`` of the teacher)."""
        cls_logits = outputs.cls_logits.float()  # (B, A, C)
        box_logits = outputs.box_logits.float()  # (B, A, 4, R)
        angle_logits = outputs.angle_logits.float()  # (B, A, K)
        self._check(cls_logits, box_logits, angle_logits, targets)
        num_bins = angle_logits.shape[-1]
        anchors = outputs.anchor_points.float()  # (A, 2) px
        strides = outputs.strides.float()  # (A,)
        pred_dist = dfl_expectation(box_logits)  # (B, A, 4) stride units, differentiable

        with torch.no_grad():
            pred_boxes = decode_boxes(box_logits, angle_logits, anchors, strides)  # (B, A, 5)
            assign = self.assigner.assign(
                cls_logits.sigmoid(), pred_boxes, anchors, targets, rank_metric=rank_metric
            )

        spec = self.spec
        target_scores = assign.target_scores  # (B, A, C)
        norm = target_scores.sum().clamp_min(1.0)
        labels_onehot = F.one_hot(assign.target_labels, self.num_classes + 1)[..., : self.num_classes]
        vfl = varifocal_loss(cls_logits, target_scores, labels_onehot, spec.vfl_alpha, spec.vfl_gamma)
        loss_cls = vfl.sum() / norm

        b, a = assign.fg_mask.nonzero(as_tuple=True)  # (N,) each
        weight = target_scores[b, a].sum(-1)  # (N,) t_hat
        gt = assign.target_boxes[b, a]  # (N, 5)
        anchor, stride = anchors[a], strides[a]  # (N, 2), (N,)
        dist = pred_dist[b, a]  # (N, 4) stride units

        # box: the predicted extent under the GT's angle
        pred_box = distances_to_obb(dist * stride[:, None], gt[:, 4], anchor)  # (N, 5)
        if spec.box_loss == "probiou":
            iou = probiou_aligned(pred_box, gt)
        else:
            iou = rotated_iou_aligned(pred_box, gt)
        loss_box = self._weighted(1.0 - iou, weight, norm, dist)

        # DFL: distances to the GT's sides in its own frame, in stride units
        target_dist = obb_to_distances(gt, anchor) / stride[:, None]  # (N, 4)
        loss_dfl = self._weighted(dfl_loss(box_logits[b, a], target_dist).mean(-1), weight, norm, dist)

        # angle: CSL-BCE, with the 90-degree ambiguity of (near-)squares
        logits = angle_logits[b, a]  # (N, K)
        loss_ang = csl_bce(logits, csl_targets(gt[:, 4], num_bins, spec.csl_sigma), spec.angle_reduction)
        square = gt[:, 2] <= spec.csl_square_ar * gt[:, 3]
        if bool(square.any()):
            turned = csl_bce(
                logits, csl_targets(gt[:, 4] + math.pi / 2, num_bins, spec.csl_sigma), spec.angle_reduction
            )
            loss_ang = torch.where(square, torch.minimum(loss_ang, turned), loss_ang)
        loss_angle = self._weighted(loss_ang, weight, norm, logits)

        losses = {
            "loss_cls": spec.w_cls * loss_cls,
            "loss_box": spec.w_box * loss_box,
            "loss_dfl": spec.w_dfl * loss_dfl,
            "loss_angle": spec.w_angle * loss_angle,
        }
        return losses, assign

    @staticmethod
    def _weighted(per_anchor: Tensor, weight: Tensor, norm: Tensor, anchor_input: Tensor) -> Tensor:
        """``sum(per_anchor * weight) / norm``; with no positives an exact 0 that stays attached to the
        graph through ``anchor_input`` (so every parameter gets a (zero) gradient)."""
        if per_anchor.numel() == 0:
            return anchor_input.sum() * 0.0
        return (per_anchor * weight).sum() / norm

    def _check(self, cls_logits: Tensor, box_logits: Tensor, angle_logits: Tensor, targets: Targets) -> None:
        if cls_logits.dim() != 3 or cls_logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"cls_logits must have shape (B, A, {self.num_classes}), got {tuple(cls_logits.shape)}"
            )
        bsz, num_anchors = cls_logits.shape[:2]
        r = self.reg_max + 1
        if box_logits.shape != (bsz, num_anchors, 4, r):
            raise ValueError(
                f"box_logits must have shape ({bsz}, {num_anchors}, 4, {r}) for reg_max={self.reg_max}, got "
                f"{tuple(box_logits.shape)}"
            )
        if angle_logits.dim() != 3 or angle_logits.shape[:2] != (bsz, num_anchors):
            raise ValueError(
                f"angle_logits must have shape ({bsz}, {num_anchors}, K), got {tuple(angle_logits.shape)}"
            )
        if targets.boxes.shape[0] != bsz:
            raise ValueError(f"targets hold {targets.boxes.shape[0]} images, the outputs {bsz}")
