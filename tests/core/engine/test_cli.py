"""`daik train / predict / eval / export` end to end through ``daik_core.cli.main``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from daik_core import Detector
from daik_core.cli import main
from daik_core.engine.checkpoint import load_detector, save_checkpoint
from daik_core.inference.export import RawOutputs
from tests.core.engine.conftest import make_spec

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def trained(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch run with a tiled validation set (96 px tiles, gap 32, of 160 px images)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    spec = make_spec(data_root, out, epochs=2, dataset={"split": {"size": 96, "gap": 32}})
    path = out.parent / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    assert main(["train", str(path), "-q", "--epochs", "1"]) == 0  # --epochs overrides the spec
    assert json.loads((out / "results.json").read_text())["epochs"] == 1
    return out


def test_eval_matches_the_trainers_final_evaluation(
    trained: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "eval.json"
    argv = ["eval", "--weights", str(trained / "weights" / "best.pt"), "--data", str(data_root / "val")]
    plots = tmp_path / "plots"
    assert (
        main(
            [*argv, "--json", str(report), "--save-dir", str(tmp_path / "task1"), "-q", "--plots", str(plots)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "mAP50 (voc07" in printed and "precision and recall at the best-F1 confidence" in printed
    got = json.loads(report.read_text())
    want = json.loads((trained / "results.json").read_text())
    # same model (EMA), same tiling (from the checkpoint), same thresholds: the same numbers
    assert got["mAP"] == want["map50"] and got["mAP50_95"] == want["map50_95"]
    # the PR curves and the confusion matrix, and precision / recall at the best F1 of each class
    for name in ("pr_curve.png", "confusion_matrix.png"):
        assert (plots / name).read_bytes().startswith(b"\x89PNG"), name
    assert set(got["best_f1"]) == set(got["per_class"])
    for name, best in got["best_f1"].items():
        if best is not None:
            assert 0 <= best["precision"] <= 1 and 0 <= best["recall"] <= 1 and best["conf"] > 0, name
            assert f"{best['recall']:.3f}" in printed
    assert sorted(p.name for p in (tmp_path / "task1").iterdir())[0].startswith("Task1_")
    assert main([*argv, "--metric", "area", "-q"]) == 0


def test_one_parameter_count_everywhere(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """results.json, `daik info` and the ablation's cost columns count the fused model's parameters."""
    from daik_core.ablation.runner import model_cost

    results = json.loads((trained / "results.json").read_text())
    assert main(["info", "--preset", "n", "--num-classes", "9", "--imgsz", "64"]) == 0
    out = capsys.readouterr().out
    assert f"{results['params']:,} params" in out and out.rstrip().endswith(", fused")
    assert f"{results['gflops']:.2f} GFLOPs" in out
    model, _ = load_detector(trained / "weights" / "best.pt")
    assert model_cost(model, 64)["params"] == results["params"]
    assert main(["info", "--preset", "n", "--num-classes", "9", "--imgsz", "64", "--unfused"]) == 0
    unfused = capsys.readouterr().out
    assert "unfused" in unfused and f"{results['params']:,} params" not in unfused


def test_eval_without_weights_or_format_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval"]) == 2
    assert "--weights" in capsys.readouterr().err


def test_predict_writes_task1_and_drawings(
    trained: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pred"
    weights = str(trained / "weights" / "best.pt")
    source = data_root / "val" / "images"
    argv = ["predict", "--weights", weights, "--source", str(source), "--out", str(out), "--conf", "0.01"]
    assert main([*argv, "-q"]) == 0
    assert "detections on 2 images (8 windows)" in capsys.readouterr().out  # tiled as in training
    task1 = sorted(p.name for p in (out / "task1").iterdir())
    assert len(task1) == 9 and all(n.startswith("Task1_") for n in task1)
    ids = {line.split()[0] for p in (out / "task1").iterdir() for line in p.read_text().splitlines()}
    assert ids <= {"synth_000000", "synth_000001"}
    for stem in ("synth_000000", "synth_000001"):
        vis = cv2.imread(str(out / "vis" / f"{stem}.png"))
        assert vis is not None and vis.shape == (160, 160, 3)
    # one file, untiled, at another size
    one = source / "synth_000000.png"
    assert main(["predict", "--weights", weights, "--source", str(one), "--out", str(out / "one"),
                 "--split-size", "0", "--imgsz", "96", "-q"]) == 0  # fmt: skip
    assert "(1 windows)" in capsys.readouterr().out
    assert main(["predict", "--weights", weights, "--source", str(tmp_path / "nope"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err


def test_export_onnx_matches_torch(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "model.onnx"
    assert main(["export", "--weights", str(trained / "weights" / "best.pt"), "--out", str(path)]) == 0
    assert "max |difference|" in capsys.readouterr().out
    # dynamic shapes: another batch and size than the check used
    model, _ = load_detector(trained / "weights" / "best.pt")
    net = RawOutputs(model.fuse()).eval()
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        want = net(x)
    for g, w in zip(got, want, strict=True):
        assert g.shape == tuple(w.shape)
        assert np.abs(g - w.numpy()).max() <= 1e-4 * max(1.0, float(w.abs().max()))
    meta = {p.key: p.value for p in __import__("onnx").load(str(path)).metadata_props}
    assert json.loads(meta["classes"])[0] == "plane" and meta["reg_max"] == "16"


@pytest.fixture(scope="module")
def lively(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained checkpoint with random BatchNorm statistics, larger prediction weights and class biases:
    scores spread out. (A 1-epoch model scores nearly every candidate alike, and which of two overlapping
    candidates with scores equal to within float rounding NMS keeps then depends on the runtime.)"""
    from tests.core.models.helpers import randomize_

    ckpt = torch.load(trained / "weights" / "best.pt", weights_only=True)
    model, _ = load_detector(trained / "weights" / "best.pt")
    randomize_(model, seed=3)
    with torch.no_grad():
        for level in model.head.levels:  # scores around 0.5 rather than the prior's 0.01
            level.cls_pred.bias.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(4))
    ckpt["model"] = model.state_dict()
    ckpt["ema"] = {"state": model.state_dict(), "updates": 1}
    path = tmp_path_factory.mktemp("lively") / "best.pt"
    save_checkpoint(path, ckpt)
    return path


def _task1(folder: Path) -> list[tuple[str, str, float, np.ndarray]]:
    rows = []
    for path in sorted(folder.iterdir()):
        for line in path.read_text().splitlines():
            image, score, *poly = line.split()
            rows.append((path.name, image, float(score), np.array([float(v) for v in poly])))
    return sorted(rows, key=lambda r: (r[0], r[1], -r[2]))


def _same_or_window_copy(got: np.ndarray, want: np.ndarray, step: float | None) -> bool:
    """The same polygon (to 0.011 px), or, with a window ``step``, the same polygon moved by whole steps."""
    diff = (got - want).reshape(4, 2)
    if np.abs(diff).max() <= 0.011:
        return True
    if step is None:
        return False
    shift = np.round(diff[0] / step) * step
    return bool(np.abs(shift).max() > 0 and np.abs(diff - shift).max() <= 0.011)


def test_onnx_models_predict_what_the_checkpoint_predicts(
    lively: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`daik export` (raw, and --end2end: decoding and rotated NMS in the graph) then `daik predict --weights
    model.onnx` through onnxruntime: the checkpoint's detections, tiled as in training and untiled.

    (The end-to-end graph runs one window at a time, torch a batch of windows; on tiles of these synthetic
    scenes two windows can see the same pixels, and then give the same box two scores that are equal in
    one runtime and differ in the last bit in the other, so which copy the merge of the tiles keeps may
    differ: that graph is compared untiled. The raw graph is compared tiled too, where a box of the padding
    past an image's edge can come from two windows at exactly the same score: either copy may be kept.)"""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    for name, flags in (("raw.onnx", []), ("e2e.onnx", ["--end2end"])):
        assert main(["export", "--weights", str(lively), "--out", str(tmp_path / name), *flags]) == 0
    printed = capsys.readouterr().out
    assert "its NMS keeps torch's" in printed and "max |difference|" in printed
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "e2e.onnx")).metadata_props}
    assert meta["graph"] == "end2end" and json.loads(meta["spec"])["dataset"]["split"]["size"] == 96
    assert [o.name for o in onnx.load(str(tmp_path / "e2e.onnx")).graph.output] == [
        "boxes",
        "scores",
        "labels",
    ]

    source = data_root / "val" / "images"
    for tiling, windows, names in (
        ([], 8, ("raw.onnx",)),
        (["--split-size", "0"], 2, ("raw.onnx", "e2e.onnx")),
    ):
        found = {}
        for name in ("best.pt", *names):
            weights = lively if name == "best.pt" else tmp_path / name
            out = tmp_path / f"pred-{name}-{windows}"
            argv = ["predict", "--weights", str(weights), "--source", str(source), "--out", str(out), *tiling]
            assert main([*argv, "--conf", "0.3", "--no-draw", "-q"]) == 0
            assert f"on 2 images ({windows} windows)" in capsys.readouterr().out  # 8: tiled as in training
            found[name] = _task1(out / "task1")
        assert len(found["best.pt"]) > 10
        for name in names:
            assert len(found[name]) == len(found["best.pt"]), name
            # one to one. Tiled, two windows can see the same pixels (the padding past an image's edge) and
            # give the same box at the same score, shifted by the window step (96 - 32 px); which copy the
            # merge keeps is a tie, so a copy shifted by whole steps also matches (see the docstring)
            step = 64.0 if windows == 8 else None
            left = list(found[name])
            for want in found["best.pt"]:
                i = next(
                    (
                        k
                        for k, got in enumerate(left)
                        if got[:2] == want[:2]
                        and abs(got[2] - want[2]) <= 2e-5
                        and _same_or_window_copy(got[3], want[3], step)
                    ),
                    None,
                )
                assert i is not None, (name, want)
                left.pop(i)

    # the Python API loads the ONNX model too
    image = source / "synth_000000.png"
    a = Detector.load(lively, device="cpu").predict(image, conf=0.3, split_size=0)
    b = Detector.load(tmp_path / "e2e.onnx").predict(image, conf=0.3, split_size=0)
    assert len(a) > 0 and a.names == b.names and np.abs(a.boxes - b.boxes).max() < 1e-3
    # an end-to-end graph takes windows of its export size
    argv = ["predict", "--weights", str(tmp_path / "e2e.onnx"), "--source", str(image), "--imgsz", "96"]
    assert main([*argv, "--out", str(tmp_path / "x"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "export again with --imgsz" in err


def test_export_without_onnx_is_a_clear_error(
    trained: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    assert main(["export", "--weights", str(trained / "weights" / "best.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "onnx" in err and "pip install" in err


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_committed_configs_are_valid_specs_whose_paths_point_into_the_repository(name: str) -> None:
    from daik_core.config import load_spec

    spec = load_spec(REPO / "configs" / name, check_paths=False)
    # relative to configs/: the repository's data/ and runs/ (or the shared DOTA example beside it)
    inputs = [spec.dataset.train, spec.dataset.val, spec.output]
    if spec.teacher is not None and spec.teacher.checkpoint is not None:
        inputs.append(spec.teacher.checkpoint)
    for value in inputs:
        assert value is not None
        path = Path(value)
        assert path.is_absolute()
        assert (
            path.is_relative_to(REPO / "data")
            or path.is_relative_to(REPO / "runs")
            or (path == REPO.parent / "shared" / "data" / "dota_example")
        ), value
    assert spec.output_dir() == REPO / "runs" / spec.name
    assert spec.hparams.imgsz % 32 == 0
