"""``daik eval dota`` on files: the shared DOTA example against itself, missing files, bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daik_core.cli import main
from daik_core.data.classes import DOTA_V1_0
from daik_core.data.dota import DotaLabel, DotaObject, read_label_dir, write_label_file, write_task1_file
from daik_core.errors import DataFormatError
from daik_core.eval import evaluate_dota_dirs


def write_self_detections(ann_dir: Path, det_dir: Path) -> dict[str, int]:
    """Every annotated object as a detection with score 1.0; returns the object count per class."""
    labels = read_label_dir(ann_dir)
    per_class: dict[str, tuple[list[str], list[tuple[float, ...]]]] = {}
    for image_id, label in labels.items():
        for o in label.objects:
            ids, polys = per_class.setdefault(o.name, ([], []))
            ids.append(image_id)
            polys.append(o.poly)
    for name, (ids, polys) in per_class.items():
        write_task1_file(det_dir / f"Task1_{name}.txt", ids, np.ones(len(ids)), np.array(polys))
    return {name: len(ids) for name, (ids, _) in per_class.items()}


def test_dota_example_against_itself_is_perfect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dota_example: Path
) -> None:
    labels = dota_example / "labelTxt"
    det_dir = tmp_path / "det"
    counts = write_self_detections(labels, det_dir)
    assert counts
    out = tmp_path / "out" / "eval.json"
    rc = main(["eval", "dota", "--ann-dir", str(labels), "--det-dir", str(det_dir), "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "mAP50 (voc07" in printed and "mAP50:95" in printed
    data = json.loads(out.read_text())
    assert data["mAP"] == pytest.approx(1.0, abs=1e-12)  # voc07: 11 x (1 / 11)
    assert data["mAP50_95"] == pytest.approx(1.0, abs=1e-12)
    assert data["metric"] == "voc07" and data["iou_thr"] == 0.5
    assert set(data["per_class"]) == set(DOTA_V1_0)
    for name in DOTA_V1_0:
        c = data["counts"][name]
        if c["npos"] > 0:
            assert data["per_class"][name] == pytest.approx(1.0, abs=1e-12)
            assert c["tp"] == c["npos"] and c["fp"] == 0
            assert c["num_dets"] == counts[name]
        else:
            assert data["per_class"][name] is None
    assert sum(c["npos"] for c in data["counts"].values()) > 0


def _small_dataset(tmp_path: Path) -> tuple[Path, Path]:
    ann, det = tmp_path / "labelTxt", tmp_path / "det"
    poly = (0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0)
    write_label_file(ann / "P1.txt", DotaLabel([DotaObject(poly, "plane"), DotaObject(poly, "ship")]))
    det.mkdir()
    (det / "Task1_plane.txt").write_text("P1 0.9 0 0 10 0 10 10 0 10\n")
    return ann, det


def test_class_without_task1_file_scores_zero(tmp_path: Path) -> None:
    ann, det = _small_dataset(tmp_path)
    r = evaluate_dota_dirs(ann, det, ("plane", "ship", "harbor"))
    assert r.per_class == {"plane": pytest.approx(1.0), "ship": 0.0, "harbor": None}
    assert r.map == pytest.approx(0.5)
    (det / "Task1_ship.txt").write_text("")  # an empty file is the same
    assert evaluate_dota_dirs(ann, det, ("plane", "ship")).per_class == {
        "plane": pytest.approx(1.0),
        "ship": 0.0,
    }


def test_cli_nan_score_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, det = _small_dataset(tmp_path)
    bad = det / "Task1_ship.txt"
    bad.write_text("P1 0.5 0 0 10 0 10 10 0 10\nP1 nan 0 0 10 0 10 10 0 10\n")
    rc = main(["eval", "dota", "--ann-dir", str(ann), "--det-dir", str(det), "--classes", "plane,ship"])
    assert rc == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"{bad}:2" in lines[0] and "score" in lines[0] and "not finite" in lines[0]
    assert "Traceback" not in err


def test_cli_non_finite_coordinate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann, det = _small_dataset(tmp_path)
    (det / "Task1_plane.txt").write_text("P1 0.9 0 0 10 0 inf 10 0 10\n")
    rc = main(["eval", "dota", "--ann-dir", str(ann), "--det-dir", str(det), "--classes", "plane"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Task1_plane.txt:1" in err and "coordinate 5" in err


def test_missing_or_empty_folders_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann, det = _small_dataset(tmp_path)
    with pytest.raises(DataFormatError, match="annotation folder does not exist"):
        evaluate_dota_dirs(tmp_path / "nope", det, ("plane",))
    with pytest.raises(DataFormatError, match="detection folder does not exist"):
        evaluate_dota_dirs(ann, tmp_path / "nope", ("plane",))
    with pytest.raises(DataFormatError, match=r"did you mean its labelTxt/"):
        evaluate_dota_dirs(tmp_path, det, ("plane",))
    rc = main(["eval", "dota", "--ann-dir", str(tmp_path / "nope"), "--det-dir", str(det)])
    assert rc == 2
    assert "annotation folder does not exist" in capsys.readouterr().err


def test_task1_files_of_other_classes_warn(tmp_path: Path) -> None:
    ann, det = _small_dataset(tmp_path)
    (det / "Task1_car.txt").write_text("P1 0.9 0 0 10 0 10 10 0 10\n")
    with pytest.warns(UserWarning, match="Task1_car.txt"):
        evaluate_dota_dirs(ann, det, ("plane", "ship"))


def test_cli_warns_in_one_line_about_unannotated_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, det = _small_dataset(tmp_path)
    (det / "Task1_plane.txt").write_text("P1 0.9 0 0 10 0 10 10 0 10\nP9 0.8 0 0 10 0 10 10 0 10\n")
    out = tmp_path / "r.json"
    rc = main(
        [
            "eval",
            "dota",
            "--ann-dir",
            str(ann),
            "--det-dir",
            str(det),
            "--classes",
            "plane",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["daik: warning: detections on 1 image(s) without annotation count as false positives: P9"]
    data = json.loads(out.read_text())
    assert data["counts"]["plane"]["fp"] == 1 and data["unannotated_images"] == ["P9"]


def test_plots_and_best_f1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--plots DIR`` writes the PR curves and the confusion matrix; the table and the JSON give each
    class's precision and recall at its best-F1 confidence."""
    a, b = (0, 0, 10, 0, 10, 10, 0, 10), (50, 50, 70, 50, 70, 60, 50, 60)
    far = (200, 200, 210, 200, 210, 210, 200, 210)
    ann = tmp_path / "labelTxt"
    write_label_file(ann / "p1.txt", DotaLabel([DotaObject(a, "plane"), DotaObject(b, "plane")]))
    det = tmp_path / "det"
    # plane: tp 0.9, fp 0.8, tp 0.3 -> F1 0.667, 0.5, 0.8: best at 0.3 (P 2/3, R 1)
    write_task1_file(det / "Task1_plane.txt", ["p1"] * 3, np.array([0.9, 0.8, 0.3]), np.array([a, far, b]))
    report = tmp_path / "eval.json"
    argv = ["eval", "dota", "--ann-dir", str(ann), "--det-dir", str(det), "--classes", "plane,ship"]
    assert main([*argv, "--json", str(report), "--plots", str(tmp_path / "plots")]) == 0
    printed = capsys.readouterr().out
    assert "plane 0.300 0.667 1.000 0.800" in " ".join(printed.split())
    data = json.loads(report.read_text())
    assert data["best_f1"]["plane"] == pytest.approx(
        {"conf": 0.3, "precision": 2 / 3, "recall": 1.0, "f1": 0.8}
    )
    assert data["best_f1"]["ship"] is None
    for name in ("pr_curve.png", "confusion_matrix.png"):
        assert (tmp_path / "plots" / name).read_bytes().startswith(b"\x89PNG"), name
