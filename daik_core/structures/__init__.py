"""Rotated boxes: the convention (see :mod:`daik_core.structures.boxes`) and conversions."""

from daik_core.structures.boxes import (
    ANGLE_BINS,
    angle_from_deg,
    angle_to_deg,
    normalize_angle,
    normalize_obb,
    obb_to_hbb,
    obb_to_poly,
    poly_area,
    poly_to_hbb,
    poly_to_obb,
)

__all__ = [
    "ANGLE_BINS",
    "angle_from_deg",
    "angle_to_deg",
    "normalize_angle",
    "normalize_obb",
    "obb_to_hbb",
    "obb_to_poly",
    "poly_area",
    "poly_to_hbb",
    "poly_to_obb",
]
