"""EMA update maths, the learning-rate schedule and the optimiser's parameter groups, by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from daik_core.config import HParams
from daik_core.engine.ema import ModelEMA, ema_decay
from daik_core.engine.trainer import build_optimizer, lr_at, param_groups
from daik_core.presets import build_detector


def _tiny() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(1, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(2.0)
        net[0].bias.fill_(0.0)
    return net


def test_ema_decay_ramp() -> None:
    assert ema_decay(0, 0.9999) == 0.0
    assert ema_decay(2000, 0.9999, 2000.0) == pytest.approx(0.9999 * (1 - math.exp(-1)))
    assert ema_decay(10**7, 0.9999) == pytest.approx(0.9999)


def test_ema_update_by_hand() -> None:
    net = _tiny()
    ema = ModelEMA(net, decay=0.5, tau=1.0)
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    with torch.no_grad():
        net[0].weight.fill_(4.0)
        net[0].bias.fill_(1.0)
    net[1].num_batches_tracked.fill_(7)
    d1 = ema.update(net)
    assert d1 == pytest.approx(0.5 * (1 - math.exp(-1.0)))
    w1 = d1 * 2.0 + (1 - d1) * 4.0
    assert ema.module[0].weight.item() == pytest.approx(w1)
    assert ema.module[0].bias.item() == pytest.approx((1 - d1) * 1.0)
    assert int(ema.module[1].num_batches_tracked) == 7  # integer buffers are copied
    d2 = ema.update(net)
    assert d2 == pytest.approx(0.5 * (1 - math.exp(-2.0)))
    assert ema.module[0].weight.item() == pytest.approx(d2 * w1 + (1 - d2) * 4.0)
    assert ema.updates == 2
    # the model itself is untouched, and the state round-trips
    assert net[0].weight.item() == 4.0
    other = ModelEMA(_tiny(), decay=0.5, tau=1.0)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 2
    assert other.module[0].weight.item() == pytest.approx(ema.module[0].weight.item())


def test_lr_schedule_values() -> None:
    kw = {"base_lr": 0.01, "lr_final": 0.1, "warmup_steps": 10, "total_steps": 101}
    assert lr_at(0, **kw) == pytest.approx(0.001)  # first warm-up step
    assert lr_at(9, **kw) == pytest.approx(0.01)  # warm-up end
    assert lr_at(10, **kw) == pytest.approx(0.01)  # cosine start
    assert lr_at(55, **kw) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))  # half way down the cosine
    assert lr_at(100, **kw) == pytest.approx(0.001)  # the last step: lr * lr_final
    assert lr_at(500, **kw) == pytest.approx(0.001)
    values = [lr_at(s, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    # no warm-up: the cosine starts at the full lr
    assert lr_at(0, base_lr=0.01, lr_final=0.1, warmup_steps=0, total_steps=5) == pytest.approx(0.01)
    # a warm-up longer than the run is all warm-up
    assert lr_at(4, base_lr=0.01, lr_final=0.1, warmup_steps=50, total_steps=5) == pytest.approx(0.01)


def test_param_groups_no_decay_on_biases_and_norms() -> None:
    model = build_detector("n", 3)
    decay_group, no_decay_group = param_groups(model, 0.05)
    assert decay_group["weight_decay"] == 0.05
    assert no_decay_group["weight_decay"] == 0.0
    decay_ids = {id(p) for p in decay_group["params"]}
    no_decay_ids = {id(p) for p in no_decay_group["params"]}
    assert not decay_ids & no_decay_ids
    assert len(decay_ids) + len(no_decay_ids) == len(list(model.parameters()))
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, nn.BatchNorm2d) or name == "bias":
                assert id(p) in no_decay_ids, name
            if isinstance(module, nn.Conv2d) and name == "weight":
                assert id(p) in decay_ids


def test_build_optimizer_kinds() -> None:
    model = nn.Linear(2, 2)
    adamw = build_optimizer(model, HParams(optimizer="adamw", lr=0.0008, momentum=0.9))
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["betas"] == (0.9, 0.999)
    sgd = build_optimizer(model, HParams(optimizer="sgd", lr=0.01, momentum=0.937))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["nesterov"] is True
    assert sgd.param_groups[0]["momentum"] == 0.937
