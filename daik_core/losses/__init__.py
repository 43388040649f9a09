"""Detection losses (``DetectionLoss``), their primitives (VariFocal, DFL, CSL) and the distillation losses
(``DistillationLoss``: AD, LD, class KD, logit KD, SAD-KL, FitNet / CWD). Every term is returned under a
``loss_`` key; the trainer sums them."""

from daik_core.losses.detection import DetectionLoss
from daik_core.losses.distillation import (
    DistillationLoss,
    angle_kd,
    class_kd,
    cosine_decay,
    cwd_loss,
    decode_predictions,
    fitnet_loss,
    hinton_kd,
    localization_kd,
    sad_kl,
    sad_rank_metric,
    teacher_alignment,
)
from daik_core.losses.functional import csl_bce, csl_targets, dfl_loss, varifocal_loss

__all__ = [
    "DetectionLoss",
    "DistillationLoss",
    "angle_kd",
    "class_kd",
    "cosine_decay",
    "csl_bce",
    "csl_targets",
    "cwd_loss",
    "decode_predictions",
    "dfl_loss",
    "fitnet_loss",
    "hinton_kd",
    "localization_kd",
    "sad_kl",
    "sad_rank_metric",
    "teacher_alignment",
    "varifocal_loss",
]
