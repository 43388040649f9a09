"""Rotated-box ops: exact IoU of rotated boxes and quads (differentiable), probIoU, rotated NMS.

Boxes follow :mod:`daik_core.structures.boxes`: ``obb`` = ``(cx, cy, w, h, angle)`` in radians, ``poly`` =
8 DOTA coordinates. Every op is vectorised, device-agnostic, and works in float32 and float64.
"""

from daik_core.ops.iou import (
    poly_iou,
    poly_iou_aligned,
    rotated_iou,
    rotated_iou_aligned,
    rotated_iou_loss,
)
from daik_core.ops.nms import nms_poly, nms_rotated
from daik_core.ops.probiou import probiou, probiou_aligned

__all__ = [
    "nms_poly",
    "nms_rotated",
    "poly_iou",
    "poly_iou_aligned",
    "probiou",
    "probiou_aligned",
    "rotated_iou",
    "rotated_iou_aligned",
    "rotated_iou_loss",
]
