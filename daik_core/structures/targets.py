"""Ground truth of a batch as the losses see it (the contract between the data loader and the losses)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Targets(NamedTuple):
    """Padded per-image ground truth. Shape letters: B batch, M max objects per image in the batch.

    ``boxes``  (B, M, 5) float32 obb (cx, cy, w, h, angle) in input-image pixels, the box convention of
               :mod:`daik_core.structures.boxes`;
    ``labels`` (B, M) int64 class indices (0 where padded);
    ``mask``   (B, M) bool, True for a real object, False for padding. M may be 0 (no objects in the batch).
    """

    boxes: Tensor
    labels: Tensor
    mask: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Targets:
        return Targets(
            self.boxes.to(device, non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
            self.mask.to(device, non_blocking=non_blocking),
        )
