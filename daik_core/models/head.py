"""Efficient decoupled head (YOLOv6 v3) with an extra CSL angle branch, and the anchor points.

Per level (P3, P4, P5; ``c`` channels)::

    stem      1x1 ConvBNAct(SiLU)                       shared by the three branches
    cls       3x3 ConvBNAct(SiLU) -> 1x1 conv -> C       classification logits (sigmoid later)
    box       3x3 ConvBNAct(SiLU) -> 1x1 conv -> 4 * R   DFL logits of (l, t, r, b), distance-major
    angle     3x3 ConvBNAct(SiLU) -> 1x1 conv -> K       CSL logits of the long side's angle

Initialisation: the three prediction convs get weights ~ N(0, 0.01); the classification and angle biases
start at the prior ``-log((1 - p) / p)`` with ``p = 0.01`` (every sigmoid starts near 0.01, so the many
background anchors do not swamp the first steps, RetinaNet/YOLOv6); the box bias starts at 0 (a nearly
uniform DFL distribution, expected distance ``reg_max / 2`` strides).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from daik_core.models.blocks import ConvBNAct, fuse_modules

__all__ = ["PRIOR_PROB", "DecoupledHead", "make_anchor_points"]

PRIOR_PROB = 0.01


def _prior_bias(p: float) -> float:
    return -math.log((1.0 - p) / p)


class _LevelHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, reg_bins: int, angle_bins: int) -> None:
        super().__init__()
        self.stem = ConvBNAct(channels, channels, 1, act="silu")
        self.cls_conv = ConvBNAct(channels, channels, 3, act="silu")
        self.box_conv = ConvBNAct(channels, channels, 3, act="silu")
        self.angle_conv = ConvBNAct(channels, channels, 3, act="silu")
        self.cls_pred = nn.Conv2d(channels, num_classes, 1)
        self.box_pred = nn.Conv2d(channels, 4 * reg_bins, 1)
        self.angle_pred = nn.Conv2d(channels, angle_bins, 1)
        prior = _prior_bias(PRIOR_PROB)
        for conv, bias in ((self.cls_pred, prior), (self.box_pred, 0.0), (self.angle_pred, prior)):
            nn.init.normal_(conv.weight, std=0.01)
            assert conv.bias is not None
            nn.init.constant_(conv.bias, bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.stem(x)
        return (
            self.cls_pred(self.cls_conv(x)),  # (B, C, H, W)
            self.box_pred(self.box_conv(x)),  # (B, 4 * R, H, W)
            self.angle_pred(self.angle_conv(x)),  # (B, K, H, W)
        )


class DecoupledHead(nn.Module):
    """``forward([P3, P4, P5]) -> (cls (B, A, C), box (B, A, 4, R), angle (B, A, K))``.

    ``A = sum over levels of H_l * W_l``; anchors are ordered level by level (P3, P4, P5), then row-major
    (y, then x) inside a level -- the order of :func:`make_anchor_points`.
    """

    def __init__(
        self, in_channels: Sequence[int], num_classes: int, reg_max: int = 16, angle_bins: int = 180
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.reg_bins = reg_max + 1
        self.angle_bins = angle_bins
        self.levels = nn.ModuleList(
            _LevelHead(c, num_classes, self.reg_bins, angle_bins) for c in in_channels
        )

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        if len(feats) != len(self.levels):
            raise ValueError(f"head expects {len(self.levels)} feature maps, got {len(feats)}")
        cls_out, box_out, angle_out = [], [], []
        for x, level in zip(feats, self.levels, strict=True):
            cls, box, angle = level(x)
            b = cls.shape[0]
            cls_out.append(cls.flatten(2).transpose(1, 2))  # (B, HW, C)
            # (B, 4R, H, W) -> (B, 4, R, HW) -> (B, HW, 4, R)
            box_out.append(box.reshape(b, 4, self.reg_bins, -1).permute(0, 3, 1, 2))
            angle_out.append(angle.flatten(2).transpose(1, 2))  # (B, HW, K)
        return torch.cat(cls_out, 1), torch.cat(box_out, 1), torch.cat(angle_out, 1)

    def fuse(self) -> None:
        fuse_modules(self)


def make_anchor_points(feats: Sequence[Tensor], strides: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Anchor points ``(A, 2)`` (x, y) at the pixel centres ``(i + 0.5) * stride`` of every grid cell, and
    their strides ``(A,)``, float32 on the features' device, levels concatenated in the given order.
    """
    if len(feats) != len(strides):
        raise ValueError(f"{len(feats)} feature maps but {len(strides)} strides")
    points, point_strides = [], []
    for f, s in zip(feats, strides, strict=True):
        h, w = f.shape[-2], f.shape[-1]
        ys = (torch.arange(h, device=f.device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(w, device=f.device, dtype=torch.float32) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        p = torch.stack((xx, yy), dim=-1).reshape(-1, 2)  # (HW, 2)
        points.append(p)
        point_strides.append(torch.full_like(p[:, 0], float(s)))
    return torch.cat(points), torch.cat(point_strides)
