"""The oriented one-stage detector: Backbone -> RepPAN -> DecoupledHead, built from a typed config.

``outputs = model(images)`` returns raw logits and the anchor geometry (:class:`DetectorOutput`); the
model never sees targets (assigners match, losses judge). ``model.predict(images)`` decodes, thresholds
and runs class-aware rotated NMS for inference.

Sizes follow YOLOv6 v3: base channels ``(64, 128, 256, 512, 1024)`` (backbone) and
``(256, 128, 128, 256, 256, 512)`` (neck), base repeats ``(1, 6, 12, 18, 6)`` and ``(12, 12, 12, 12)``,
scaled by ``width_multiple`` (rounded up to a multiple of 8) and ``depth_multiple``
(``max(round(n * d), 1)`` for ``n > 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from daik_core.models.backbone import Backbone
from daik_core.models.blocks import fuse_modules
from daik_core.models.decode import decode_boxes
from daik_core.models.head import DecoupledHead, make_anchor_points
from daik_core.models.neck import RepPAN
from daik_core.ops import nms_rotated
from daik_core.structures.boxes import ANGLE_BINS

__all__ = [
    "MAX_STRIDE",
    "Detections",
    "Detector",
    "DetectorConfig",
    "DetectorOutput",
    "postprocess",
    "top_candidates",
]

#: Input height and width must be multiples of this (the coarsest stride).
MAX_STRIDE = 32

BACKBONE_CHANNELS = (64, 128, 256, 512, 1024)
BACKBONE_REPEATS = (1, 6, 12, 18, 6)
NECK_CHANNELS = (256, 128, 128, 256, 256, 512)
NECK_REPEATS = (12, 12, 12, 12)


def scale_width(channels: int, width_multiple: float, divisor: int = 8) -> int:
    """``channels * width_multiple`` rounded up to a multiple of ``divisor`` (YOLOv6's make_divisible)."""
    return math.ceil(channels * width_multiple / divisor) * divisor


def scale_depth(repeats: int, depth_multiple: float) -> int:
    """``max(round(repeats * depth_multiple), 1)``, except that a single block stays single."""
    return max(round(repeats * depth_multiple), 1) if repeats > 1 else repeats


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that defines the detector's architecture. Presets live in :mod:`daik_core.presets`.

    * ``block``: stage block, ``"rep"`` (RepBlock: EfficientRep + Rep-PAN, n/s) or ``"csp"`` (BepC3:
      CSPBep backbone and neck, m/l) with hidden width ``csp_e * c_out``.
    * ``reg_max``: DFL bins per distance are ``R = reg_max + 1``; distances reach ``reg_max`` strides.
    * ``angle_bins``: CSL bins ``K`` over ``[0, pi)``.
    * ``csp_sppf``: SimCSPSPPF (n/s) or SimSPPF (m/l) at the end of the backbone.
    * ``bifusion``: YOLOv6 v3 BiFusion top-down path (default) or plain Rep-PAN.
    """

    num_classes: int
    depth_multiple: float
    width_multiple: float
    block: Literal["rep", "csp"] = "rep"
    reg_max: int = 16
    angle_bins: int = ANGLE_BINS
    strides: tuple[int, ...] = (8, 16, 32)
    csp_e: float = 0.5
    csp_sppf: bool = True
    bifusion: bool = True
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if not self.depth_multiple > 0 or not self.width_multiple > 0:
            raise ValueError(
                f"depth_multiple and width_multiple must be > 0, got {self.depth_multiple}, "
                f"{self.width_multiple}"
            )
        if self.block not in ("rep", "csp"):
            raise ValueError(f"block must be 'rep' or 'csp', got {self.block!r}")
        if self.reg_max < 1:
            raise ValueError(f"reg_max must be >= 1 (DFL needs at least 2 bins), got {self.reg_max}")
        if self.angle_bins < 1:
            raise ValueError(f"angle_bins must be >= 1, got {self.angle_bins}")
        if tuple(self.strides) != (8, 16, 32):
            raise ValueError(f"the architecture has strides (8, 16, 32), got {self.strides}")
        if not 0.0 < self.csp_e <= 1.0:
            raise ValueError(f"csp_e must be in (0, 1], got {self.csp_e}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")

    @property
    def backbone_channels(self) -> tuple[int, ...]:
        return tuple(scale_width(c, self.width_multiple) for c in BACKBONE_CHANNELS)

    @property
    def neck_channels(self) -> tuple[int, ...]:
        return tuple(scale_width(c, self.width_multiple) for c in NECK_CHANNELS)

    @property
    def backbone_repeats(self) -> tuple[int, ...]:
        return tuple(scale_depth(n, self.depth_multiple) for n in BACKBONE_REPEATS)

    @property
    def neck_repeats(self) -> tuple[int, ...]:
        return tuple(scale_depth(n, self.depth_multiple) for n in NECK_REPEATS)

    @property
    def head_channels(self) -> tuple[int, int, int]:
        """Channels of P3, P4, P5."""
        cn = self.neck_channels
        return cn[1], cn[3], cn[5]


@dataclass
class DetectorOutput:
    """What ``Detector.forward`` returns (raw, undecoded). Shape letters: B images, A anchor points over
    all levels (``sum_l (H / s_l) * (W / s_l)``), C classes, R = reg_max + 1, K angle bins.

    * ``cls_logits (B, A, C)``: classification logits (apply a sigmoid for scores).
    * ``box_logits (B, A, 4, R)``: DFL logits of the distances (l, t, r, b) from the anchor point to the
      sides of the *un-rotated* box in the object's own frame, in units of the anchor's stride.
    * ``angle_logits (B, A, K)``: CSL logits; bin ``k`` covers ``[k, k + 1) * 180 / K`` degrees of the long
      side's angle (see :mod:`daik_core.models.decode`).
    * ``anchor_points (A, 2)``: float32 pixel centres ``((i + 0.5) * s, (j + 0.5) * s)`` of every grid
      cell, levels concatenated P3, P4, P5, row-major inside a level.
    * ``strides (A,)``: float32 stride of each anchor point.
    * ``features``: the neck outputs ``[P3, P4, P5]``, ``(B, C_l, H / s_l, W / s_l)``, for feature
      distillation.
    """

    cls_logits: Tensor
    box_logits: Tensor
    angle_logits: Tensor
    anchor_points: Tensor
    strides: Tensor
    features: list[Tensor]


class Detections(NamedTuple):
    """Detections of one image: ``boxes (N, 5)`` obb, ``scores (N,)`` in [0, 1], ``labels (N,)`` int64;
    sorted by descending score."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


class Detector(nn.Module):
    """YOLOv6-v3-style oriented detector. ``forward(images (B, 3, H, W)) -> DetectorOutput`` for any H, W
    that are multiples of 32. Stateless across calls; runs on whatever device it is moved to."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Backbone(
            config.backbone_channels,
            config.backbone_repeats,
            block=config.block,
            csp_e=config.csp_e,
            csp_sppf=config.csp_sppf,
            in_channels=config.in_channels,
        )
        self.neck = RepPAN(
            config.backbone_channels,
            config.neck_channels,
            config.neck_repeats,
            block=config.block,
            csp_e=config.csp_e,
            bifusion=config.bifusion,
        )
        self.head = DecoupledHead(
            config.head_channels, config.num_classes, reg_max=config.reg_max, angle_bins=config.angle_bins
        )

    def forward(self, images: Tensor) -> DetectorOutput:
        if images.dim() != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(
                f"images must have shape (B, {self.config.in_channels}, H, W), got {tuple(images.shape)}"
            )
        h, w = images.shape[-2], images.shape[-1]
        if h % MAX_STRIDE or w % MAX_STRIDE:
            raise ValueError(f"image height and width must be multiples of {MAX_STRIDE}, got {h}x{w}")
        feats = self.neck(self.backbone(images))  # [P3, P4, P5]
        cls_logits, box_logits, angle_logits = self.head(feats)
        anchor_points, strides = make_anchor_points(feats, self.config.strides)
        return DetectorOutput(cls_logits, box_logits, angle_logits, anchor_points, strides, feats)

    def fuse(self) -> Detector:
        """Re-parameterise every RepVGG block and fold every BatchNorm, in place, for inference.

        Call it in ``eval()`` mode with final BN statistics; the fused model's outputs equal the unfused
        model's in eval mode (up to float rounding). Idempotent. Returns ``self``.
        """
        fuse_modules(self)
        return self

    @torch.no_grad()
    def predict(
        self,
        images: Tensor,
        conf_thr: float = 0.001,
        iou_thr: float = 0.1,
        max_det: int = 2000,
        pre_nms_topk: int = 5000,
    ) -> list[Detections]:
        """Detections per image (see :func:`postprocess`). Put the model in ``eval()`` mode first."""
        return postprocess(self(images), conf_thr, iou_thr, max_det, pre_nms_topk)


def top_candidates(scores: Tensor, k: int, conf_thr: float | Tensor) -> tuple[Tensor, Tensor]:
    """The ``k`` best of flat ``scores (N,)`` that are above ``conf_thr``: ``(scores (M,), indices (M,))`` by
    descending score, equal scores by ascending index. That order is canonical (ONNX's TopK's), so that
    the exported end-to-end graph visits, and NMS keeps, the same candidates as torch when scores tie."""
    top, idx = scores.topk(min(k, scores.numel()))
    if not torch.jit.is_tracing():  # torch's topk does not promise an order for ties: impose ONNX's
        by_index = idx.argsort()
        top, idx = top[by_index], idx[by_index]
        order = top.argsort(descending=True, stable=True)
        top, idx = top[order], idx[order]
    keep = (top > conf_thr).nonzero().squeeze(1)
    return top[keep], idx[keep]


def postprocess(
    outputs: DetectorOutput,
    conf_thr: float = 0.001,
    iou_thr: float = 0.1,
    max_det: int = 2000,
    pre_nms_topk: int = 5000,
) -> list[Detections]:
    """Decode, threshold and NMS the outputs of a batch, one :class:`Detections` per image.

    Every (anchor, class) pair is a candidate (multi-label, as YOLOv6's evaluation): its score is the
    class sigmoid. Per image the ``pre_nms_topk`` best candidates with score > ``conf_thr`` go to
    class-aware rotated NMS at ``iou_thr`` (default 0.1: objects of one class in aerial images hardly
    overlap; DOTA practice), and the ``max_det`` best survivors are kept. ``pre_nms_topk`` bounds the NMS
    cost whatever the threshold.
    """
    boxes = decode_boxes(
        outputs.box_logits, outputs.angle_logits, outputs.anchor_points, outputs.strides
    )  # (B, A, 5)
    scores = outputs.cls_logits.float().sigmoid()  # (B, A, C)
    num_classes = scores.shape[-1]
    results = []
    for img_boxes, img_scores in zip(boxes, scores, strict=True):
        flat = img_scores.reshape(-1)  # (A * C,), anchor-major
        top_scores, top_idx = top_candidates(flat, pre_nms_topk, conf_thr)
        anchor_idx = torch.div(top_idx, num_classes, rounding_mode="floor")
        labels = top_idx % num_classes
        cand = img_boxes[anchor_idx]
        kept = nms_rotated(cand, top_scores, iou_thr, labels)[:max_det]  # by descending score
        results.append(Detections(cand[kept], top_scores[kept], labels[kept]))
    return results
