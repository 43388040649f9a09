"""The trainer end to end on tiny synthetic data: the loss falls, the files are written, resume is exact,
a stop checkpoints, bad input fails before training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from daik_core.cli import main
from daik_core.config import parse_spec
from daik_core.engine import Callback, StopFlag, Trainer, TrainInfo
from daik_core.engine.checkpoint import load_detector
from daik_core.engine.environment import compute_environment
from daik_core.engine.trainer import legacy_loss_changes
from daik_core.errors import DaikError
from tests.core.engine.conftest import NO_AUGMENT, make_spec

LOSS_TERMS = ("loss_cls", "loss_box", "loss_dfl", "loss_angle")
# fields of a metrics line that measure time, not training
TIMING = ("images_per_s", "epoch_time_s", "eval_time_s")


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.batch_losses: list[float] = []

    def on_train_start(self, info: TrainInfo) -> None:
        self.events.append(("start", info))

    def on_batch_end(self, epoch: int, iteration: int, logs: Mapping[str, float]) -> None:
        self.batch_losses.append(logs["loss"])

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        self.events.append(("epoch", epoch))

    def on_eval(self, epoch: int, result: Any) -> None:
        self.events.append(("eval", epoch))

    def on_checkpoint(self, path: Path, epoch: int, is_best: bool) -> None:
        self.events.append(("checkpoint", (path.name, epoch, is_best)))

    def on_train_end(self, results: Mapping[str, Any]) -> None:
        self.events.append(("end", results["status"]))


class StopAfter(StopFlag):
    """Asks to stop once ``iterations`` optimiser steps (or ``epochs`` epochs) are done."""

    def __init__(self, iterations: int | None = None, epochs: int | None = None) -> None:
        super().__init__()
        self.iterations, self.epochs, self.seen = iterations, epochs, 0

    def on_batch_end(self, epoch: int, iteration: int, logs: Mapping[str, float]) -> None:
        self.seen += 1
        if self.iterations is not None and self.seen >= self.iterations:
            self.request("test")

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        if self.epochs is not None and epoch >= self.epochs:
            self.request("test")


def _metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _without_timing(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in line.items() if k not in TIMING} for line in lines]


def _max_state_diff(a: Path, b: Path) -> float:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    worst = 0.0
    for key in ("model",):
        for name, t in sa[key].items():
            worst = max(worst, (t.double() - sb[key][name].double()).abs().max().item())
    for name, t in sa["ema"]["state"].items():
        worst = max(worst, (t.double() - sb["ema"]["state"][name].double()).abs().max().item())
    return worst


def test_smoke_overfit_two_images(data_root: Path, tmp_path: Path) -> None:
    """24 steps on 2 images (8 copies each, no augmentation) at 128 px: the loss falls clearly, and every
    output file is there."""
    out = tmp_path / "run"
    spec = make_spec(
        data_root,
        out,
        dataset={"train": str(data_root / "overfit")},
        augment=NO_AUGMENT,
        epochs=3,
        batch=2,
        imgsz=128,
        warmup_epochs=0.25,
        eval_interval=10,  # evaluates at the end only
    )
    rec = Recorder()
    result = Trainer(spec, [rec]).fit()
    assert result.status == "completed" and result.epoch == 3 and result.step == 24

    losses = rec.batch_losses
    assert len(losses) == 24
    first, last = sum(losses[:4]) / 4, sum(losses[-6:]) / 6
    assert last < 0.8 * first, losses

    lines = _metrics(out)
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert [line["step"] for line in lines] == [8, 16, 24]
    for line in lines:
        for term in LOSS_TERMS:
            assert isinstance(line[term], float)
        assert line["loss"] == pytest.approx(sum(line[t] for t in LOSS_TERMS), rel=1e-6)
        assert line["images_per_s"] > 0 and line["epoch_time_s"] > 0
    assert "map50" not in lines[0] and "map50" in lines[2]  # eval_interval 10: the last epoch only
    assert lines[2]["lr"] == pytest.approx(spec.hparams.lr * spec.hparams.lr_final)
    assert set(lines[2]["ap50"]) == set(spec.dataset.class_names())

    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed"
    for key in ("map50", "map50_95", "ap50", "best_epoch", "params", "gflops", "train_time_s"):
        assert key in results, key
    assert results["best_epoch"] == 3 and results["params"] > 0 and results["gflops"] > 0
    # the environment it trained in, with the id this process computes
    assert [e["id"] for e in results["environments"]] == [compute_environment("cpu")["id"]]
    # one parameter count: the fused model's, at the start and in results.json
    ((_, info),) = [e for e in rec.events if e[0] == "start"]
    fused, _ = load_detector(out / "weights" / "best.pt")
    assert info.params == results["params"] == sum(p.numel() for p in fused.fuse().parameters())
    assert info.gflops == results["gflops"]
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(out / "weights" / name, weights_only=True)
        assert ckpt["epoch"] == 3 and ckpt["model_info"]["imgsz"] == 128
    assert sorted(p.name for p in (out / "weights").iterdir()) == ["best.pt", "last.pt"]
    assert parse_spec(yaml.safe_load((out / "spec.yaml").read_text())) == spec
    gallery = json.loads((out / "gallery.json").read_text())  # the final evaluation, for the dashboard
    assert [g["image"] for g in gallery["images"]] == ["images/synth_000000.png", "images/synth_000001.png"]
    assert all(b["score"] >= gallery["score_threshold"] for g in gallery["images"] for b in g["boxes"])

    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("eval") == 1
    assert ("checkpoint", ("best.pt", 3, True)) in rec.events


def test_exact_resume_after_an_epoch_and_mid_epoch(data_root: Path, tmp_path: Path) -> None:
    """Deterministic CPU runs: 3 epochs straight == 2 epochs, stop, resume == stopped mid-epoch 2, resume.
    Compared: every metrics.jsonl field but the timings (exactly), model and EMA weights (<= 1e-6)."""
    augment = {"mosaic": 0.5, "rotate_deg": 10.0}  # exercise every random path of the loader
    straight = tmp_path / "straight"
    Trainer(make_spec(data_root, straight, epochs=3, augment=augment)).fit()

    at_epoch = tmp_path / "at-epoch"
    stop = StopAfter(epochs=2)
    first = Trainer(make_spec(data_root, at_epoch, epochs=3, augment=augment), [stop]).fit()
    assert first.status == "stopped" and first.epoch == 2 and first.iteration == 0
    assert not (at_epoch / "results.json").exists()
    second = Trainer(make_spec(data_root, at_epoch, epochs=3, augment=augment), resume=True).fit()
    assert second.status == "completed"

    mid = tmp_path / "mid-epoch"  # 6 images, batch 4: 2 steps per epoch; stop after 3 steps
    first = Trainer(make_spec(data_root, mid, epochs=3, augment=augment), [StopAfter(iterations=3)]).fit()
    assert first.status == "stopped" and (first.epoch, first.iteration, first.step) == (1, 1, 3)
    ckpt = torch.load(mid / "weights" / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["iteration"], ckpt["step"]) == (1, 1, 3)
    assert len(_metrics(mid)) == 1
    # as if stopped on another machine: the resume keeps that environment and adds this one
    elsewhere = {**ckpt["environments"][0], "id": "000000000000", "device_name": "elsewhere"}
    torch.save({**ckpt, "environments": [elsewhere]}, mid / "weights" / "last.pt")
    second = Trainer(
        make_spec(data_root, mid, epochs=3, augment=augment), resume=mid / "weights" / "last.pt"
    ).fit()
    assert second.status == "completed" and second.step == 6

    want = _without_timing(_metrics(straight))
    assert len(want) == 3 and all("map50" in line for line in want)
    for run in (at_epoch, mid):
        assert _without_timing(_metrics(run)) == want, run
        assert _max_state_diff(straight / "weights" / "last.pt", run / "weights" / "last.pt") <= 1e-6
        got = json.loads((run / "results.json").read_text())
        ref = json.loads((straight / "results.json").read_text())
        for key in ("map50", "map50_95", "ap50", "best_epoch", "step"):
            assert got[key] == ref[key], key
    here = compute_environment("cpu")["id"]
    at_epoch_envs = json.loads((at_epoch / "results.json").read_text())["environments"]
    assert [e["id"] for e in at_epoch_envs] == [here]  # resumed where it stopped: one environment
    mid_envs = json.loads((mid / "results.json").read_text())["environments"]
    assert [e["id"] for e in mid_envs] == ["000000000000", here]


def test_resume_refuses_a_finished_run_and_a_fresh_start_over_a_run(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(make_spec(data_root, out, epochs=1, val=False)).fit()
    assert (out / "weights" / "best.pt").exists()  # no validation: best follows last
    with pytest.raises(DaikError, match="raise --epochs"):
        Trainer(make_spec(data_root, out, epochs=1, val=False), resume=True).fit()
    with pytest.raises(DaikError, match="already holds a run"):
        Trainer(make_spec(data_root, out, epochs=1, val=False)).fit()
    with pytest.raises(DaikError, match="no checkpoint to resume"):
        Trainer(make_spec(data_root, tmp_path / "other", epochs=1), resume=True).fit()


def test_resume_falls_back_to_best_when_last_is_unreadable(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(make_spec(data_root, out, epochs=1, val=False)).fit()
    best_at_1 = (out / "weights" / "best.pt").read_bytes()
    Trainer(make_spec(data_root, out, epochs=2, val=False), resume=True).fit()
    (out / "weights" / "best.pt").write_bytes(best_at_1)  # best: epoch 1, last: epoch 2
    (out / "weights" / "last.pt").write_bytes(b"half a checkpoint")  # a torn copy, a bad disk
    with pytest.warns(UserWarning, match=r"last\.pt: not a readable checkpoint.*resuming from .*best\.pt"):
        result = Trainer(make_spec(data_root, out, epochs=3, val=False), resume=True).fit()
    assert result.status == "completed" and result.epoch == 3
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]  # epoch 2 of the lost point trained again, once
    # a named checkpoint that cannot be read is an error, not a silent fallback
    (out / "weights" / "bad.pt").write_bytes(b"junk")
    with pytest.raises(DaikError, match=r"bad\.pt: not a readable checkpoint"):
        Trainer(make_spec(data_root, out, epochs=4, val=False), resume=out / "weights" / "bad.pt").fit()


def test_resuming_a_run_trained_before_the_angle_loss_was_summed_says_so(
    data_root: Path, tmp_path: Path
) -> None:
    """A checkpoint whose spec predates ``loss.angle_reduction`` trained with the mean over the bins: a
    resume under the new default warns and names the setting that continues it as it was."""
    out = tmp_path / "run"
    Trainer(make_spec(data_root, out, epochs=1, val=False)).fit()
    last = out / "weights" / "last.pt"
    ckpt = torch.load(last, weights_only=False)
    del ckpt["spec"]["loss"]["angle_reduction"]  # as written before the field existed
    torch.save(ckpt, last)
    with pytest.warns(UserWarning, match=r"angle loss averaged.*set loss.angle_reduction: mean"):
        result = Trainer(make_spec(data_root, out, epochs=2, val=False), resume=True).fit()
    assert result.status == "completed"
    # continued as it was: no warning
    spec = make_spec(data_root, out, epochs=3, val=False).model_dump(mode="json")
    spec["loss"]["angle_reduction"] = "mean"
    del ckpt["spec"]["loss"]
    assert legacy_loss_changes(ckpt["spec"], parse_spec(spec)) == []
    ckpt["spec"]["loss"] = {"w_cls": 1.0}
    assert legacy_loss_changes(ckpt["spec"], parse_spec(spec)) == []
    old_kd = {"loss": {"angle_reduction": "sum"}, "losses": {"cls_kd": {"enabled": True, "scope": "all"}}}
    [change] = legacy_loss_changes(old_kd, parse_spec(spec))
    assert "class KD averaged over every anchor" in change


def _write_spec(path: Path, spec_dict: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec_dict))
    return path


def test_cli_missing_dataset_fails_before_training(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(data_root, tmp_path / "out", epochs=1).model_dump(mode="json")
    spec["dataset"]["val"] = str(tmp_path / "no-such-folder")
    path = _write_spec(tmp_path / "spec.yaml", spec)
    assert main(["train", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-folder" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "weights").exists()


def test_cli_sigterm_checkpoints_and_exits_143(data_root: Path, tmp_path: Path) -> None:
    """A real `daik train` process: SIGTERM after the first epoch -> last.pt at the stop point, exit 143."""
    out = tmp_path / "out"
    spec = make_spec(data_root, out, epochs=200, val=False, deterministic=False).model_dump(mode="json")
    path = _write_spec(tmp_path / "spec.yaml", spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daik_core.cli", "train", str(path), "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no epoch finished within 60 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "--resume" in err
    ckpt = torch.load(out / "weights" / "last.pt", weights_only=True)
    assert 1 <= ckpt["epoch"] < 200
    assert not (out / "results.json").exists()
