"""Inference with a trained detector: evaluation on source images (:mod:`~daik_core.inference.evaluate`),
prediction on image files (:mod:`~daik_core.inference.predict`), ONNX export and the ONNX runtime model
(:mod:`~daik_core.inference.export`, :mod:`~daik_core.inference.onnx_model`) and the dashboard's gallery of a
run's final evaluation (:mod:`~daik_core.inference.gallery`). Their options (thresholds, tiling, device)
are one :class:`~daik_core.inference.options.InferenceOptions`.

It reads checkpoints through :mod:`daik_core.engine.checkpoint` and never imports the trainer (the trainer
imports it, to evaluate during training).
"""

from daik_core.inference.evaluate import (
    EvalOutput,
    PredictSettings,
    evaluate_checkpoint,
    evaluate_model,
    predict_dataset,
)
from daik_core.inference.options import InferenceOptions, InferenceSettings

__all__ = [
    "EvalOutput",
    "InferenceOptions",
    "InferenceSettings",
    "PredictSettings",
    "evaluate_checkpoint",
    "evaluate_model",
    "predict_dataset",
]
