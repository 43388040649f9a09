"""The reporter / callback protocol between the trainer and whoever watches it (the CLI's progress bar,
the worker that writes epochs into Postgres, tests).

A callback subclasses :class:`Callback` and overrides the hooks it needs (every hook is a no-op here)::

    on_train_start(info: TrainInfo)                 once, before the first iteration
    on_epoch_start(epoch, num_iterations)           epoch is 1-based; iterations of this process
    on_batch_end(epoch, iteration, logs)            after every optimiser step; logs: loss_* terms of the
                                                    batch, "loss", "lr", "images_per_s" (floats)
    on_epoch_end(epoch, metrics)                    the line written to metrics.jsonl (see Trainer)
    on_eval(epoch, result: DotaResult)              after each validation
    on_predictions(epoch, preds: EvalPredictions)   right after on_eval: the detections it scored and
                                                    the ground truth (full-image pixels)
    on_checkpoint(path, epoch, is_best)             after last.pt / best.pt is written
    on_train_end(results)                           once: results.json's content, with "status"
    on_train_error(error)                           instead of on_train_end when training raised (the
                                                    error is re-raised after the hooks)
    should_stop() -> bool                           polled before every iteration

Under DDP the hooks run on rank 0 only; ``should_stop`` is polled on every rank and the ranks stop together
(a stop on any rank stops all). When a callback asks to stop, the trainer writes ``last.pt`` at the
current iteration (an exact mid-epoch resume point) and returns with status ``"stopped"``.

:class:`StopFlag` is the stop switch that signal handlers and workers set; :class:`ProgressCallback` is the
CLI's tqdm display; :class:`JsonlEvents` writes the run's typed events (:mod:`daik_core.events`) as JSON
lines for a process that tails them (``daik train --events FILE``, read by the job worker);
:class:`PlotsCallback` draws the run's pictures (:mod:`daik_core.plots`) when it completes.
"""

from __future__ import annotations

import functools
import math
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from daik_core.data.dota import DotaLabel, Task1Detections
from daik_core.eval.dota import DotaResult
from daik_core.events import Checkpoint, End, Epoch, Eval, Event, EventWriter, Progress, Start

__all__ = [
    "Callback",
    "CallbackList",
    "EvalPredictions",
    "JsonlEvents",
    "PlotsCallback",
    "ProgressCallback",
    "StopFlag",
    "TrainInfo",
]


@dataclass(frozen=True)
class TrainInfo:
    """What :meth:`Callback.on_train_start` learns about the run."""

    name: str
    output_dir: Path
    device: str
    world_size: int
    epochs: int
    start_epoch: int  # completed epochs before this run (0 unless resumed)
    iterations_per_epoch: int  # per process
    batch: int  # global batch
    imgsz: int
    train_images: int  # items of the train set (patches when tiled)
    val_images: int  # items of the val set (0: no evaluation)
    params: int  # of the fused (inference) model, as `daik info` and results.json report them
    gflops: float  # of the fused model at imgsz
    resumed_from: Path | None = None
    classes: tuple[str, ...] = field(default_factory=tuple)
    start_step: int = 0  # optimiser steps before this run (0 unless resumed)


@dataclass(frozen=True)
class EvalPredictions:
    """What an evaluation scored (:meth:`Callback.on_predictions`): the detections per class and the
    ground truth per image id, in full-image pixels, and each image's file."""

    detections: Mapping[str, Task1Detections]
    ground_truth: Mapping[str, DotaLabel]
    images: Mapping[str, Path]


class Callback:
    """Base class of trainer callbacks: every hook is a no-op (see the module docstring)."""

    def on_train_start(self, info: TrainInfo) -> None:
        pass

    def on_epoch_start(self, epoch: int, num_iterations: int) -> None:
        pass

    def on_batch_end(self, epoch: int, iteration: int, logs: Mapping[str, float]) -> None:
        pass

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        pass

    def on_eval(self, epoch: int, result: DotaResult) -> None:
        pass

    def on_predictions(self, epoch: int, predictions: EvalPredictions) -> None:
        pass

    def on_checkpoint(self, path: Path, epoch: int, is_best: bool) -> None:
        pass

    def on_train_end(self, results: Mapping[str, Any]) -> None:
        pass

    def on_train_error(self, error: BaseException) -> None:
        pass

    def should_stop(self) -> bool:
        return False


class CallbackList(Callback):
    """Several callbacks as one, called in order; ``should_stop`` is true when any says so."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, info: TrainInfo) -> None:
        for cb in self.callbacks:
            cb.on_train_start(info)

    def on_epoch_start(self, epoch: int, num_iterations: int) -> None:
        for cb in self.callbacks:
            cb.on_epoch_start(epoch, num_iterations)

    def on_batch_end(self, epoch: int, iteration: int, logs: Mapping[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_batch_end(epoch, iteration, logs)

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, metrics)

    def on_eval(self, epoch: int, result: DotaResult) -> None:
        for cb in self.callbacks:
            cb.on_eval(epoch, result)

    def on_predictions(self, epoch: int, predictions: EvalPredictions) -> None:
        for cb in self.callbacks:
            cb.on_predictions(epoch, predictions)

    def on_checkpoint(self, path: Path, epoch: int, is_best: bool) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(path, epoch, is_best)

    def on_train_end(self, results: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(results)

    def on_train_error(self, error: BaseException) -> None:
        for cb in self.callbacks:
            cb.on_train_error(error)

    def should_stop(self) -> bool:
        return any(cb.should_stop() for cb in self.callbacks)


class StopFlag(Callback):
    """A thread- and signal-safe stop switch: :meth:`request` (from a signal handler, another thread or a
    worker's poll) makes :meth:`should_stop` true. ``reason`` keeps what asked (e.g. the signal number)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: Any = None

    def request(self, reason: Any = None) -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def should_stop(self) -> bool:
        return self._event.is_set()


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:.4g}"
    return str(x)


class ProgressCallback(Callback):
    """The CLI's display: a tqdm bar over the iterations of each epoch with the live loss terms, lr and
    images/s; one summary line per epoch; the DOTA table after each evaluation."""

    def __init__(self, file: TextIO | None = None, disable: bool = False) -> None:
        self.file = file if file is not None else sys.stderr
        self.disable = disable
        self._bar: tqdm[Any] | None = None
        self._epochs = 0

    def _print(self, text: str) -> None:
        if self.disable:
            return
        tqdm.write(text, file=self.file)

    def on_train_start(self, info: TrainInfo) -> None:
        self._epochs = info.epochs
        resumed = (
            f", resumed from {info.resumed_from} after epoch {info.start_epoch}" if info.resumed_from else ""
        )
        self._print(
            f"train {info.name}: {info.train_images} train / {info.val_images} val images, "
            f"{len(info.classes)} classes, imgsz {info.imgsz}, batch {info.batch}, {info.epochs} epochs, "
            f"device {info.device} x{info.world_size}, {info.params / 1e6:.2f} M params "
            f"and {info.gflops:.2f} GFLOPs (fused){resumed} -> {info.output_dir}"
        )

    def on_epoch_start(self, epoch: int, num_iterations: int) -> None:
        self._close()
        self._bar = tqdm(
            total=num_iterations,
            desc=f"epoch {epoch}/{self._epochs}",
            unit="it",
            file=self.file,
            disable=self.disable,
            dynamic_ncols=True,
            leave=False,
        )

    def on_batch_end(self, epoch: int, iteration: int, logs: Mapping[str, float]) -> None:
        if self._bar is None:
            return
        post = {k.removeprefix("loss_"): f"{v:.3f}" for k, v in logs.items() if k.startswith("loss_")}
        post["loss"] = f"{logs.get('loss', float('nan')):.3f}"
        post["lr"] = f"{logs.get('lr', float('nan')):.2e}"
        post["img/s"] = f"{logs.get('images_per_s', float('nan')):.1f}"
        self._bar.set_postfix(post, refresh=False)
        self._bar.update(iteration - self._bar.n)  # redraws at most every mininterval

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        self._close()
        losses = " ".join(
            f"{k.removeprefix('loss_')} {_fmt(v)}" for k, v in metrics.items() if k.startswith("loss_")
        )
        line = (
            f"epoch {epoch}/{self._epochs}: loss {_fmt(metrics.get('loss'))} ({losses}), "
            f"lr {metrics.get('lr', float('nan')):.3g}, {metrics.get('images_per_s', 0.0):.1f} img/s, "
            f"{metrics.get('epoch_time_s', 0.0):.1f} s"
        )
        if "map50" in metrics:
            line += f", mAP50 {_fmt(metrics['map50'])}, mAP50:95 {_fmt(metrics.get('map50_95'))}"
        self._print(line)

    def on_eval(self, epoch: int, result: DotaResult) -> None:
        self._close()
        self._print(result.format_table())

    def on_checkpoint(self, path: Path, epoch: int, is_best: bool) -> None:
        if is_best:
            self._print(f"epoch {epoch}: new best -> {path}")

    def on_train_end(self, results: Mapping[str, Any]) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class JsonlEvents(Callback):
    """The run's events (:mod:`daik_core.events`) appended to ``path`` as JSON lines, each written at once,
    for a process that tails the file (the job worker turns them into database rows): ``Start``,
    ``Progress`` (at most one per ``progress_interval`` s), ``Eval``, ``Epoch``, ``Checkpoint`` and ``End``
    (``results.json``'s content). Epochs are 1-based and ``step`` counts the optimiser steps done;
    non-finite numbers are written as ``null``.

    In one epoch the trainer reports ``eval`` before ``epoch`` and then the checkpoints (``last.pt``, then
    ``best.pt`` when it is the best). The file is opened on the first event, so that under DDP only rank 0
    (the only one that calls the hooks) creates it.
    """

    def __init__(self, path: str | Path, progress_interval: float = 2.0) -> None:
        self.path = Path(path)
        self.progress_interval = progress_interval
        self._writer = EventWriter(self.path)
        self._iters = 0
        self._step = 0
        self._last_progress = -math.inf

    def _emit(self, event: Event) -> None:
        self._writer.write(event)

    def on_train_start(self, info: TrainInfo) -> None:
        self._iters = info.iterations_per_epoch
        self._step = info.start_step
        self._emit(
            Start(epochs=info.epochs, iters_per_epoch=self._iters, epoch=info.start_epoch, step=self._step)
        )

    def on_batch_end(self, epoch: int, iteration: int, logs: Mapping[str, float]) -> None:
        self._step += 1
        now = time.monotonic()
        if now - self._last_progress < self.progress_interval:
            return
        self._last_progress = now
        self._emit(
            Progress(
                epoch=epoch,
                iteration=iteration,
                iters_per_epoch=self._iters,
                step=self._step,
                loss=logs.get("loss"),
                images_per_s=logs.get("images_per_s"),
            )
        )

    def on_eval(self, epoch: int, result: DotaResult) -> None:
        self._emit(
            Eval(
                epoch=epoch,
                step=self._step,
                map50=result.map,
                map50_95=result.map_50_95,
                ap50=dict(result.per_class),
                ap50_95=dict(result.per_class_50_95 or {}),
            )
        )

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        self._step = int(metrics.get("step", self._step))
        values = {k: v for k, v in metrics.items() if k.startswith("loss_")}
        values.update({k: metrics[k] for k in ("loss", "lr", "images_per_s") if k in metrics})
        self._emit(Epoch(epoch=epoch, step=self._step, metrics=values))

    def on_checkpoint(self, path: Path, epoch: int, is_best: bool) -> None:
        self._emit(Checkpoint(epoch=epoch, step=self._step, path=str(path.resolve()), is_best=is_best))

    def on_train_end(self, results: Mapping[str, Any]) -> None:
        self._emit(End(status=results.get("status", "completed"), results=dict(results)))
        self.close()

    def close(self) -> None:
        self._writer.close()


class PlotsCallback(Callback):
    """Draws the run's pictures in its output folder when it completes (:mod:`daik_core.plots`):
    ``results.png`` from ``metrics.jsonl``; from the last evaluation ``pr_curve.png``,
    ``confusion_matrix.png`` (at IoU ``iou_thr`` and confidence ``conf``) and ``val_pred_<i>.jpg`` (the
    first ``val_images`` validation images, boxes scoring at least ``conf``); ``labels.png`` from
    ``train_labels()`` (``(polys (N, 8), class ids (N,))`` of the training set).

    A picture that cannot be drawn is skipped with a warning: plotting never fails a run.
    """

    def __init__(
        self,
        train_labels: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
        *,
        conf: float = 0.25,
        iou_thr: float = 0.5,
        val_images: int | None = None,
        max_boxes: int = 100,
    ) -> None:
        from daik_core.plots import VAL_PRED_IMAGES

        self.train_labels = train_labels
        self.conf = conf
        self.iou_thr = iou_thr
        self.val_images = VAL_PRED_IMAGES if val_images is None else val_images
        self.max_boxes = max_boxes
        self.output_dir: Path | None = None
        self.classes: tuple[str, ...] = ()
        self.name = ""
        self.result: DotaResult | None = None
        self.predictions: EvalPredictions | None = None
        self.written: list[Path] = []

    def on_train_start(self, info: TrainInfo) -> None:
        self.output_dir, self.classes, self.name = info.output_dir, tuple(info.classes), info.name

    def on_eval(self, epoch: int, result: DotaResult) -> None:
        self.result = result

    def on_predictions(self, epoch: int, predictions: EvalPredictions) -> None:
        self.predictions = predictions

    def on_train_end(self, results: Mapping[str, Any]) -> None:
        if results.get("status", "completed") == "completed" and self.output_dir is not None:
            self.write(self.output_dir)

    def _try(self, what: str, draw: Callable[[], Any]) -> None:
        try:
            out = draw()
        except Exception as err:  # a picture is never worth a failed run
            warnings.warn(f"plots: cannot draw {what}: {type(err).__name__}: {err}", stacklevel=3)
            return
        if isinstance(out, Path):
            self.written.append(out)

    def write(self, out: Path) -> list[Path]:
        """Draw every picture that has its data into ``out``; returns the files written."""
        from daik_core import plots

        self.written = []
        metrics = out / "metrics.jsonl"
        if metrics.is_file():
            self._try(
                "results.png",
                lambda: plots.plot_results(plots.read_metrics(metrics), out / "results.png", self.name),
            )
        if self.train_labels is not None:
            labels = self.train_labels

            def draw_labels() -> Path:
                polys, ids = labels()
                return plots.plot_labels(polys, ids, self.classes, out / "labels.png")

            self._try("labels.png", draw_labels)
        result = self.result
        if result is not None and result.curves:
            self._try(
                "pr_curve.png",
                lambda: plots.plot_pr_curves(
                    result.curves, out / "pr_curve.png", result.per_class, result.iou_thr
                ),
            )
        preds = self.predictions
        if preds is not None:
            self._try("confusion_matrix.png", lambda: self._confusion(preds, out))
            for i, image_id in enumerate(list(preds.ground_truth)[: self.val_images]):
                name = plots.val_pred_name(i)
                self._try(name, functools.partial(self._val_pred, preds, image_id, out / name))
        return list(self.written)

    def _confusion(self, preds: EvalPredictions, out: Path) -> Path:
        from daik_core.eval.confusion import confusion_matrix
        from daik_core.plots import plot_confusion_matrix

        matrix = confusion_matrix(
            preds.ground_truth, preds.detections, self.classes, iou_thr=self.iou_thr, conf=self.conf
        )
        path = out / "confusion_matrix.png"
        plot_confusion_matrix(matrix, self.classes, path, iou_thr=self.iou_thr, conf=self.conf)
        return path

    def _val_pred(self, preds: EvalPredictions, image_id: str, path: Path) -> Path:
        from daik_core.plots import draw_predictions

        dets: list[tuple[list[float], str, float]] = []
        for name, d in preds.detections.items():
            for j in np.flatnonzero(
                (np.asarray(d.image_ids, dtype=object) == image_id) & (d.scores >= self.conf)
            ).tolist():
                dets.append((d.polys[j].tolist(), name, float(d.scores[j])))
        dets.sort(key=lambda t: -t[2])
        label = preds.ground_truth.get(image_id, DotaLabel())
        gt = [(list(o.poly), o.name) for o in label.objects]
        return draw_predictions(
            preds.images[image_id], path, classes=self.classes, gt=gt, detections=dets[: self.max_boxes]
        )
