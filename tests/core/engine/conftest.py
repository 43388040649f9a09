"""Tiny synthetic DOTA folders and job specs for the engine tests (n preset, 64 px inputs, workers 0)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daik_core.config import JobSpec, parse_spec
from daik_core.data.synth import SYNTH_CLASSES, generate_dataset

CLASSES = ",".join(SYNTH_CLASSES)
#: No augmentation: the tests that compare runs or overfit want the same pixels every epoch.
NO_AUGMENT: dict[str, float] = {
    "hflip": 0.0,
    "vflip": 0.0,
    "rot90": 0.0,
    "scale": 0.0,
    "hsv_h": 0.0,
    "hsv_s": 0.0,
    "hsv_v": 0.0,
}


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/`` (6 images of 128 px), ``val/`` (2 images of 160 px, tiled at 96 / gap 32 by the tests
    that want tiling) and ``overfit/`` (the first 2 train images, 8 copies each)."""
    root = tmp_path_factory.mktemp("engine-data")
    generate_dataset(root / "train", images=6, size=128, seed=0, difficulty="easy", progress=False)
    generate_dataset(root / "val", images=2, size=160, seed=1, difficulty="easy", progress=False)
    over = root / "overfit"
    (over / "images").mkdir(parents=True)
    (over / "labelTxt").mkdir(parents=True)
    for i in range(2):
        stem = f"synth_{i:06d}"
        for k in range(8):
            shutil.copy(root / "train" / "images" / f"{stem}.png", over / "images" / f"{stem}_{k}.png")
            shutil.copy(root / "train" / "labelTxt" / f"{stem}.txt", over / "labelTxt" / f"{stem}_{k}.txt")
    return root


def make_spec(data_root: Path, out: Path, *, val: bool = True, **overrides: Any) -> JobSpec:
    """A spec training the n preset on ``data_root/train`` at 64 px, deterministic; ``overrides`` are
    hparams, except ``dataset``, ``augment`` and ``name`` which replace / update those sections."""
    dataset: dict[str, Any] = {"train": str(data_root / "train"), "classes": CLASSES}
    if val:
        dataset["val"] = str(data_root / "val")
    dataset.update(overrides.pop("dataset", {}))
    hparams: dict[str, Any] = {
        "epochs": 2,
        "batch": 4,
        "imgsz": 64,
        "workers": 0,
        "deterministic": True,
        "warmup_epochs": 0.5,
        "lr": 0.002,
        "eval_interval": 1,
    }
    augment = overrides.pop("augment", {})
    name = overrides.pop("name", "t")
    hparams.update(overrides)
    return parse_spec(
        {
            "name": name,
            "dataset": dataset,
            "augment": augment,
            "hparams": hparams,
            "output": str(out),
        }
    )


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread per test module (module scope, so that module fixtures that train get it too):
    on the shared 2-core machine two threads per op make small CPU runs many times slower under load.
    The DDP test's processes get the same through torchrun's OMP_NUM_THREADS=1."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
