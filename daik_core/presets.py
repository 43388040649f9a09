"""Model presets n/s/m/l (YOLOv6 v3 sizes), as plain functions.

=====  =====  =====  ==============================  ==============
name   depth  width  stage block                     end of backbone
=====  =====  =====  ==============================  ==============
n      0.33   0.25   RepBlock (EfficientRep)         SimCSPSPPF
s      0.33   0.50   RepBlock (EfficientRep)         SimCSPSPPF
m      0.60   0.75   BepC3 (CSPBep), e = 2/3         SimSPPF
l      1.00   1.00   BepC3 (CSPBep), e = 1/2         SimSPPF
=====  =====  =====  ==============================  ==============

All use the BiFusion Rep-PAN neck and strides 8/16/32.
"""

from __future__ import annotations

from daik_core.models.detector import Detector, DetectorConfig

__all__ = ["PRESETS", "build_detector", "detector_config"]

PRESETS = ("n", "s", "m", "l")


def detector_config(preset: str, num_classes: int, reg_max: int = 16) -> DetectorConfig:
    """The :class:`DetectorConfig` of a preset; raises ValueError for an unknown preset name."""
    if preset == "n":
        return DetectorConfig(num_classes, 0.33, 0.25, block="rep", reg_max=reg_max, csp_sppf=True)
    if preset == "s":
        return DetectorConfig(num_classes, 0.33, 0.50, block="rep", reg_max=reg_max, csp_sppf=True)
    if preset == "m":
        return DetectorConfig(
            num_classes, 0.60, 0.75, block="csp", reg_max=reg_max, csp_e=2 / 3, csp_sppf=False
        )
    if preset == "l":
        return DetectorConfig(
            num_classes, 1.0, 1.0, block="csp", reg_max=reg_max, csp_e=1 / 2, csp_sppf=False
        )
    raise ValueError(f"unknown preset {preset!r}: expected one of {', '.join(PRESETS)}")


def build_detector(preset: str, num_classes: int, reg_max: int = 16) -> Detector:
    """A freshly initialised :class:`Detector` of a preset."""
    return Detector(detector_config(preset, num_classes, reg_max))
