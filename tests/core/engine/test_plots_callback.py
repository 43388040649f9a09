"""The trainer's pictures: a short real run writes them all; a picture that cannot be drawn warns and
never fails the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daik_core.engine import PlotsCallback, Trainer
from tests.core.engine.conftest import make_spec

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_completed_run_writes_its_pictures(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = Trainer(make_spec(data_root, out, epochs=1)).fit()
    assert result.status == "completed"
    for name in ("results.png", "pr_curve.png", "confusion_matrix.png", "labels.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
    preds = sorted(p.name for p in out.glob("val_pred_*.jpg"))
    assert preds == ["val_pred_0.jpg", "val_pred_1.jpg"]  # the val set has 2 images (3 at most)
    from PIL import Image

    with Image.open(out / "val_pred_0.jpg") as im:
        assert im.format == "JPEG" and im.size == (512, 512)  # 160 px images drawn at 512 px
    assert not list(out.glob(".*"))  # no temporary file left


def test_no_plots_when_asked(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(make_spec(data_root, out, epochs=1, val=False), plots=False).fit()
    assert not list(out.glob("*.png")) and not list(out.glob("*.jpg"))


def test_a_picture_that_fails_warns_and_the_others_are_drawn(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "loss": 1.0, "loss_cls": 1.0}) + "\n")

    def broken() -> tuple[np.ndarray, np.ndarray]:
        raise OSError("label files gone")

    cb = PlotsCallback(broken)
    cb.classes = ("a", "b")
    with pytest.warns(UserWarning, match=r"plots: cannot draw labels.png: OSError: label files gone"):
        written = cb.write(tmp_path)
    assert [p.name for p in written] == ["results.png"]
    # a stopped run draws nothing (it is resumed later)
    (tmp_path / "results.png").unlink()
    cb.output_dir = tmp_path
    cb.on_train_end({"status": "stopped"})
    assert not (tmp_path / "results.png").exists()
