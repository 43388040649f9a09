"""Building blocks of the YOLOv6-v3-style detector, each with a ``fuse()`` for inference.

Training-time structure -> inference-time structure (``fuse()``):

* :class:`ConvBNAct`: conv (no bias) + BatchNorm + activation -> conv (with bias) + activation.
* :class:`RepVGGBlock`: 3x3 conv-BN + 1x1 conv-BN (+ identity BN when ``c_in == c_out`` and stride 1),
  summed, then ReLU -> one 3x3 conv with bias + ReLU (structural re-parameterisation, RepVGG).

Composite blocks (:class:`RepBlock`, :class:`BottleRep`, :class:`BepC3`, :class:`SimSPPF`,
:class:`SimCSPSPPF`) fuse by fusing their children (:func:`fuse_modules`).

Fusing uses the BatchNorm *running* statistics, so a fused model equals the unfused one in ``eval()``
mode. Fuse for inference only: a fused model has no BatchNorm left to train.

Tensors are ``(B, C, H, W)``; every block here keeps H and W except where a stride is given.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BepC3",
    "BottleRep",
    "ConvBNAct",
    "RepBlock",
    "RepVGGBlock",
    "SimCSPSPPF",
    "SimSPPF",
    "fuse_modules",
    "make_stage",
]

# YOLOv6's BatchNorm settings (its ``initialize_weights``)
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _fold_bn(weight: Tensor, bias: Tensor | None, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Weight and bias of one conv equal to ``bn(conv(x))`` with the BN's running statistics."""
    assert bn.running_mean is not None and bn.running_var is not None  # track_running_stats=True here
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std  # (C_out,)
    conv_bias = bias if bias is not None else torch.zeros_like(bn.running_mean)
    fused_weight = weight * scale.reshape(-1, 1, 1, 1)
    fused_bias = bn.bias + (conv_bias - bn.running_mean) * scale
    return fused_weight, fused_bias


def _conv_like(conv: nn.Conv2d, weight: Tensor, bias: Tensor) -> nn.Conv2d:
    """A copy of ``conv`` (same geometry, device and dtype) with the given weight and a bias."""
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter(weight.detach().clone())
    fused.bias = nn.Parameter(bias.detach().clone())
    return fused


class ConvBNAct(nn.Module):
    """Conv (``padding = kernel // 2``, no bias) + BatchNorm + activation (``"relu"``, ``"silu"`` or None).

    ``fuse()`` folds the BatchNorm into the conv (which then gets a bias).
    """

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int = 1, stride: int = 1, act: str | None = "relu"
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding=kernel_size // 2, bias=False)
        self.bn: nn.BatchNorm2d | None = _bn(c_out)
        self.act: nn.Module
        if act == "relu":
            self.act = nn.ReLU(inplace=True)
        elif act == "silu":
            self.act = nn.SiLU(inplace=True)
        elif act is None:
            self.act = nn.Identity()
        else:
            raise ValueError(f"unknown activation {act!r}: expected 'relu', 'silu' or None")

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    @torch.no_grad()
    def fuse(self) -> None:
        if self.bn is None:
            return
        weight, bias = _fold_bn(self.conv.weight, self.conv.bias, self.bn)
        self.conv = _conv_like(self.conv, weight, bias)
        self.bn = None


class RepVGGBlock(nn.Module):
    """RepVGG block: ReLU(BN(conv3x3(x)) + BN(conv1x1(x)) [+ BN(x)]); the identity branch only when
    ``c_in == c_out`` and ``stride == 1``.

    ``fuse()`` re-parameterises the branches into one 3x3 conv with bias (the 1x1 kernel is zero-padded
    to 3x3; the identity is a 3x3 kernel with a 1 at the centre of channel ``i -> i``).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride
        self.dense: ConvBNAct | None = ConvBNAct(c_in, c_out, 3, stride, act=None)
        self.pointwise: ConvBNAct | None = ConvBNAct(c_in, c_out, 1, stride, act=None)
        self.identity: nn.BatchNorm2d | None = _bn(c_in) if c_in == c_out and stride == 1 else None
        self.reparam: nn.Conv2d | None = None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.reparam is not None:
            return self.act(self.reparam(x))
        assert self.dense is not None and self.pointwise is not None
        y = self.dense(x) + self.pointwise(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return self.act(y)

    @staticmethod
    def _branch_kernel(branch: ConvBNAct) -> tuple[Tensor, Tensor]:
        if branch.bn is None:  # the branch was fused on its own already
            assert branch.conv.bias is not None
            return branch.conv.weight, branch.conv.bias
        return _fold_bn(branch.conv.weight, branch.conv.bias, branch.bn)

    @torch.no_grad()
    def fuse(self) -> None:
        if self.reparam is not None:
            return
        assert self.dense is not None and self.pointwise is not None
        weight, bias = self._branch_kernel(self.dense)
        w1, b1 = self._branch_kernel(self.pointwise)
        weight = weight + F.pad(w1, [1, 1, 1, 1])
        bias = bias + b1
        if self.identity is not None:
            eye = torch.zeros_like(weight)
            idx = torch.arange(self.c_in, device=weight.device)
            eye[idx, idx, 1, 1] = 1.0
            wi, bi = _fold_bn(eye, None, self.identity)
            weight, bias = weight + wi, bias + bi
        self.reparam = _conv_like(self.dense.conv, weight, bias)
        self.dense = None
        self.pointwise = None
        self.identity = None


class RepBlock(nn.Module):
    """A stack of ``n >= 1`` RepVGG blocks, the first one ``c_in -> c_out``."""

    def __init__(self, c_in: int, c_out: int, n: int) -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"RepBlock needs n >= 1 blocks, got {n}")
        self.blocks = nn.Sequential(*(RepVGGBlock(c_in if i == 0 else c_out, c_out) for i in range(n)))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)

    def fuse(self) -> None:
        fuse_modules(self)


class BottleRep(nn.Module):
    """Two RepVGG blocks with a learnable-weight residual (``y + alpha * x``) when ``c_in == c_out``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = RepVGGBlock(c_in, c_out)
        self.conv2 = RepVGGBlock(c_out, c_out)
        # no residual (and no alpha, so that every parameter is used: DDP) when the widths differ
        self.alpha: nn.Parameter | None = nn.Parameter(torch.ones(1)) if c_in == c_out else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return y + self.alpha * x if self.alpha is not None else y

    def fuse(self) -> None:
        fuse_modules(self)


class BepC3(nn.Module):
    """CSP stack of BottleRep blocks ("CSPBep" / BepC3 of YOLOv6 m/l).

    ``cv1`` and ``cv2`` (1x1) split ``c_in`` into two ``c_hidden = int(c_out * e)`` paths; the first path
    runs through ``max(n // 2, 1)`` BottleReps (two RepVGG blocks each, so about ``n`` RepVGG blocks), then
    the paths are concatenated and mixed by ``cv3`` (1x1) to ``c_out``.
    """

    def __init__(self, c_in: int, c_out: int, n: int, e: float = 0.5) -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"BepC3 needs n >= 1, got {n}")
        if not 0.0 < e <= 1.0:
            raise ValueError(f"BepC3 expansion e must be in (0, 1], got {e}")
        c_hidden = int(c_out * e)
        self.cv1 = ConvBNAct(c_in, c_hidden, 1)
        self.cv2 = ConvBNAct(c_in, c_hidden, 1)
        self.cv3 = ConvBNAct(2 * c_hidden, c_out, 1)
        self.m = nn.Sequential(*(BottleRep(c_hidden, c_hidden) for _ in range(max(n // 2, 1))))

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))

    def fuse(self) -> None:
        fuse_modules(self)


def make_stage(block: str, c_in: int, c_out: int, n: int, csp_e: float) -> nn.Module:
    """The stage block of a preset: ``"rep"`` -> :class:`RepBlock`, ``"csp"`` -> :class:`BepC3`."""
    if block == "rep":
        return RepBlock(c_in, c_out, n)
    if block == "csp":
        return BepC3(c_in, c_out, n, csp_e)
    raise ValueError(f"unknown block {block!r}: expected 'rep' or 'csp'")


class SimSPPF(nn.Module):
    """Simplified SPPF (ReLU): 1x1 to ``c_in // 2``, three chained ``k x k`` max-pools, concat, 1x1."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 5) -> None:
        super().__init__()
        c_hidden = c_in // 2
        self.cv1 = ConvBNAct(c_in, c_hidden, 1)
        self.cv2 = ConvBNAct(4 * c_hidden, c_out, 1)
        self.pool = nn.MaxPool2d(kernel_size, stride=1, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat((x, y1, y2, self.pool(y2)), dim=1))

    def fuse(self) -> None:
        fuse_modules(self)


class SimCSPSPPF(nn.Module):
    """CSP variant of SimSPPF (YOLOv6 v3 n/s): an SPPF path (1x1, 3x3, 1x1, pools, 1x1, 3x3) next to a
    1x1 shortcut path, both ``int(c_out * e)`` wide, concatenated and mixed by a 1x1 to ``c_out``."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 5, e: float = 0.5) -> None:
        super().__init__()
        c_hidden = int(c_out * e)
        self.cv1 = ConvBNAct(c_in, c_hidden, 1)
        self.cv2 = ConvBNAct(c_in, c_hidden, 1)
        self.cv3 = ConvBNAct(c_hidden, c_hidden, 3)
        self.cv4 = ConvBNAct(c_hidden, c_hidden, 1)
        self.pool = nn.MaxPool2d(kernel_size, stride=1, padding=kernel_size // 2)
        self.cv5 = ConvBNAct(4 * c_hidden, c_hidden, 1)
        self.cv6 = ConvBNAct(c_hidden, c_hidden, 3)
        self.cv7 = ConvBNAct(2 * c_hidden, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y0 = self.cv2(x)
        y1 = self.pool(x1)
        y2 = self.pool(y1)
        y3 = self.cv6(self.cv5(torch.cat((x1, y1, y2, self.pool(y2)), dim=1)))
        return self.cv7(torch.cat((y0, y3), dim=1))

    def fuse(self) -> None:
        fuse_modules(self)


def fuse_modules(module: nn.Module) -> None:
    """Fuse, in place, every :class:`RepVGGBlock` and :class:`ConvBNAct` inside ``module`` (itself included).

    Idempotent. Call it on a model in ``eval()`` mode whose BatchNorm running statistics are final.
    """
    # RepVGG blocks first, so that they fold their own branches' BN; then the remaining ConvBNAct.
    for m in list(module.modules()):
        if isinstance(m, RepVGGBlock):
            m.fuse()
    for m in list(module.modules()):
        if isinstance(m, ConvBNAct):
            m.fuse()
