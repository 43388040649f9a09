"""The Python API (`from daik_core import Detector, train`): its docstring examples run as written, in a
folder holding a tiny `daik synth` dataset and a spec, and give what the command line gives."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import daik_core.api
from daik_core import Detector, train
from daik_core.cli import main
from daik_core.data.synth import SYNTH_CLASSES, generate_dataset
from daik_core.errors import DaikError
from tests.core.data.test_yolo_obb import write_yolo_dataset

SPEC = {
    "name": "demo",
    "dataset": {"train": "data/train", "val": "data/val", "classes": list(SYNTH_CLASSES)},
    "student": {"preset": "n"},
    "hparams": {"epochs": 1, "batch": 4, "imgsz": 64, "workers": 0, "deterministic": True, "lr": 0.002},
    "output": "runs/demo",
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """What the examples expect in the current directory: ``spec.yaml``, ``data/{train,val}`` (4 images of
    128 px, 2 of 160 px) and a finished run in ``runs/demo``, trained through the API itself."""
    root = tmp_path_factory.mktemp("api")
    generate_dataset(root / "data" / "train", images=4, size=128, seed=0, difficulty="easy", progress=False)
    generate_dataset(root / "data" / "val", images=2, size=160, seed=1, difficulty="easy", progress=False)
    (root / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    results = train(root / "spec.yaml", progress=False)  # a spec file's paths: relative to its folder
    assert results["status"] == "completed" and Path(results["weights"]["best"]).is_file()
    assert Path(results["weights"]["best"]) == root / "runs" / "demo" / "weights" / "best.pt"
    yield root


def test_every_docstring_example_runs(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = {t.name.removeprefix("daik_core.api."): t for t in finder.find(daik_core.api) if t.examples}
    # one runnable example per public entry point
    assert {"train", "Detector.load", "Detector.predict", "Detector.evaluate"} <= set(tests)
    for test in tests.values():
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 12
    assert json.loads((workspace / "runs" / "notebook" / "results.json").read_text())["epochs"] == 1


def test_predict_and_evaluate_give_what_the_command_line_gives(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = workspace / "runs" / "demo" / "weights" / "best.pt"
    det = Detector.load(weights, device="cpu")
    image = workspace / "data" / "val" / "images" / "synth_000001.png"
    # predict == `daik predict` (its Task1 file lines), for a path and for a BGR array alike
    found = det.predict(image, conf=0.01)
    same = det.predict(cv2.imread(str(image)), conf=0.01)
    np.testing.assert_array_equal(found.boxes, same.boxes)
    argv = ["predict", "--weights", str(weights), "--source", str(image), "--out", str(tmp_path / "p")]
    assert main([*argv, "--conf", "0.01", "-q", "--no-draw"]) == 0
    lines = sorted(
        line for p in (tmp_path / "p" / "task1").iterdir() for line in p.read_text().splitlines() if line
    )
    assert len(lines) == len(found) > 0
    for name, score, poly in zip(found.names, found.scores, found.polygons, strict=True):
        cls_file = (tmp_path / "p" / "task1" / f"Task1_{name}.txt").read_text()
        assert f"synth_000001 {score:.6g} " + " ".join(f"{v:.2f}" for v in poly.reshape(-1)) in cls_file
    assert np.all(np.diff(found.scores) <= 0) and found.windows == 1
    # tiled like `daik predict --split-size`
    assert det.predict(image, conf=0.01, split_size=96, gap=32).windows == 4
    # evaluate == `daik eval --weights --data` (the same tables: APs, then the best-F1 operating points)
    result = det.evaluate(workspace / "data" / "val")
    capsys.readouterr()
    assert main(["eval", "--weights", str(weights), "--data", str(workspace / "data" / "val"), "-q"]) == 0
    assert capsys.readouterr().out.strip() == f"{result.format_table()}\n{result.format_best_f1()}".strip()
    with pytest.raises(DaikError, match=r"\(H, W, 3\) uint8 BGR array"):
        det.predict(np.zeros((8, 8), dtype=np.float32))


def test_train_takes_a_yolo_obb_data_yaml_and_evaluates_it_like_dota(workspace: Path, tmp_path: Path) -> None:
    """Ultralytics' layout end to end: a converted copy of the same images trains through a data YAML (the
    splits and class names from it), and the model scores the YOLO val split exactly as its DOTA twin."""
    data = write_yolo_dataset(workspace / "data" / "train", workspace / "data" / "val", tmp_path / "yolo")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "dataset": {"train": "yolo/data.yaml"}, "output": "run"}))
    results = train(spec, progress=False)
    assert results["status"] == "completed" and set(results["ap50"]) == set(SYNTH_CLASSES)
    det = Detector.load(tmp_path / "run" / "weights" / "best.pt", device="cpu")
    assert det.classes == SYNTH_CLASSES
    on_yolo, on_dota = det.evaluate(data), det.evaluate(workspace / "data" / "val")
    assert on_yolo.map == on_dota.map and on_yolo.per_class == on_dota.per_class
    assert results["map50"] == on_yolo.map  # what training scored on the YAML's val split


def test_import_daik_core_stays_torch_free() -> None:
    code = "import sys, daik_core; print('torch' in sys.modules); from daik_core import Detector; print(1)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "1"]
