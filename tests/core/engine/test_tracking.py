"""Experiment tracking on real short trainings: MLflow against a local tracking store (a folder and a SQLite
database), read back with MLflow's own client; `daik ablate` as a parent run with child runs; TensorBoard
event files read back with TensorBoard's reader; a dead tracking server costs a warning, not the run; a
configured tracker without its extra is a one-line error; the tracking fields leave the training hash alone.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daik_core.ablation.grid import config_hash, parse_grid
from daik_core.ablation.runner import run_ablation
from daik_core.config import parse_spec
from daik_core.engine import Trainer
from daik_core.engine import tracking as tracking_mod
from daik_core.engine.tracking import (
    BATCH_ID_ENV,
    BATCH_NAME_ENV,
    JOB_ID_ENV,
    MLFLOW_EXPERIMENT_ENV,
    MLFLOW_URI_ENV,
    TENSORBOARD_ENV,
    TrackingWarning,
    flatten_params,
    tracking_callbacks,
)
from daik_core.errors import DaikError
from tests.core.engine.conftest import make_spec

TRACKING_ENV = (
    MLFLOW_URI_ENV,
    MLFLOW_EXPERIMENT_ENV,
    TENSORBOARD_ENV,
    JOB_ID_ENV,
    BATCH_ID_ENV,
    BATCH_NAME_ENV,
)


@pytest.fixture(autouse=True)
def _no_tracking_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sets the tracking environment it means (none leaks in from the shell or CI)."""
    for name in TRACKING_ENV:
        monkeypatch.delenv(name, raising=False)
    yield


# ------------------------------------------------------------------------------------ no extras needed
def test_flatten_params_dotted_strings_within_the_limit() -> None:
    params = flatten_params(
        {"hparams": {"epochs": 2, "lr": 0.002, "amp": True, "mlflow": None}, "classes": ["a", "b"], "e": {}},
        limit=12,
    )
    assert params == {
        "hparams.epochs": "2",
        "hparams.lr": "0.002",
        "hparams.amp": "True",
        "hparams.mlflow": "None",
        "classes": '["a","b"]',
        "e": "{}",
    }
    assert flatten_params({"x": "y" * 20}, limit=8) == {"x": "yyyyy..."}


def test_tracking_fields_leave_the_training_hash_alone(tmp_path: Path) -> None:
    """Where a run is reported is not what it trains: the hash ignores the tracking fields, so a finished
    run is reused when tracking is turned on, and the hashes of specs written before the fields stay."""
    base = {"name": "h", "dataset": {"train": "/d/train", "classes": "a,b"}, "output": "/o"}
    plain = parse_spec(base)
    tracked = parse_spec({**base, "hparams": {"mlflow": "http://mlflow:5000", "tensorboard": True}})
    assert (plain.hparams.mlflow, plain.hparams.tensorboard) == (None, False)
    assert config_hash(plain) == config_hash(tracked)
    assert config_hash(plain) != config_hash(parse_spec({**base, "hparams": {"epochs": 3}}))


def test_nothing_is_tracked_unless_configured(data_root: Path, tmp_path: Path) -> None:
    spec = make_spec(data_root, tmp_path / "run")
    assert tracking_callbacks(spec, environ={}) == []


def test_a_configured_tracker_without_its_extra_is_a_one_line_error(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tracking_mod.importlib.util.find_spec
    monkeypatch.setattr(
        tracking_mod.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("mlflow", "tensorboard") else real(name, *a),
    )
    spec = make_spec(data_root, tmp_path / "run", mlflow="http://127.0.0.1:1")
    with pytest.raises(DaikError) as err:
        Trainer(spec).fit()
    assert str(err.value) == (
        "experiment tracking with MLflow (hparams.mlflow) needs the mlflow extra: pip install 'daik[mlflow]'"
    )
    assert not (tmp_path / "run" / "weights").exists()  # refused before any work
    monkeypatch.setenv(TENSORBOARD_ENV, "1")
    with pytest.raises(DaikError, match=r"needs the tensorboard extra: pip install 'daik\[tensorboard\]'"):
        Trainer(make_spec(data_root, tmp_path / "run2")).fit()


# --------------------------------------------------------------------- one training, both trackers on
@pytest.fixture(scope="module")
def tracked_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two epochs with MLflow (a SQLite store, from the spec) and TensorBoard (from the environment) on,
    run as the service's worker runs a job (its id in ``DAIK_JOB_ID``)."""
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    pytest.importorskip("sqlalchemy")  # MLflow's SQLite store
    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        for name in TRACKING_ENV:
            mp.delenv(name, raising=False)
        mp.setenv(JOB_ID_ENV, "job-0123")
        mp.setenv(TENSORBOARD_ENV, "1")
        mp.setenv(MLFLOW_EXPERIMENT_ENV, "daik-tests")
        spec = make_spec(data_root, root / "run", name="tracked", mlflow=uri)
        result = Trainer(spec).fit()
    assert result.status == "completed"
    yield {"uri": uri, "out": root / "run", "root": root}


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(client: Any, experiment: str = "daik-tests", where: str = "") -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return list(client.search_runs([exp.experiment_id], filter_string=where, max_results=100))


def test_mlflow_run_has_params_tags_metrics_and_artifacts(tracked_run: dict[str, Any]) -> None:
    client = _client(tracked_run["uri"])
    runs = _runs(client)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    tags, params = run.data.tags, run.data.params
    assert tags["daik.job_id"] == "job-0123" and tags["daik.kind"] == "train"
    assert "mlflow.parentRunId" not in tags
    assert params["hparams.epochs"] == "2" and params["hparams.imgsz"] == "64" and params["name"] == "tracked"
    assert params["student.preset"] == "n" and params["dataset.classes"].startswith("plane,")
    # one value per epoch of the epoch metrics, at step = epoch
    for key in ("loss", "loss_cls", "map50", "map50_95", "lr"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2], key
    lines = [json.loads(x) for x in (tracked_run["out"] / "metrics.jsonl").read_text().splitlines()]
    loss = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    assert [m.value for m in loss] == pytest.approx([line["loss"] for line in lines])
    # the batch's terms every 10 optimiser steps (2 epochs x 2 iterations: none here) are the step/ keys;
    # the per-class APs are ap50/<class>
    assert any(k.startswith("ap50/") for k in run.data.metrics)
    # the artifacts of a completed run
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.json", "spec.yaml", "metrics.jsonl", "weights"} <= names
    assert [a.path for a in client.list_artifacts(run.info.run_id, "weights")] == ["weights/best.pt"]
    local = client.download_artifacts(run.info.run_id, "results.json", str(tracked_run["root"]))
    assert json.loads(Path(local).read_text())["epochs"] == 2
    # the run folder remembers its MLflow run (a resume continues it)
    record = json.loads((tracked_run["out"] / "mlflow.json").read_text())
    assert record["run_id"] == run.info.run_id and record["tracking_uri"] == tracked_run["uri"]


def test_tensorboard_event_files_hold_the_scalars(tracked_run: dict[str, Any]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = tracked_run["out"] / "tensorboard"
    assert list(folder.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(folder))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss", "loss_cls", "lr", "map50", "map50_95", "step/loss", "step/lr"} <= tags
    assert [e.step for e in acc.Scalars("loss")] == [1, 2]
    lines = [json.loads(x) for x in (tracked_run["out"] / "metrics.jsonl").read_text().splitlines()]
    assert [e.step for e in acc.Scalars("step/loss")] == list(range(1, lines[-1]["step"] + 1))  # every step
    assert [e.value for e in acc.Scalars("map50")] == pytest.approx([line["map50"] for line in lines])


def test_resuming_continues_the_same_mlflow_run(data_root: Path, tmp_path: Path) -> None:
    """A stopped run ends KILLED; resumed, it goes on in the same MLflow run (a folder store here)."""
    pytest.importorskip("mlflow")
    from daik_core.engine.callbacks import Callback

    class StopAfterEpoch(Callback):
        def __init__(self) -> None:
            self.done = False

        def on_epoch_end(self, epoch: int, metrics: Any) -> None:
            self.done = True

        def should_stop(self) -> bool:
            return self.done

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = make_spec(data_root, tmp_path / "run", mlflow=uri, val=False)
    # the first part with a callback of our own: the batch's terms at every step (the default: every 10th)
    mine = tracking_mod.MlflowCallback(uri, spec, step_interval=1)
    assert Trainer(spec, [StopAfterEpoch(), mine]).fit().status == "stopped"
    client = _client(uri)
    (first,) = _runs(client, "daik")
    assert first.info.run_id == mine.run_id
    assert first.info.status == "KILLED" and first.data.tags["daik.job_id"] == "t"  # the spec's name
    steps = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])["step"]
    history = client.get_metric_history(first.info.run_id, "step/loss")
    assert sorted(m.step for m in history) == list(range(1, steps + 1))
    assert "step/images_per_s" not in first.data.metrics and "step/lr" in first.data.metrics
    assert Trainer(spec, resume=True).fit().status == "completed"
    (run,) = _runs(client, "daik")
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == [1, 2]


def test_a_dead_tracking_server_costs_a_warning_not_the_run(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv(MLFLOW_URI_ENV, "http://127.0.0.1:9")  # the discard port: nothing listens
    spec = make_spec(data_root, tmp_path / "run", epochs=1, val=False)
    with pytest.warns(TrackingWarning, match=r"MLflow \(http://127.0.0.1:9\): starting the run failed"):
        result = Trainer(spec).fit()
    assert result.status == "completed" and (tmp_path / "run" / "results.json").is_file()


# ------------------------------------------------------------------------------------------- batches
def test_ablate_is_a_parent_run_with_a_child_run_per_trained_run(data_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = make_spec(data_root, tmp_path / "base", epochs=1, mlflow=uri, name="abl")
    grid = parse_grid([{"name": "baseline"}, {"name": "+AAL", "losses": {"aal": {"enabled": True}}}])
    result = run_ablation(spec, grid, [0], tmp_path / "out", log=io.StringIO())
    assert result.status == "completed"
    client = _client(uri)
    runs = _runs(client, "daik")
    (parent,) = [r for r in runs if r.data.tags.get("daik.role") == "batch"]
    children = [r for r in runs if r is not parent]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "ablate abl"
    assert len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {r.data.tags["daik.batch_config"] for r in children} == {"baseline", "+AAL"}
    assert {r.data.tags["daik.job_id"] for r in children} == {"abl-baseline-s0", "abl-plus-aal-s0"}
    by_config = {r.data.tags["daik.batch_config"]: r for r in children}
    aal = by_config["+AAL"]
    assert aal.data.params["losses.aal.enabled"] == "True" and aal.info.status == "FINISHED"
    assert by_config["baseline"].data.params["losses.aal.enabled"] == "False"
    # the final score of each run (scored after training) is in its run; the table is the parent's
    record = next(r for r in result.records if r.config == "+AAL")
    assert aal.data.metrics["final/map50"] == pytest.approx(record.map50)
    assert {"ablation.md", "ablation.json", "ablation.csv"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
    # the same ablation again trains nothing and finds the same parent run
    run_ablation(spec, grid, [0], tmp_path / "out", log=io.StringIO())
    assert len(_runs(client, "daik")) == 3


def test_a_service_batch_has_one_parent_run_for_its_jobs(tmp_path: Path) -> None:
    """The worker's trainers of one batch (``DAIK_BATCH_ID``) find or make the same parent run, the later
    of two made at once deleted."""
    pytest.importorskip("mlflow")
    client = _client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("b")
    first = tracking_mod.batch_parent_run(client, exp, "b-1", "nightly")
    assert tracking_mod.batch_parent_run(client, exp, "b-1", "nightly") == first
    assert client.get_run(first).info.status == "FINISHED"
    assert client.get_run(first).data.tags["daik.role"] == "batch"
    # another process makes one at the same time (between our search and our create): the earlier stands,
    # ours is deleted
    real_create = client.create_run
    made: list[str] = []

    def racing_create(experiment_id: str, **kw: Any) -> Any:
        if not made:
            other = real_create(experiment_id, tags={"daik.batch_id": "b-2", "daik.role": "batch"})
            made.append(other.info.run_id)
        import time

        time.sleep(0.01)  # a later start time
        run = real_create(experiment_id, **kw)
        made.append(run.info.run_id)
        return run

    client.create_run = racing_create
    assert tracking_mod.batch_parent_run(client, exp, "b-2", "other") == made[0]
    assert client.get_run(made[1]).info.lifecycle_stage == "deleted"
