"""The options of inference with a checkpoint, in one type: :class:`InferenceOptions`.

``daik predict``, ``daik eval --weights``, :meth:`daik_core.api.Detector.predict` and
:meth:`~daik_core.api.Detector.evaluate` take the same options (input size, score threshold, NMS, tiling,
batch, device); each builds one :class:`InferenceOptions`, which checks them when it is made. An option left
``None`` takes its default from the checkpoint when the options are resolved against it:
:meth:`InferenceOptions.for_images` (prediction on image files: :class:`InferenceSettings`) or
:func:`daik_core.inference.evaluate.evaluate_checkpoint` (evaluation with the training's settings).
"""

from __future__ import annotations

from dataclasses import dataclass

from daik_core.engine.checkpoint import CheckpointMeta
from daik_core.errors import DaikError

__all__ = ["PREDICT_CONF", "PREDICT_MAX_DET", "InferenceOptions", "InferenceSettings"]

#: The score threshold of prediction on images when none is given (evaluation uses the training's).
PREDICT_CONF = 0.25
#: Boxes per window of prediction on images when none is given (evaluation uses the training's).
PREDICT_MAX_DET = 1000


@dataclass(frozen=True)
class InferenceSettings:
    """Options resolved against a checkpoint: how images become windows and windows detections (see
    :mod:`daik_core.inference.predict`)."""

    imgsz: int
    conf: float
    iou: float
    max_det: int
    split_size: int  # 0: no tiling
    gap: int
    merge_iou: float
    batch: int


@dataclass(frozen=True)
class InferenceOptions:
    """What a caller asks of inference; ``None``: the checkpoint's (or the use's) default.

    ``imgsz``: input size (a positive multiple of 32; default the training's). ``conf``: score threshold
    in ``[0, 1)`` (prediction: 0.25; evaluation: the training's ``hparams.conf_thr``). ``iou``: the
    per-window class-aware rotated NMS IoU in ``[0, 1]`` (default the training's ``hparams.nms_iou``).
    ``max_det``: boxes per window, >= 1 (prediction: 1000; evaluation: the training's). ``split_size`` /
    ``gap``: tiling (default the training data's ``dataset.split``; ``split_size`` 0: no tiling).
    ``merge_iou``: the NMS IoU merging the windows of an image. ``batch``: windows per batch, >= 1.
    ``device``: ``auto``, ``cpu``, ``cuda[:i]`` or ``mps`` (an ONNX model runs on the CPU).

    Invalid values raise :class:`~daik_core.errors.DaikError` naming the command-line option.
    """

    imgsz: int | None = None
    conf: float | None = None
    iou: float | None = None
    max_det: int | None = None
    split_size: int | None = None
    gap: int | None = None
    merge_iou: float = 0.1
    batch: int = 8
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.imgsz is not None and (self.imgsz < 32 or self.imgsz % 32):
            raise DaikError(f"--imgsz must be a positive multiple of 32, got {self.imgsz}")
        if self.conf is not None and not 0.0 <= self.conf < 1.0:
            raise DaikError(f"--conf must be in [0, 1), got {self.conf}")
        for name, v in (("--iou", self.iou), ("--merge-iou", self.merge_iou)):
            if v is not None and not 0.0 <= v <= 1.0:
                raise DaikError(f"{name} must be in [0, 1], got {v}")
        if self.max_det is not None and self.max_det < 1:
            raise DaikError(f"--max-det must be >= 1, got {self.max_det}")
        if self.batch < 1:
            raise DaikError(f"--batch must be >= 1, got {self.batch}")
        if self.split_size is not None and self.split_size < 0:
            raise DaikError(f"--split-size must be >= 0 (0: no tiling), got {self.split_size}")

    def for_images(self, meta: CheckpointMeta) -> InferenceSettings:
        """The settings of ``daik predict``, checked: ``imgsz`` defaults to the checkpoint's training size,
        ``split_size`` / ``gap`` to the tiling of its training data (``dataset.split``; none when it was not
        tiled; ``split_size`` 0 turns tiling off), ``iou`` (the per-window NMS) to the NMS IoU of its
        training evaluations (``hparams.nms_iou``), ``conf`` to :data:`PREDICT_CONF` and ``max_det`` to
        :data:`PREDICT_MAX_DET`."""
        trained = meta.split or {}
        split_size = self.split_size
        if split_size is None:
            split_size = int(trained["size"]) if "size" in trained else 0
        gap = self.gap
        if gap is None:
            gap = int(trained.get("gap", 200))
        if split_size and not 0 <= gap < split_size:
            raise DaikError(f"--gap must be in [0, --split-size = {split_size}), got {gap}")
        return InferenceSettings(
            imgsz=self.imgsz if self.imgsz is not None else meta.imgsz,
            conf=self.conf if self.conf is not None else PREDICT_CONF,
            iou=self.iou if self.iou is not None else meta.nms_iou,
            max_det=self.max_det if self.max_det is not None else PREDICT_MAX_DET,
            split_size=split_size,
            gap=gap,
            merge_iou=self.merge_iou,
            batch=self.batch,
        )
