"""`kind: distill` end to end on tiny data: a trained teacher, every DAIK term in the loss dict and in
metrics.jsonl, and with every toggle off exactly the baseline detector's training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daik_core.config import parse_spec
from daik_core.engine import Trainer
from daik_core.errors import DaikError
from tests.core.engine.conftest import make_spec

TIMING = {"images_per_s", "epoch_time_s"}


@pytest.fixture(scope="module")
def teacher(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    Trainer(make_spec(data_root, out, epochs=1, val=False)).fit()
    return out / "weights" / "last.pt"


def distill_spec(data_root: Path, out: Path, teacher: Path, losses: dict[str, Any], **hp: Any) -> Any:
    base = make_spec(data_root, out, epochs=1, val=False, **hp).model_dump(mode="json")
    base.update(kind="distill", teacher={"checkpoint": str(teacher)}, losses=losses)
    return parse_spec(base)


def _metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_every_term_is_trained_and_logged(data_root: Path, tmp_path: Path, teacher: Path) -> None:
    losses = {
        "ad": {"enabled": True},
        "aal": {"enabled": True},
        "sad": {"enabled": True, "kl_weight": 0.1},
        "ld": {"enabled": True},
        "cls_kd": {"enabled": True},
        "feat": {"kind": "cwd"},
    }
    result = Trainer(distill_spec(data_root, tmp_path / "d", teacher, losses)).fit()
    assert result.status == "completed"
    row = _metrics(tmp_path / "d")[0]
    for key in ("loss_ad", "loss_ld", "loss_cls_kd", "loss_sad", "loss_feat"):
        assert key in row and row[key] == row[key] and row[key] >= 0.0, (key, row)
    assert row["loss"] == pytest.approx(sum(v for k, v in row.items() if k.startswith("loss_")), rel=1e-6)


def test_every_toggle_off_trains_exactly_the_baseline(data_root: Path, tmp_path: Path, teacher: Path) -> None:
    Trainer(make_spec(data_root, tmp_path / "plain", epochs=1, val=False)).fit()
    Trainer(distill_spec(data_root, tmp_path / "off", teacher, {})).fit()
    plain, off = _metrics(tmp_path / "plain"), _metrics(tmp_path / "off")
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in off] == [
        {k: v for k, v in r.items() if k not in TIMING} for r in plain
    ]


def test_a_teacher_of_other_classes_is_rejected_before_training(
    data_root: Path, tmp_path: Path, teacher: Path
) -> None:
    spec = distill_spec(
        data_root, tmp_path / "bad", teacher, {"ad": {"enabled": True}}, dataset={"classes": "a,b"}
    )
    with pytest.raises(DaikError, match="cannot teach this student"):
        Trainer(spec).fit()
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()
