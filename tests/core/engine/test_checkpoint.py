"""Checkpoint files: atomic writes, clear errors for corrupt files, RNG state round trip."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from daik_core.cli import main
from daik_core.engine.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    get_rng_state,
    load_checkpoint,
    load_detector,
    save_checkpoint,
    set_rng_state,
)
from daik_core.errors import DaikError
from daik_core.presets import build_detector


def _checkpoint() -> dict[str, object]:
    model = build_detector("n", 2, reg_max=4)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "ema": None,
        "epoch": 1,
        "step": 3,
        "rng": get_rng_state(),
        "spec": {},
        "model_info": {"preset": "n", "num_classes": 2, "classes": ["a", "b"], "reg_max": 4, "imgsz": 64},
    }


def test_save_is_atomic_and_loads_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "weights" / "last.pt"
    save_checkpoint(path, _checkpoint())
    save_checkpoint(path, _checkpoint())  # replacing an existing file
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temporary file left
    torch.load(path, weights_only=True)  # plain types only
    model, meta = load_detector(path)
    assert meta.classes == ("a", "b") and meta.reg_max == 4 and meta.imgsz == 64
    assert not model.training


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "foreign", "objects"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "bad.pt"
    save_checkpoint(path, _checkpoint())
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "foreign":
        torch.save({"state_dict": {}}, path)
    else:  # pickled Python objects, which weights_only refuses (torch's advice: turn it off; ours: never)
        torch.save({**_checkpoint(), "extra": argparse.Namespace(x=1)}, path)
    with pytest.raises(DaikError, match=r"bad\.pt: not a (readable|DAIK) checkpoint") as caught:
        load_checkpoint(path)
    assert "weights_only" not in str(caught.value) and "\n" not in str(caught.value)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DaikError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_cli_corrupt_checkpoint_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "best.pt"
    save_checkpoint(path, _checkpoint())
    path.write_bytes(path.read_bytes()[:1000])
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    cv2.imwrite(str(image_dir / "a.png"), np.zeros((40, 40, 3), dtype=np.uint8))
    for argv in (
        ["predict", "--weights", str(path), "--source", str(image_dir), "--out", str(tmp_path / "out")],
        ["export", "--weights", str(path)],
        ["eval", "--weights", str(path), "--data", str(tmp_path)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err, err


def test_rng_state_round_trip() -> None:
    state = get_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert a[0] == b[0] and a[1] == b[1]
    assert torch.equal(a[2], b[2])
