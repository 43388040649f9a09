"""Label assignment: the rotated task-aligned assigner (TAL) and DAIK's AAL table.

``assigner.assign(pred_scores, pred_boxes, anchor_points, targets) -> AssignResult`` under no_grad; the
losses consume the result. Anchor points come with the detector's output (``DetectorOutput.anchor_points``).
"""

from daik_core.assigners.aal import AALMode, AALTable, aal_iou_grid, fold_angle_difference
from daik_core.assigners.tal import (
    AAL_AR_MAX,
    AssignResult,
    CandidatePairs,
    OverlapKind,
    PairMetric,
    RotatedTaskAlignedAssigner,
    build_assigner,
    candidate_pairs,
    extent_iou_aligned,
    hbb_iou_aligned,
    job_assigner_spec,
    normalized_alignment,
    pair_overlap,
    points_in_obb,
)

__all__ = [
    "AAL_AR_MAX",
    "AALMode",
    "AALTable",
    "AssignResult",
    "CandidatePairs",
    "OverlapKind",
    "PairMetric",
    "RotatedTaskAlignedAssigner",
    "aal_iou_grid",
    "build_assigner",
    "candidate_pairs",
    "extent_iou_aligned",
    "fold_angle_difference",
    "hbb_iou_aligned",
    "job_assigner_spec",
    "normalized_alignment",
    "pair_overlap",
    "points_in_obb",
]
