"""Blocks: every fusable block gives the same output after fuse() (eval mode, random BN statistics)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from daik_core.models.blocks import (
    BepC3,
    BottleRep,
    ConvBNAct,
    RepBlock,
    RepVGGBlock,
    SimCSPSPPF,
    SimSPPF,
    make_stage,
)
from tests.core.models.helpers import randomize_


def _fused_matches(block: nn.Module, x: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)  # the same statistics and input whatever ran before (no flaky draws)
    x = torch.randn(x.shape)
    randomize_(block)
    block.eval()
    with torch.no_grad():
        before = block(x)
        block.fuse()  # type: ignore[operator]
        after = block(x)
    assert before.std() > 0.05  # a non-trivial output, so that the comparison means something
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    return block


def test_convbnact_fuse_folds_bn() -> None:
    block = _fused_matches(ConvBNAct(4, 6, 3, stride=2, act="silu"), torch.randn(2, 4, 8, 8))
    assert isinstance(block, ConvBNAct)
    assert block.bn is None and block.conv.bias is not None


def test_convbnact_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match="gelu"):
        ConvBNAct(4, 4, act="gelu")


@pytest.mark.parametrize(("c_in", "c_out", "stride"), [(8, 8, 1), (4, 8, 1), (8, 8, 2)])
def test_repvgg_fuse_reparameterises_into_one_conv(c_in: int, c_out: int, stride: int) -> None:
    block = RepVGGBlock(c_in, c_out, stride)
    assert (block.identity is not None) == (c_in == c_out and stride == 1)
    _fused_matches(block, torch.randn(2, c_in, 8, 8))
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (3, 3) and convs[0].bias is not None
    assert convs[0].stride == (stride, stride)
    assert sum(p.numel() for p in block.parameters()) == c_out * c_in * 9 + c_out


def test_repvgg_identity_branch_matters() -> None:
    """Guards the fuse test: dropping the identity branch changes the output, so a fuse that forgot it
    would fail."""
    block = RepVGGBlock(8, 8)
    randomize_(block)
    block.eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        full = block(x)
        block.identity = None
        without = block(x)
    assert (full - without).abs().max() > 1e-2


def test_fuse_is_idempotent() -> None:
    block = RepBlock(4, 8, 3)
    x = torch.randn(1, 4, 8, 8)
    _fused_matches(block, x)
    with torch.no_grad():
        once = block(x)
        block.fuse()
        torch.testing.assert_close(block(x), once, rtol=0, atol=0)


@pytest.mark.parametrize(
    "make_block",
    [
        lambda: RepBlock(4, 8, 3),
        lambda: BottleRep(8, 8),
        lambda: BottleRep(4, 8),
        lambda: BepC3(8, 12, n=4, e=2 / 3),
        lambda: SimSPPF(16, 8),
        lambda: SimCSPSPPF(16, 8),
    ],
    ids=["RepBlock", "BottleRep", "BottleRep-no-residual", "BepC3", "SimSPPF", "SimCSPSPPF"],
)
def test_composite_blocks_fuse(make_block: Callable[[], nn.Module]) -> None:
    # Built here under a fixed seed, not at collection time: the conv weights (and so the output's
    # spread) must not depend on which tests were collected before.
    torch.manual_seed(0)
    block = make_block()
    c_in = next(m for m in block.modules() if isinstance(m, nn.Conv2d)).in_channels
    _fused_matches(block, torch.randn(2, c_in, 8, 8))


def test_bottlerep_residual_only_when_widths_match() -> None:
    assert BottleRep(8, 8).alpha is not None
    assert BottleRep(4, 8).alpha is None
    assert not any(name.endswith("alpha") for name, _ in BottleRep(4, 8).named_parameters())


def test_bepc3_structure() -> None:
    block = BepC3(16, 24, n=7, e=2 / 3)
    assert block.cv1.conv.out_channels == 16  # int(24 * 2/3)
    assert len(block.m) == 3  # 7 // 2 BottleReps of two RepVGG blocks each
    assert BepC3(8, 8, n=1).m.__len__() == 1
    assert block(torch.randn(1, 16, 4, 4)).shape == (1, 24, 4, 4)


def test_make_stage_names_the_bad_block() -> None:
    assert isinstance(make_stage("rep", 4, 4, 2, 0.5), RepBlock)
    assert isinstance(make_stage("csp", 4, 4, 2, 0.5), BepC3)
    with pytest.raises(ValueError, match="'dense'"):
        make_stage("dense", 4, 4, 2, 0.5)
