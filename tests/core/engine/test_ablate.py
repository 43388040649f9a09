"""`daik ablate` on tiny data: every (configuration, seed) trained once and scored, the table written from
the records, finished runs reused, a stopped run resumed, and bad input refused before any training."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from daik_core.ablation.grid import parse_grid
from daik_core.ablation.runner import run_ablation, write_table
from daik_core.ablation.table import RunRecord
from daik_core.cli import main
from daik_core.engine import Trainer
from daik_core.engine.callbacks import Callback, StopFlag
from daik_core.engine.environment import compute_environment
from tests.core.engine.conftest import make_spec

GRID: list[dict[str, Any]] = [
    {"name": "teacher", "teacher": True},
    {"name": "baseline"},
    {"name": "+AD", "losses": {"ad": {"enabled": True}}},
]


@pytest.fixture(scope="module")
def teacher(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ablate-teacher")
    Trainer(make_spec(data_root, out, epochs=1, val=False)).fit()
    return out / "weights" / "last.pt"


def _metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_ablation_trains_scores_and_tabulates(
    data_root: Path, tmp_path: Path, teacher: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(data_root, tmp_path / "base", epochs=1)
    out = tmp_path / "abl"
    log = io.StringIO()
    result = run_ablation(spec, parse_grid(GRID), [0, 1], out, teacher=teacher, log=log)
    assert result.status == "completed"
    assert [r.config for r in result.rows] == ["teacher", "baseline", "+AD"]
    assert {(r.config, r.seed) for r in result.records} == {
        ("teacher", 0), ("baseline", 0), ("baseline", 1), ("+AD", 0), ("+AD", 1)
    }  # fmt: skip
    runs = out / "runs"
    # the baseline is a plain train job, +AD a distill job whose AD term is trained and logged
    assert "loss_ad" not in _metrics(runs / "baseline" / "seed0")[0]
    assert "loss_ad" in _metrics(runs / "plus-ad" / "seed1")[0]
    assert json.loads((runs / "plus-ad" / "seed1" / "spec.json").read_text())["spec"]["kind"] == "distill"
    for rec in result.records:
        assert rec.map50 is not None and 0.0 <= rec.map50 <= 1.0 and rec.map50_all is not None
        assert rec.params is not None and rec.params > 0 and rec.latency_ms is not None and rec.latency_ms > 0
        assert set(rec.ap50) <= set(spec.dataset.class_names())
    # every trained run records this process's compute environment; one environment: no warning
    here = compute_environment("cpu")
    trained = [r for r in result.records if r.config != "teacher"]
    assert all([e["id"] for e in r.extra["environments"]] == [here["id"]] for r in trained)
    assert next(r for r in result.records if r.config == "teacher").extra["environments"] == []
    assert "compute environments" not in log.getvalue() and "not bit-comparable" not in log.getvalue()
    # the two seeds of a configuration are different runs
    w0 = (runs / "baseline" / "seed0" / "weights" / "last.pt").read_bytes()
    assert w0 != (runs / "baseline" / "seed1" / "weights" / "last.pt").read_bytes()
    # the table files agree with the records
    table = json.loads((out / "ablation.json").read_text())
    base = next(r for r in table["rows"] if r["config"] == "baseline")
    maps = [r.map50 for r in result.records if r.config == "baseline"]
    assert [e["id"] for e in table["environments"]] == [here["id"]]
    assert base["map50"]["n"] == 2 and base["map50"]["mean"] == pytest.approx(sum(maps) / 2)  # type: ignore[arg-type]
    assert (out / "ablation.csv").read_text().splitlines()[0].startswith("config,seeds,map50_mean")
    assert "| +AD | 2 |" in (out / "ablation.md").read_text()
    assert (out / "ablation.png").read_bytes().startswith(b"\x89PNG")  # the bar chart with error bars

    # a second call reuses every finished run: nothing is trained again
    stamp = (runs / "plus-ad" / "seed0" / "weights" / "last.pt").stat().st_mtime_ns
    log = io.StringIO()
    again = run_ablation(spec, parse_grid(GRID), [0, 1], out, teacher=teacher, log=log)
    assert log.getvalue().count("done before") == 5 and "training" not in log.getvalue()
    assert (runs / "plus-ad" / "seed0" / "weights" / "last.pt").stat().st_mtime_ns == stamp
    assert [r.to_dict() for r in again.rows] == [r.to_dict() for r in result.rows]

    # `daik ablate --table-only` with the grid from a file rebuilds the same table without training
    (tmp_path / "grid.yaml").write_text(json.dumps(GRID))
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    (out / "ablation.md").unlink()
    argv = ["ablate", str(tmp_path / "spec.json"), "--grid", str(tmp_path / "grid.yaml"), "--seeds", "2"]
    assert main([*argv, "--out", str(out), "--table-only"]) == 0
    printed = capsys.readouterr().out
    assert "| +AD | 2 |" in printed and "| baseline | 2 |" in printed
    assert (out / "ablation.md").is_file()
    # ... and warns on stderr once a record comes from another compute environment
    record_file = next((runs / "plus-ad" / "seed1").glob("record-*.json"))
    record = json.loads(record_file.read_text())
    record["extra"]["environments"] = [{**here, "id": "0123456789ab", "device_name": "Other CPU"}]
    record_file.write_text(json.dumps(record))
    assert main([*argv, "--out", str(out), "--table-only"]) == 0
    err = capsys.readouterr().err
    assert "ablate: warning: the runs of this table were trained in 2 compute environments" in err
    assert f"0123456789ab (Other CPU, {here['cpu_capability']} kernels, torch" in err and "+AD seed 1" in err

    # the JSON records the schedules of students and teacher, and the folders
    assert table["train"] == spec.dataset.train and table["val"] == spec.dataset.val
    assert table["student_hparams"]["epochs"] == 1 and table["student_hparams"]["imgsz"] == 64
    assert table["teacher_hparams"]["epochs"] == 1 and table["teacher_hparams"]["batch"] == 4
    assert table["equal_schedule"] is True and table["teacher_preset"] == "n"
    assert base["map50_by_seed"] == {"0": maps[0], "1": maps[1]}
    assert base["train_time_s"]["n"] == 2 and base["train_time_s"]["mean"] > 0


def test_runs_trained_once_are_scored_on_each_split_apart(
    data_root: Path, tmp_path: Path, teacher: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tune on one split, report on another: ``--val`` scores the same runs on another folder, keeps each
    split's scores apart, and trains nothing twice."""
    spec = make_spec(data_root, tmp_path / "base", epochs=1)
    grid = parse_grid(GRID[:2])
    out = tmp_path / "abl"
    first = run_ablation(spec, grid, [0], out, teacher=teacher, log=io.StringIO())
    weights = out / "runs" / "baseline" / "seed0" / "weights" / "last.pt"
    stamp = weights.stat().st_mtime_ns
    tune = data_root / "train"  # any other DOTA folder
    log = io.StringIO()
    second = run_ablation(spec, grid, [0], out, teacher=teacher, val=tune, log=log)
    assert "training" not in log.getvalue() and weights.stat().st_mtime_ns == stamp
    assert second.records[1].extra["val"] == str(tune) and first.records[1].extra["val"] == spec.dataset.val
    assert second.records[1].ap50 != first.records[1].ap50  # other images (other classes present)
    assert json.loads((out / "ablation.json").read_text())["val"] == str(tune)
    # both splits' records stay, and each table is rebuilt from its own
    assert len(list((out / "runs" / "baseline" / "seed0").glob("record-*.json"))) == 2
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.model_dump_json())
    (tmp_path / "grid.yaml").write_text(json.dumps(GRID[:2]))
    argv = [
        "ablate",
        str(spec_file),
        "--grid",
        str(tmp_path / "grid.yaml"),
        "--seeds",
        "1",
        "--out",
        str(out),
    ]
    assert main([*argv, "--table-only", "--teacher", str(teacher)]) == 0
    assert json.loads((out / "ablation.json").read_text())["val"] == spec.dataset.val
    # a grid run in parts: seed 1 of --seeds 2 alone (seed 0 is done and not touched); seed 0 was trained
    # on "another machine", which is said before seed 1 trains
    results_file = out / "runs" / "baseline" / "seed0" / "results.json"
    results = json.loads(results_file.read_text())
    here = results["environments"][0]
    other = {**here, "id": "0123456789ab", "cpu_capability": "AVX512", "device_name": "Other CPU"}
    results["environments"] = [other]
    results_file.write_text(json.dumps(results))
    capsys.readouterr()
    in_parts = [
        *argv,
        "--seeds",
        "2",
        "--only-seeds",
        "1",
        "--teacher",
        str(teacher),
        "-q",
        "--only",
        "baseline",
    ]
    assert main(in_parts) == 0
    err = capsys.readouterr().err
    assert f"ablate: warning: this process's compute environment {here['id']} (" in err
    assert "0123456789ab (Other CPU, AVX512 kernels, torch" in err and "): 1 run(s)" in err
    assert err.index("compute environment") < err.index("training ->")  # before it trains
    assert (out / "runs" / "baseline" / "seed1" / "weights" / "last.pt").is_file()
    assert weights.stat().st_mtime_ns == stamp
    table = json.loads((out / "ablation.json").read_text())
    # the table holds every finished seed, and says so at its top level too
    assert table["seeds"] == [0, 1] and [r["seeds"] for r in table["rows"]] == [[0, 1]]
    capsys.readouterr()
    assert main([*argv, "--table-only", "--val", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"daik: error: ablate: --val {tmp_path / 'nowhere'}: folder does not exist"


def test_table_only_without_finished_runs_is_an_error(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(make_spec(data_root, tmp_path / "base", epochs=1).model_dump_json())
    out = tmp_path / "abl"
    assert main(["ablate", str(spec_file), "--grid", "daik", "--out", str(out), "--table-only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"daik: error: ablate --table-only: no finished run in {out} scored on {data_root / 'val'}"
    ]


def test_a_stopped_ablation_resumes_where_it_stopped(data_root: Path, tmp_path: Path) -> None:
    spec = make_spec(data_root, tmp_path / "base", epochs=2, eval_interval=2)
    out = tmp_path / "abl"
    stop = StopFlag()

    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> None:
            stop.request("test")

    first = run_ablation(
        spec,
        parse_grid([{"name": "baseline"}]),
        [0],
        out,
        callbacks=lambda: [StopAfterFirstEpoch(), stop],
        log=io.StringIO(),
    )
    assert first.status == "stopped" and first.records == []
    assert len(_metrics(out / "runs" / "baseline" / "seed0")) == 1  # one epoch done, last.pt written
    log = io.StringIO()
    second = run_ablation(spec, parse_grid([{"name": "baseline"}]), [0], out, log=log)
    assert "resuming" in log.getvalue() and second.status == "completed"
    rows = _metrics(out / "runs" / "baseline" / "seed0")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert second.records[0].extra["epoch"] == 2


def test_cli_refuses_bad_input_before_training(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(make_spec(data_root, tmp_path / "base", epochs=1).model_dump_json())
    out = tmp_path / "abl"
    assert main(["ablate", str(spec_file), "--grid", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["daik: error: grid: unknown grid 'nope' (named grids: paper, kd, daik)"]
    # the paper grid needs the teacher: refused before anything is trained
    assert main(["ablate", str(spec_file), "--out", str(out)]) == 2
    assert "give teacher.checkpoint in the spec or --teacher" in capsys.readouterr().err
    assert main(["ablate", str(spec_file), "--only", "baseline,nope", "--out", str(out)]) == 2
    assert "--only: not in the grid: 'nope' (grid: teacher," in capsys.readouterr().err
    assert main(["ablate", str(spec_file), "--seeds", "2", "--only-seeds", "1,2", "--out", str(out)]) == 2
    assert "--only-seeds: '1,2' is not part of --seeds 2 (seeds 0, 1)" in capsys.readouterr().err
    repeated = ["--only-seeds", "0", "--only-seeds", "2"]  # the option repeated is one list
    assert main(["ablate", str(spec_file), "--seeds", "2", *repeated, "--out", str(out)]) == 2
    assert "--only-seeds: '0,2' is not part of --seeds 2 (seeds 0, 1)" in capsys.readouterr().err
    assert not (out / "runs").exists()


def test_the_table_names_the_seeds_its_rows_hold(tmp_path: Path) -> None:
    records = [RunRecord("teacher", 7, 0.7), RunRecord("baseline", 1, 0.3), RunRecord("DAIK", 2, 0.4)]
    write_table(tmp_path, records, ["teacher", "baseline", "DAIK"], spec="s", seeds=[2])
    table = json.loads((tmp_path / "ablation.json").read_text())
    assert table["seeds"] == [1, 2]  # not the call's [2], nor the teacher's checkpoint seed
    assert [r["seeds"] for r in table["rows"]] == [[7], [1], [2]]
