"""The Python API, for notebooks and scripts: train a job spec, load a trained detector, detect, evaluate.

::

    from daik_core import Detector, train

    results = train("configs/synth-n.yaml", epochs=5)          # what results.json holds
    det = Detector.load(results["weights"]["best"], device="cpu")
    found = det.predict("scene.png", conf=0.3)                  # boxes, polygons, scores, class names
    print(det.evaluate("data/synth/val").format_table())        # the table of `daik eval`

Each function is the command line's code path: :func:`train` is ``daik train`` (the same spec file, the same
overrides), :meth:`Detector.predict` is ``daik predict`` for one image (large images tiled as in training),
:meth:`Detector.evaluate` is ``daik eval --weights --data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daik_core.config import JobSpec, load_spec, spec_from_mapping, spec_overrides
from daik_core.data.image_header import decode_image
from daik_core.engine.checkpoint import CheckpointMeta, load_detector
from daik_core.engine.distributed import resolve_device
from daik_core.errors import DaikError
from daik_core.eval.dota import DotaResult
from daik_core.inference.evaluate import evaluate_checkpoint
from daik_core.inference.options import InferenceOptions
from daik_core.inference.predict import WindowModel, detect_image, torch_windows
from daik_core.structures.boxes import obb_to_poly

__all__ = ["Detector", "Predictions", "train"]


def train(
    spec: str | Path | JobSpec | Mapping[str, Any],
    *,
    epochs: int | None = None,
    batch: int | None = None,
    imgsz: int | None = None,
    device: str | None = None,
    workers: int | None = None,
    output: str | Path | None = None,
    resume: bool | str | Path = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a job spec, as ``daik train SPEC`` does, and return the run's results (``results.json``:
    ``status``, ``epochs``, ``map50``, ``map50_95``, ``ap50`` per class, ``params``, ``weights`` ...).

    ``spec``: a spec file (its relative paths are relative to its folder), a mapping of the same fields
    (relative to the current directory) or a :class:`~daik_core.config.JobSpec`. ``epochs``, ``batch``,
    ``imgsz``, ``device``, ``workers`` and ``output`` override the spec, like the command-line options;
    ``resume`` continues a stopped run (``True``: from ``<output>/weights/last.pt``), ``overwrite`` starts
    afresh over an earlier run. A run stopped early returns ``status: "stopped"``.

    >>> from daik_core import train
    >>> results = train("spec.yaml", epochs=1, output="runs/notebook", progress=False)
    >>> results["status"], results["epochs"], sorted(results["weights"])
    ('completed', 1, ['best', 'last'])
    """
    from daik_core.engine.callbacks import ProgressCallback
    from daik_core.engine.trainer import Trainer

    if isinstance(spec, JobSpec):
        job, source = spec, "spec"
    elif isinstance(spec, Mapping):
        job, source = spec_from_mapping(spec, Path.cwd()), "spec"
    else:
        job, source = load_spec(spec), str(spec)
    hparams = {
        key: value
        for key, value in (
            ("epochs", epochs),
            ("batch", batch),
            ("imgsz", imgsz),
            ("device", device),
            ("workers", workers),
        )
        if value is not None
    }
    job = job.with_overrides(
        spec_overrides(hparams, output), source=f"{source} with the overrides of train()"
    )
    callbacks = [ProgressCallback(disable=not progress)]
    trainer = Trainer(job, callbacks, resume=resume or None, overwrite=overwrite)
    return dict(trainer.fit().results)


@dataclass(frozen=True)
class Predictions:
    """The objects found in one image, by descending score, in the image's pixels (``N`` of them).

    ``boxes (N, 5)``: rotated boxes ``(cx, cy, w, h, angle)``, the angle in radians in ``[0, pi)`` and
    ``w >= h`` (the convention of :mod:`daik_core.structures.boxes`); ``polygons (N, 4, 2)``: their
    corners; ``scores (N,)``; ``labels (N,)``: class indices; ``names``: the class name of each;
    ``windows``: the tiles the image was cut into (1: not tiled).
    """

    boxes: np.ndarray
    polygons: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    windows: int

    def __len__(self) -> int:
        return len(self.scores)


class Detector:
    """A trained detector, ready for inference: :meth:`load` a checkpoint, then :meth:`predict` images and
    :meth:`evaluate` it on a dataset. ``model`` is the fused torch module (``None`` for an ONNX model),
    ``classes`` and ``imgsz`` come from the checkpoint."""

    def __init__(
        self,
        weights: Path,
        meta: CheckpointMeta,
        device: torch.device,
        window_model: WindowModel,
        model: torch.nn.Module | None = None,
    ) -> None:
        self.weights = weights
        self.meta = meta
        self.device = device
        self.model = model
        self._windows = window_model

    @classmethod
    def load(cls, weights: str | Path, device: str = "auto") -> Detector:
        """Load a checkpoint written by ``daik train`` (its EMA weights), fuse the model for inference and
        place it on ``device`` (``auto``: CUDA when available, else the CPU); or load an ONNX model
        exported with ``daik export`` (run by onnxruntime on the CPU).

        >>> from daik_core import Detector
        >>> det = Detector.load("runs/demo/weights/best.pt", device="cpu")
        >>> det.classes[:2], det.imgsz, det.device.type
        (('plane', 'small-vehicle'), 64, 'cpu')
        """
        weights = Path(weights)
        if weights.suffix.lower() == ".onnx":
            from daik_core.inference.onnx_model import OnnxModel

            onnx_model = OnnxModel(weights)
            return cls(weights, onnx_model.meta, torch.device("cpu"), onnx_model.detect)
        dev = resolve_device(device)
        model, meta = load_detector(weights, map_location="cpu")
        model.fuse().to(dev)
        return cls(weights, meta, dev, torch_windows(model), model)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.classes

    @property
    def imgsz(self) -> int:
        """The input size it was trained at (the default of :meth:`predict`)."""
        return self.meta.imgsz

    def predict(
        self,
        image: str | Path | np.ndarray,
        *,
        conf: float = 0.25,
        iou: float | None = None,
        imgsz: int | None = None,
        max_det: int = 1000,
        split_size: int | None = None,
        gap: int | None = None,
        merge_iou: float = 0.1,
        batch: int = 8,
    ) -> Predictions:
        """Detect objects in one image, as ``daik predict`` does: ``image`` is a file or an ``(H, W, 3)``
        uint8 array in OpenCV's BGR order (``cv2.imread``); detections with score > ``conf`` after
        class-aware rotated NMS at ``iou`` (default: the training's, ``hparams.nms_iou``). An image larger
        than the training data's tiles (``dataset.split``; or ``split_size``) is cut into overlapping
        windows whose detections are merged (``merge_iou``).

        >>> det = Detector.load("runs/demo/weights/best.pt", device="cpu")
        >>> found = det.predict("data/val/images/synth_000000.png", conf=0.01)
        >>> found.boxes.shape[1:], found.polygons.shape[1:], len(found.names) == len(found)
        ((5,), (4, 2), True)
        >>> all(name in det.classes for name in found.names)
        True
        """
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise DaikError(
                    f"image: an (H, W, 3) uint8 BGR array, got {image.dtype} {tuple(image.shape)}"
                )
            pixels = image
        else:
            pixels = decode_image(image)
        options = InferenceOptions(
            imgsz=imgsz,
            conf=conf,
            iou=iou,
            max_det=max_det,
            split_size=split_size,
            gap=gap,
            merge_iou=merge_iou,
            batch=batch,
        )
        settings = options.for_images(self.meta)
        boxes, scores, labels, windows = detect_image(self._windows, pixels, settings, self.device)
        polygons = obb_to_poly(boxes.double()).reshape(-1, 4, 2) if len(boxes) else torch.zeros(0, 4, 2)
        return Predictions(
            boxes=boxes.double().numpy(),
            polygons=polygons.double().numpy(),
            scores=scores.float().numpy(),
            labels=labels.long().numpy(),
            names=tuple(self.classes[int(c)] for c in labels.tolist()),
            windows=windows,
        )

    def evaluate(
        self,
        data: str | Path,
        *,
        conf: float | None = None,
        iou: float | None = None,
        iou_thr: float = 0.5,
        metric: str = "voc07",
        imgsz: int | None = None,
        batch: int = 8,
        workers: int = 0,
        progress: bool = False,
    ) -> DotaResult:
        """DOTA Task1 mAP on a dataset (a DOTA or YOLO-OBB folder, or a data YAML's val split): the numbers
        and the table (``.format_table()``) of ``daik eval --weights W --data DIR``, which scores the
        checkpoint's EMA weights exactly as training evaluated them (defaults from its spec).

        >>> det = Detector.load("runs/demo/weights/best.pt", device="cpu")
        >>> result = det.evaluate("data/val")
        >>> result.metric, sorted(result.per_class) == sorted(det.classes), 0.0 <= result.map <= 1.0
        ('voc07', True, True)
        >>> print(result.format_table())  # doctest: +ELLIPSIS
        class ... AP50 AP50:95
        ...
        mAP50 (voc07, IoU > 0.5): ...
        """
        if self.model is None:
            raise DaikError(f"{self.weights}: evaluate() needs the checkpoint (.pt) of the exported model")
        options = InferenceOptions(imgsz=imgsz, conf=conf, iou=iou, batch=batch, device=str(self.device))
        out = evaluate_checkpoint(
            self.weights, data, options, iou_thr=iou_thr, metric=metric, workers=workers, progress=progress
        )
        return out.result

    def __repr__(self) -> str:
        return (
            f"Detector({str(self.weights)!r}: {self.meta.preset} preset, {len(self.classes)} classes, "
            f"imgsz {self.imgsz}, on {self.device})"
        )
