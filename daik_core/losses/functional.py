"""Loss primitives of the detector, unreduced (callers weight and normalise): VariFocal, DFL, CSL.

Shape letters: N positive anchors, C classes, R = reg_max + 1 DFL bins, K angle bins.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from daik_core.models.decode import angle_to_csl_bin
from daik_core.structures.boxes import ANGLE_BINS

__all__ = ["csl_bce", "csl_targets", "dfl_loss", "varifocal_loss"]


def varifocal_loss(
    pred_logits: Tensor,
    target_scores: Tensor,
    labels_onehot: Tensor,
    alpha: float = 0.75,
    gamma: float = 2.0,
) -> Tensor:
    """VariFocal loss (Zhang et al., 2021), elementwise, same shape as ``pred_logits (..., C)``.

    ``BCE_with_logits(x, q) * w`` with ``w = alpha * p^gamma * (1 - y) + q * y``, where ``p = sigmoid(x)``,
    ``q = target_scores`` (the IoU-aware target, 0 for negatives) and ``y = labels_onehot`` (1 at the
    positive (anchor, class) pairs, 0 elsewhere; float or bool). Negatives are down-weighted focal-style;
    a positive is weighted by its own target, so a positive with ``q = 0`` contributes nothing. The weight
    is detached (PP-YOLOE's form): it scales the per-element loss, it is not itself optimised.
    """
    if pred_logits.shape != target_scores.shape or pred_logits.shape != labels_onehot.shape:
        raise ValueError(
            "pred_logits, target_scores and labels_onehot must have one shape, got "
            f"{tuple(pred_logits.shape)}, {tuple(target_scores.shape)}, {tuple(labels_onehot.shape)}"
        )
    logits = pred_logits.float()
    q = target_scores.to(logits.dtype)
    y = labels_onehot.to(logits.dtype)
    with torch.no_grad():
        weight = alpha * logits.sigmoid().pow(gamma) * (1 - y) + q * y
    return F.binary_cross_entropy_with_logits(logits, q, reduction="none") * weight


def dfl_loss(box_logits: Tensor, target_dist: Tensor) -> Tensor:
    """Distribution focal loss (GFL), ``(N, 4)``: for logits ``box_logits (N, 4, R)`` and target distances
    ``target_dist (N, 4)`` in bins (stride units), the cross-entropy to the two bins around the target
    with linear-interpolation weights: target ``2.3`` -> ``0.7 * CE(bin 2) + 0.3 * CE(bin 3)``.

    Targets are clamped to ``[0, R - 1 - 0.01]`` (a distance beyond the last bin is learnt as the last
    bin; the 0.01 keeps the right neighbour inside the range).
    """
    if box_logits.dim() != 3 or target_dist.shape != box_logits.shape[:2]:
        raise ValueError(
            f"box_logits must be (N, 4, R) and target_dist (N, 4), got {tuple(box_logits.shape)} and "
            f"{tuple(target_dist.shape)}"
        )
    r = box_logits.shape[-1]
    target = target_dist.float().clamp(0.0, r - 1 - 0.01)
    left = target.floor().long()  # (N, 4)
    w_right = target - left
    w_left = 1 - w_right
    logp = F.log_softmax(box_logits.float(), dim=-1)  # (N, 4, R)
    lp_left = logp.gather(-1, left.unsqueeze(-1)).squeeze(-1)
    lp_right = logp.gather(-1, (left + 1).unsqueeze(-1)).squeeze(-1)
    return -(w_left * lp_left + w_right * lp_right)


def csl_targets(angles: Tensor, bins: int = ANGLE_BINS, sigma: float = 6.0) -> Tensor:
    """Circular Smooth Label targets ``(N, K)`` of angles ``(N,)`` (radians): a Gaussian window of width
    ``sigma`` bins centred on ``angle_to_csl_bin(angle)``, over the *circular* bin distance (bin 0 and
    bin K-1 are neighbours, as 0 and pi are the same orientation); peak 1 at the centre bin.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    centre = angle_to_csl_bin(angles, bins)  # (N,)
    k = torch.arange(bins, device=angles.device)
    d = (k[None, :] - centre[:, None]).abs()  # (N, K)
    d = torch.minimum(d, bins - d).to(torch.float32)
    return torch.exp(-d.square() / (2 * sigma * sigma))


def csl_bce(angle_logits: Tensor, csl_target: Tensor, reduction: Literal["sum", "mean"] = "sum") -> Tensor:
    """BCE with logits of angle logits ``(N, K)`` against CSL targets ``(N, K)``, reduced over the K bins:
    ``(N,)``.

    ``reduction="sum"`` (the method's reference form, and the default) adds the K per-bin terms;
    ``"mean"`` divides that sum by K, which makes the angle term K (180) times weaker for the same
    ``w_angle``. Example: logits all 0 against any target give ``K * log 2`` (sum) or ``log 2`` (mean).
    """
    if angle_logits.shape != csl_target.shape:
        raise ValueError(
            f"angle_logits and csl_target must have one shape, got {tuple(angle_logits.shape)} and "
            f"{tuple(csl_target.shape)}"
        )
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    logits = angle_logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, csl_target.to(logits.dtype), reduction="none")
    return bce.sum(-1) if reduction == "sum" else bce.mean(-1)
