"""Training engine: the trainer (``Trainer(spec, callbacks).fit()``), EMA, checkpoints (atomic save, exact
resume), DDP helpers, the callback / reporter protocol, evaluation on source images, prediction and export.

Import the submodules for the full API; the names here are the ones other packages (the CLI, the worker)
use.
"""

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
from daik_core.engine.evaluate import EvalOutput, evaluate_model, predict_dataset
from daik_core.engine.trainer import Trainer, TrainResult, lr_at, train

__all__ = [
    "FORMAT_VERSION",
    "Callback",
    "CallbackList",
    "CheckpointMeta",
    "EvalOutput",
    "EvalPredictions",
    "ModelEMA",
    "PlotsCallback",
    "ProgressCallback",
    "StopFlag",
    "TrainInfo",
    "TrainResult",
    "Trainer",
    "evaluate_model",
    "load_checkpoint",
    "load_detector",
    "lr_at",
    "predict_dataset",
    "save_checkpoint",
    "train",
]
