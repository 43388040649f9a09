"""Backbones: EfficientRep (n/s, RepVGG stages) and CSPBep (m/l, BepC3 stages), as in YOLOv6 v3.

Both are the same five-stage layout and differ only in the stage block (``block="rep"`` or ``"csp"``)::

    stem       RepVGG 3x3 s2                 ch[0]   stride 2
    stage 2    RepVGG 3x3 s2 + stage(n[1])   ch[1]   stride 4    -> C2
    stage 3    RepVGG 3x3 s2 + stage(n[2])   ch[2]   stride 8    -> C3
    stage 4    RepVGG 3x3 s2 + stage(n[3])   ch[3]   stride 16   -> C4
    stage 5    RepVGG 3x3 s2 + stage(n[4])   ch[4]   stride 32
               + SimCSPSPPF (n/s) or SimSPPF (m/l)               -> C5

C2 is returned as well because the BiFPAN neck fuses it into P3 (YOLOv6 v3's ``fuse_P2``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from daik_core.models.blocks import RepVGGBlock, SimCSPSPPF, SimSPPF, fuse_modules, make_stage

__all__ = ["Backbone"]


class Backbone(nn.Module):
    """EfficientRep (``block="rep"``) or CSPBepBackbone (``block="csp"``).

    ``forward((B, 3, H, W)) -> (C2, C3, C4, C5)`` with shapes ``(B, channels[i], H / s, W / s)`` for
    ``s = 4, 8, 16, 32`` and ``i = 1, 2, 3, 4``.
    """

    def __init__(
        self,
        channels: Sequence[int],
        repeats: Sequence[int],
        block: str = "rep",
        csp_e: float = 0.5,
        csp_sppf: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(channels) != 5 or len(repeats) != 5:
            raise ValueError(f"backbone needs 5 channels and 5 repeats, got {channels} and {repeats}")
        ch, n = list(channels), list(repeats)
        self.stem = RepVGGBlock(in_channels, ch[0], stride=2)
        self.stage2 = nn.Sequential(
            RepVGGBlock(ch[0], ch[1], 2), make_stage(block, ch[1], ch[1], n[1], csp_e)
        )
        self.stage3 = nn.Sequential(
            RepVGGBlock(ch[1], ch[2], 2), make_stage(block, ch[2], ch[2], n[2], csp_e)
        )
        self.stage4 = nn.Sequential(
            RepVGGBlock(ch[2], ch[3], 2), make_stage(block, ch[3], ch[3], n[3], csp_e)
        )
        sppf: nn.Module = SimCSPSPPF(ch[4], ch[4]) if csp_sppf else SimSPPF(ch[4], ch[4])
        self.stage5 = nn.Sequential(
            RepVGGBlock(ch[3], ch[4], 2), make_stage(block, ch[4], ch[4], n[4], csp_e), sppf
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c2 = self.stage2(self.stem(x))
        c3 = self.stage3(c2)
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        return c2, c3, c4, c5

    def fuse(self) -> None:
        fuse_modules(self)
