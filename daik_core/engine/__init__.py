"""Training engine: the trainer (``Trainer(spec, callbacks).fit()``), EMA, checkpoints (atomic save, exact
resume), DDP helpers and the callback / reporter protocol. Evaluation, prediction and export live in
:mod:`daik_core.inference`, which reads checkpoints through :mod:`daik_core.engine.checkpoint`.

Import the submodules for the full API; the names here are the ones other packages (the CLI, the worker)
use. The trainer's names (:class:`Trainer`, :class:`TrainResult`, :func:`lr_at`, :func:`train`) are imported
on first use: the trainer imports :mod:`daik_core.inference`, which imports this package's checkpoint and
DDP modules, so importing it here would make ``import daik_core.inference`` circular.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daik_core.engine.callbacks import (
    Callback,
    CallbackList,
    EvalPredictions,
    PlotsCallback,
    ProgressCallback,
    StopFlag,
    TrainInfo,
)
from daik_core.engine.checkpoint import (
    FORMAT_VERSION,
    CheckpointMeta,
    load_checkpoint,
    load_detector,
    save_checkpoint,
)
from daik_core.engine.ema import ModelEMA

if TYPE_CHECKING:
    from daik_core.engine.trainer import Trainer, TrainResult, lr_at, train

__all__ = [
    "FORMAT_VERSION",
    "Callback",
    "CallbackList",
    "CheckpointMeta",
    "EvalPredictions",
    "ModelEMA",
    "PlotsCallback",
    "ProgressCallback",
    "StopFlag",
    "TrainInfo",
    "TrainResult",
    "Trainer",
    "load_checkpoint",
    "load_detector",
    "lr_at",
    "save_checkpoint",
    "train",
]

_TRAINER = ("Trainer", "TrainResult", "lr_at", "train")


def __getattr__(name: str) -> Any:
    if name in _TRAINER:
        from daik_core.engine import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'daik_core.engine' has no attribute {name!r}")
