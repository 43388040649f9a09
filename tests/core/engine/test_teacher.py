"""The teacher of a distillation job: checked against the student before training, frozen, fused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from daik_core.engine.checkpoint import FORMAT_NAME, FORMAT_VERSION, get_rng_state, save_checkpoint
from daik_core.engine.teacher import load_teacher
from daik_core.errors import DaikError
from daik_core.presets import build_detector
from daik_core.structures.boxes import ANGLE_BINS

CLASSES = ("plane", "ship", "harbor")


def _teacher_checkpoint(path: Path, classes: tuple[str, ...] = CLASSES, reg_max: int = 8) -> Path:
    torch.manual_seed(0)
    model = build_detector("s", len(classes), reg_max=reg_max)
    save_checkpoint(
        path,
        {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "model": model.state_dict(),
            "ema": None,
            "epoch": 5,
            "step": 50,
            "rng": get_rng_state(),
            "spec": {},
            "model_info": {
                "preset": "s",
                "num_classes": len(classes),
                "classes": list(classes),
                "reg_max": reg_max,
                "imgsz": 64,
            },
        },
    )
    return path


def test_teacher_is_frozen_fused_and_matches_the_unfused_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = _teacher_checkpoint(tmp_path / "best.pt")
    teacher, meta = load_teacher(
        path, classes=CLASSES, reg_max=8, angle_bins=ANGLE_BINS, device=torch.device("cpu")
    )
    assert meta.preset == "s" and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    # fused: no RepVGG multi-branch blocks left, same outputs as the checkpoint's unfused model
    reference = build_detector("s", 3, reg_max=8)
    reference.load_state_dict(torch.load(path, weights_only=True)["model"])
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = teacher(x), reference(x)
    assert torch.allclose(a.cls_logits, b.cls_logits, atol=1e-4)
    assert torch.allclose(a.angle_logits, b.angle_logits, atol=1e-4)
    assert sum(p.numel() for p in teacher.parameters()) < sum(p.numel() for p in reference.parameters())
    # gradients cannot reach it
    out = teacher(x)
    assert not out.cls_logits.requires_grad


@pytest.mark.parametrize(
    ("classes", "reg_max", "angle_bins", "message"),
    [
        (
            ("plane", "ship"),
            8,
            ANGLE_BINS,
            "3 classes differ from the student's 2 (not in the student's list: harbor)",
        ),
        (("ship", "plane", "harbor"), 8, ANGLE_BINS, "the student's in another order"),
        (CLASSES, 16, ANGLE_BINS, "reg_max is 8, the student's 16"),
        (CLASSES, 8, 90, "180 angle bins, the student 90"),
    ],
)
def test_a_teacher_that_does_not_fit_is_rejected_naming_why(
    tmp_path: Path, classes: tuple[str, ...], reg_max: int, angle_bins: int, message: str
) -> None:
    path = _teacher_checkpoint(tmp_path / "best.pt")
    with pytest.raises(DaikError, match=r"teacher\.checkpoint .*best\.pt: cannot teach this student") as err:
        load_teacher(
            path, classes=classes, reg_max=reg_max, angle_bins=angle_bins, device=torch.device("cpu")
        )
    assert message in str(err.value)


def test_a_missing_teacher_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(DaikError, match="no such file"):
        load_teacher(
            tmp_path / "nope.pt",
            classes=CLASSES,
            reg_max=8,
            angle_bins=ANGLE_BINS,
            device=torch.device("cpu"),
        )


def test_a_teacher_trained_at_another_image_size_is_warned_about(tmp_path: Path) -> None:
    import warnings

    from daik_core.engine.teacher import TeacherMismatchWarning

    path = _teacher_checkpoint(tmp_path / "best.pt")  # trained at 64 px
    kwargs = {"classes": CLASSES, "reg_max": 8, "angle_bins": ANGLE_BINS, "device": torch.device("cpu")}
    with pytest.warns(TeacherMismatchWarning, match=r"trained at imgsz 64, the student trains at 128"):
        load_teacher(path, imgsz=128, **kwargs)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_teacher(path, imgsz=64, **kwargs)  # type: ignore[arg-type]
