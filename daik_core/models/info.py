"""Parameter and FLOP counts of a model."""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["ModelInfo", "model_info"]


class ModelInfo(TypedDict):
    params: int
    gflops: float


def model_info(model: nn.Module, imgsz: int | tuple[int, int] = 640, in_channels: int = 3) -> ModelInfo:
    """Parameter count and GFLOPs of one forward pass on a ``(1, in_channels, H, W)`` input.

    ``imgsz`` is ``H = W`` or ``(H, W)``. GFLOPs are as counted by
    :class:`torch.utils.flop_counter.FlopCounterMode`: ``2 x`` the multiply-accumulates of convolutions,
    transposed convolutions and matrix products, divided by 1e9 (the YOLOv6 / Ultralytics convention;
    BatchNorm, activations and pooling are not counted). The model runs once in ``eval()`` mode on zeros,
    on its own device and dtype, and its training mode is restored afterwards.
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    params = sum(p.numel() for p in model.parameters())
    first = next(model.parameters())
    x = torch.zeros(1, in_channels, h, w, device=first.device, dtype=first.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return ModelInfo(params=params, gflops=counter.get_total_flops() / 1e9)
