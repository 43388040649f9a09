"""The YOLOv6-v3-style oriented detector: blocks, backbone, neck, decoupled head, decoding."""

from daik_core.models.decode import (
    angle_to_csl_bin,
    csl_bin_to_angle,
    decode_boxes,
    dfl_expectation,
    distances_to_obb,
    obb_to_distances,
)
from daik_core.models.detector import (
    Detections,
    Detector,
    DetectorConfig,
    DetectorOutput,
    postprocess,
)
from daik_core.models.head import make_anchor_points
from daik_core.models.info import ModelInfo, model_info

__all__ = [
    "Detections",
    "Detector",
    "DetectorConfig",
    "DetectorOutput",
    "ModelInfo",
    "angle_to_csl_bin",
    "csl_bin_to_angle",
    "decode_boxes",
    "dfl_expectation",
    "distances_to_obb",
    "make_anchor_points",
    "model_info",
    "obb_to_distances",
    "postprocess",
]
