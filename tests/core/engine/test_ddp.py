"""DDP on the CPU (gloo, 2 processes through torchrun) against one process with the same global batch.

SyncBatchNorm does not run on the CPU in torch 2.13 (it requires CUDA/XPU inputs), and the detection loss
is normalised per process (by the sum of the assigned scores of its own batch, as YOLOv6), so two
processes on *different* images compute different BatchNorm statistics and loss normalisers than one
process on their union. The comparison therefore trains on 8 copies of one image without augmentation:
then every process's half-batch has the same statistics and normaliser as the whole batch, and DDP must
reproduce the single-process run up to floating-point rounding, amplified a little by the assigner's
discrete choices (argmax angle bins, top-k). SGD keeps that rounding at its size (Adam's update
``m / sqrt(v)`` would blow the noise of parameters whose gradient is ~0 up to a full ``lr`` step).

Compared: the step counts (sharding: 4 images per process, 2 per step), every loss term per epoch
(relative 1e-3; measured ~1e-4), the final parameters of the model and the EMA (the difference is under 2 %
of the parameters' change from their initial values; measured ~0.5 %). The angle loss is the mean over
its bins here: the default sum gives the angle branch ~180x the gradient, and its flips of argmax angle
bins amplify the all-reduce's rounding to ~0.3 % of ``loss_cls`` after one step and ~2 % of the
parameters' change after four, which a comparison at these tolerances cannot tell from a bug; how the
gradients are reduced across processes does not depend on the loss's reduction. BatchNorm running
variances are not compared: they use the unbiased estimate ``n / (n - 1)`` with n the number of values of
the process's batch, which differs by design.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import yaml

from daik_core.presets import build_detector
from tests.core.engine.conftest import NO_AUGMENT, make_spec

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is needed"
)

LOSS_TERMS = ("loss_cls", "loss_box", "loss_dfl", "loss_angle", "loss")


def _same_image_set(data_root: Path, dst: Path) -> Path:
    (dst / "images").mkdir(parents=True)
    (dst / "labelTxt").mkdir(parents=True)
    stem = "synth_000005"  # the train image with the most objects
    for k in range(8):
        shutil.copy(data_root / "train" / "images" / f"{stem}.png", dst / "images" / f"copy_{k}.png")
        shutil.copy(data_root / "train" / "labelTxt" / f"{stem}.txt", dst / "labelTxt" / f"copy_{k}.txt")
    return dst


def _run(argv: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr


def _params(path: Path, key: str) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, weights_only=True)
    state = ckpt["model"] if key == "model" else ckpt["ema"]["state"]
    names = [n for n, _ in build_detector("n", 9).named_parameters()]
    return {n: state[n].double() for n in names}


def _norm(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float(((a[n] - b[n]) ** 2).sum()) for n in a))


def test_ddp_two_processes_match_one(data_root: Path, tmp_path: Path) -> None:
    same = _same_image_set(data_root, tmp_path / "same")
    spec: dict[str, Any] = make_spec(
        data_root,
        tmp_path / "ddp",
        val=False,
        dataset={"train": str(same)},
        augment=NO_AUGMENT,
        epochs=2,
        batch=4,
        imgsz=96,
        optimizer="sgd",
        lr=0.01,
    ).model_dump(mode="json")
    spec["loss"]["angle_reduction"] = "mean"  # see the module docstring
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    cli = ["-m", "daik_core.cli", "train", str(path), "-q"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    _run([*torchrun, *cli], tmp_path)
    _run([sys.executable, *cli, "--output", str(tmp_path / "single")], tmp_path)

    ddp = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    one = [json.loads(x) for x in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in ddp] == [m["step"] for m in one] == [2, 4]
    for d, o in zip(ddp, one, strict=True):
        for term in LOSS_TERMS:
            assert d[term] == pytest.approx(o[term], rel=1e-3), (term, d[term], o[term])
        assert d["lr"] == pytest.approx(o["lr"])
    assert not (tmp_path / "ddp" / "weights" / "last.pt.tmp").exists()

    torch.manual_seed(spec["hparams"]["seed"])  # the trainer's initialisation
    init = {n: p.detach().double() for n, p in build_detector("n", 9).named_parameters()}
    for key in ("model", "ema"):
        a = _params(tmp_path / "ddp" / "weights" / "last.pt", key)
        b = _params(tmp_path / "single" / "weights" / "last.pt", key)
        change = _norm(b, init)
        assert change > 0.01  # it trained
        assert _norm(a, b) < 0.02 * change, (key, _norm(a, b), change)
