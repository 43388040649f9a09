"""Rep-PAN neck, with YOLOv6 v3's BiFusion top-down path (``bifusion=True``, the default) or the plain
Rep-PAN top-down path (``bifusion=False``).

Channel names follow YOLOv6's ``channels_list``: backbone ``cb = (c1, c2, c3, c4, c5)`` (only c2..c5
are used) and neck ``cn = (r0, r1, d2, n3, d1, n4)``::

    top-down    F4 = reduce0(C5)                               r0   stride 32
                T4 = stage(fuse(F4 up, C4 [, C3 down]))        r0   stride 16
                F3 = reduce1(T4)                               r1   stride 16
                P3 = stage(fuse(F3 up, C3 [, C2 down]))        r1   stride 8    -> P3
    bottom-up   P4 = stage(cat(down(P3), F3))                  n3   stride 16   -> P4
                P5 = stage(cat(down(P4), F4))                  n4   stride 32   -> P5

"up" is a 2x2 stride-2 transposed conv. With ``bifusion`` the fuse is BiFusion: 1x1 on the same-level
map, 1x1 + 3x3 stride-2 on the finer map, concatenated with the upsampled map and mixed by a 1x1;
without it, the fuse is ``cat(up, same-level map)`` and the stage takes the wider input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from daik_core.models.blocks import ConvBNAct, fuse_modules, make_stage

__all__ = ["BiFusion", "RepPAN"]


def _upsample(channels: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2, bias=True)


class BiFusion(nn.Module):
    """Fuses a coarse map (upsampled), a same-level map and a finer map (downsampled) into ``c_out``.

    ``forward(coarse (B, c_out, H/2, W/2), same (B, c_same, H, W), fine (B, c_fine, 2H, 2W))``
    ``-> (B, c_out, H, W)``.
    """

    def __init__(self, c_same: int, c_fine: int, c_out: int) -> None:
        super().__init__()
        self.up = _upsample(c_out)
        self.cv_same = ConvBNAct(c_same, c_out, 1)
        self.cv_fine = ConvBNAct(c_fine, c_out, 1)
        self.down = ConvBNAct(c_out, c_out, 3, stride=2)
        self.cv_out = ConvBNAct(3 * c_out, c_out, 1)

    def forward(self, coarse: Tensor, same: Tensor, fine: Tensor) -> Tensor:
        parts = (self.up(coarse), self.cv_same(same), self.down(self.cv_fine(fine)))
        return self.cv_out(torch.cat(parts, dim=1))


class RepPAN(nn.Module):
    """``forward((C2, C3, C4, C5)) -> [P3, P4, P5]`` with channels ``(r1, n3, n4)``, strides 8, 16, 32."""

    def __init__(
        self,
        backbone_channels: Sequence[int],
        neck_channels: Sequence[int],
        repeats: Sequence[int],
        block: str = "rep",
        csp_e: float = 0.5,
        bifusion: bool = True,
    ) -> None:
        super().__init__()
        if len(backbone_channels) != 5 or len(neck_channels) != 6 or len(repeats) != 4:
            raise ValueError(
                "neck needs 5 backbone channels, 6 neck channels and 4 repeats, got "
                f"{backbone_channels}, {neck_channels} and {repeats}"
            )
        _, c2, c3, c4, c5 = backbone_channels
        r0, r1, d2, n3, d1, n4 = neck_channels
        self.bifusion = bifusion

        self.reduce0 = ConvBNAct(c5, r0, 1)
        self.reduce1 = ConvBNAct(r0, r1, 1)
        self.fuse4: nn.Module
        self.fuse3: nn.Module
        if bifusion:
            self.fuse4 = BiFusion(c4, c3, r0)
            self.fuse3 = BiFusion(c3, c2, r1)
            self.top4 = make_stage(block, r0, r0, repeats[0], csp_e)
            self.top3 = make_stage(block, r1, r1, repeats[1], csp_e)
        else:
            self.fuse4 = _upsample(r0)
            self.fuse3 = _upsample(r1)
            self.top4 = make_stage(block, c4 + r0, r0, repeats[0], csp_e)
            self.top3 = make_stage(block, c3 + r1, r1, repeats[1], csp_e)
        self.down3 = ConvBNAct(r1, d2, 3, stride=2)
        self.bottom4 = make_stage(block, d2 + r1, n3, repeats[2], csp_e)
        self.down4 = ConvBNAct(n3, d1, 3, stride=2)
        self.bottom5 = make_stage(block, d1 + r0, n4, repeats[3], csp_e)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        c2, c3, c4, c5 = feats
        f4 = self.reduce0(c5)
        if self.bifusion:
            t4 = self.top4(self.fuse4(f4, c4, c3))
        else:
            t4 = self.top4(torch.cat((self.fuse4(f4), c4), dim=1))
        f3 = self.reduce1(t4)
        if self.bifusion:
            p3 = self.top3(self.fuse3(f3, c3, c2))
        else:
            p3 = self.top3(torch.cat((self.fuse3(f3), c3), dim=1))
        p4 = self.bottom4(torch.cat((self.down3(p3), f3), dim=1))
        p5 = self.bottom5(torch.cat((self.down4(p4), f4), dim=1))
        return [p3, p4, p5]

    def fuse(self) -> None:
        fuse_modules(self)
