"""`daik train --events FILE`: the JSON-lines events the job worker tails (JsonlEvents)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from daik_core.cli import main
from daik_core.engine.callbacks import JsonlEvents
from daik_core.events import Failure, decode
from tests.core.engine.conftest import make_spec


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_tiny_training_writes_its_events_in_order_and_a_resume_starts_at_its_step(
    data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    spec = make_spec(data_root, out, epochs=2)  # 6 train images, batch 4: 2 iterations per epoch
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    events = tmp_path / "events.jsonl"
    assert main(["train", str(spec_path), "--events", str(events), "--epochs", "1", "-q"]) == 0

    everything = _read(events)
    # the first batch always reports progress; later ones at most every 2 s (none or one more here)
    assert [e["event"] for e in everything[:2]] == ["start", "progress"]
    got = [e for e in everything if e["event"] != "progress" or e is everything[1]]
    assert [e["event"] for e in got] == [
        "start",
        "progress",
        "eval",
        "epoch",
        "checkpoint",
        "checkpoint",
        "end",
    ]
    assert got[0] == {"event": "start", "epochs": 1, "iters_per_epoch": 2, "epoch": 0, "step": 0}
    assert {k: got[1][k] for k in ("epoch", "iteration", "iters_per_epoch", "step")} == {
        "epoch": 1,
        "iteration": 1,
        "iters_per_epoch": 2,
        "step": 1,
    }
    ev, ep = got[2], got[3]
    assert (ev["epoch"], ev["step"], ep["epoch"], ep["step"]) == (1, 2, 1, 2)
    assert set(ev["ap50"]) == set(spec.dataset.class_names()) == set(ev["ap50_95"])
    results = json.loads((out / "results.json").read_text())
    assert ev["map50"] == results["map50"] and ev["map50_95"] == results["map50_95"]
    metrics = ep["metrics"]
    assert {"loss", "lr", "images_per_s", "loss_cls"} <= set(metrics)
    assert all(k.startswith("loss") or k in ("lr", "images_per_s") for k in metrics)
    assert [(c["path"], c["is_best"], c["step"]) for c in got[4:6]] == [
        (str((out / "weights" / "last.pt").resolve()), False, 2),
        (str((out / "weights" / "best.pt").resolve()), True, 2),
    ]
    assert got[6]["status"] == "completed" and got[6]["results"] == results

    # resumed for one more epoch: the start event names the completed epoch and the steps done
    assert main(["train", str(spec_path), "--events", str(events), "--resume", "-q"]) == 0
    again = _read(events)[len(everything) :]
    assert again[0] == {"event": "start", "epochs": 2, "iters_per_epoch": 2, "epoch": 1, "step": 2}
    assert [e["step"] for e in again if e["event"] == "epoch"] == [4]
    assert again[-1]["event"] == "end" and again[-1]["results"]["epochs"] == 2


def test_non_finite_numbers_are_written_as_null(tmp_path: Path) -> None:
    cb = JsonlEvents(tmp_path / "sub" / "events.jsonl", progress_interval=math.inf)
    cb.on_epoch_end(3, {"epoch": 3, "step": 9, "loss": math.nan, "loss_box": math.inf, "lr": 0.1, "x": 1})
    cb.on_train_end({"status": "completed", "map50": math.nan, "ap50": {"a": math.nan, "b": 0.5}})
    got = _read(tmp_path / "sub" / "events.jsonl")
    assert got == [
        {"event": "epoch", "epoch": 3, "step": 9, "metrics": {"loss_box": None, "loss": None, "lr": 0.1}},
        {
            "event": "end",
            "status": "completed",
            "results": {"status": "completed", "map50": None, "ap50": {"a": None, "b": 0.5}},
        },
    ]


def test_a_training_that_raises_reports_a_typed_failure(data_root: Path, tmp_path: Path) -> None:
    """``daik train --events`` reports why it failed as a ``failure`` event (the worker judges by it, not by
    the log's text): here a train folder without images, an ``error``."""
    spec = make_spec(data_root, tmp_path / "run", epochs=1).model_dump(mode="json")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "labelTxt").mkdir()
    spec["dataset"]["train"] = str(tmp_path / "empty")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    events = tmp_path / "events.jsonl"
    assert main(["train", str(spec_path), "--events", str(events), "-q"]) == 2
    (failure,) = [decode(line) for line in events.read_text().splitlines()]
    assert isinstance(failure, Failure) and (failure.kind, failure.rank) == ("error", 0)
    assert str(tmp_path / "empty") in failure.message
