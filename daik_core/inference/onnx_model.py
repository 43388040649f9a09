"""An ONNX model written by ``daik export``, run by onnxruntime on the CPU: ``daik predict --weights
model.onnx`` and ``Detector.load("model.onnx")``.

Either graph of :mod:`daik_core.inference.export` serves as a
:data:`~daik_core.inference.predict.WindowModel`, so windows, letterboxing and the merge of tiles are those of
the torch path:

* the end-to-end graph returns each window's detections (one window per run, at the export size);
* the raw graph returns the head's logits, which :func:`~daik_core.models.postprocess` decodes and NMSes as
  for the torch model.

The file's metadata gives the classes, the input size and the defaults of ``daik predict`` (the training's
tiling and NMS IoU), as a checkpoint's do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from daik_core.config import HParams
from daik_core.engine.checkpoint import CheckpointMeta
from daik_core.errors import DaikError
from daik_core.models.detector import Detections, DetectorOutput, postprocess
from daik_core.models.head import make_anchor_points

__all__ = ["OnnxModel"]


class OnnxModel:
    """The model of an ONNX file of ``daik export``: :attr:`meta` (like a checkpoint's) and :meth:`detect`."""

    def __init__(self, path: str | Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise DaikError(
                "running an ONNX model needs onnxruntime: pip install 'daik[export]' (or pip install "
                "onnxruntime)"
            ) from None
        self.path = Path(path)
        if not self.path.is_file():
            raise DaikError(f"{self.path}: ONNX file does not exist")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for any unreadable file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DaikError(f"{self.path}: not a readable ONNX model: {first}") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if props.get("producer") != "daik":
            raise DaikError(f"{self.path}: not an ONNX model of `daik export` (no DAIK metadata)")
        self.end2end = props.get("graph") == "end2end"
        try:
            classes = tuple(str(c) for c in json.loads(props["classes"]))
            spec = json.loads(props.get("spec", "{}"))
            self.meta = CheckpointMeta(
                preset=props.get("preset", "n"),
                num_classes=len(classes),
                classes=classes,
                reg_max=int(props["reg_max"]),
                imgsz=int(props["imgsz"]),
                epoch=0,
                step=0,
                spec=spec if isinstance(spec, dict) else {},
            )
            self.strides = tuple(int(s) for s in json.loads(props.get("strides", "[8, 16, 32]")))
        except (KeyError, ValueError, TypeError):
            raise DaikError(f"{self.path}: malformed DAIK metadata in the ONNX file") from None
        if "nms_iou" not in (self.meta.spec.get("hparams") or {}):
            self.meta.spec.setdefault("hparams", {})["nms_iou"] = HParams().nms_iou

    def detect(self, images: Tensor, conf: float, iou: float, max_det: int) -> list[Detections]:
        """Detections of each window of ``images (B, 3, S, S)`` (a :data:`WindowModel`)."""
        x = images.detach().float().cpu().numpy()
        if not self.end2end:
            cls, box, angle = self.session.run(None, {"images": x})
            h, w = x.shape[2], x.shape[3]
            grids = [torch.empty(0, 0, h // s, w // s) for s in self.strides]
            points, strides = make_anchor_points(grids, self.strides)
            out = DetectorOutput(
                torch.from_numpy(cls), torch.from_numpy(box), torch.from_numpy(angle), points, strides, []
            )
            return postprocess(out, conf_thr=conf, iou_thr=iou, max_det=max_det)
        if x.shape[2:] != (self.meta.imgsz, self.meta.imgsz):
            raise DaikError(
                f"{self.path}: an end-to-end graph takes {self.meta.imgsz} x {self.meta.imgsz} windows "
                f"(its export size), got --imgsz {x.shape[3]}; export again with --imgsz"
            )
        results = []
        for image in x:
            feed: dict[str, Any] = {
                "images": image[None],
                "conf": np.array(conf, dtype=np.float32),
                "iou": np.array(iou, dtype=np.float32),
                "max_det": np.array(max_det, dtype=np.int64),
            }
            boxes, scores, labels = self.session.run(None, feed)
            results.append(
                Detections(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels))
            )
        return results
