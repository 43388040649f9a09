"""Detection losses (``DetectionLoss``) and their primitives (VariFocal, DFL, CSL). Every term is returned
under a ``loss_`` key; the trainer sums them. Distillation losses arrive with the distillation issue."""

from daik_core.losses.detection import DetectionLoss
from daik_core.losses.functional import csl_bce, csl_targets, dfl_loss, varifocal_loss

__all__ = ["DetectionLoss", "csl_bce", "csl_targets", "dfl_loss", "varifocal_loss"]
