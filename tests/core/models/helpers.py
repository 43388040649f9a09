"""Shared helpers of the model tests."""

from __future__ import annotations

import torch
from torch import nn

from daik_core.models import Detector


def randomize_(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm random running statistics and affine parameters (moderate, so that
    activations stay O(1) through the deepest preset) and the detector's prediction convs larger random
    weights, so that fused-vs-unfused comparisons can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 0.6 + 0.4)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
        if isinstance(model, Detector):
            for level in model.head.levels:
                for conv in (level.cls_pred, level.box_pred, level.angle_pred):
                    conv.weight.normal_(0.0, 0.1, generator=g)
