"""DOTA Task1 evaluation: mAP (VOC07 11-point or all-point) at one IoU threshold and mAP50:95."""

from daik_core.eval.ap import METRICS, VOC07_RECALL_GRID, average_precision, precision_recall
from daik_core.eval.dota import (
    IOU_THRS_50_95,
    ClassCounts,
    DotaEvalWarning,
    DotaResult,
    PRCurve,
    evaluate_dota,
    evaluate_dota_dirs,
)

__all__ = [
    "IOU_THRS_50_95",
    "METRICS",
    "VOC07_RECALL_GRID",
    "ClassCounts",
    "DotaEvalWarning",
    "DotaResult",
    "PRCurve",
    "average_precision",
    "evaluate_dota",
    "evaluate_dota_dirs",
    "precision_recall",
]
