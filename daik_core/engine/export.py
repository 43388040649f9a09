"""``daik export``: the fused (re-parameterised) detector of a checkpoint as ONNX, checked against torch.

The graph takes ``images (B, 3, H, W)`` float32 RGB in [0, 1] (letterboxed as in training; H and W multiples
of 32; B, H and W are dynamic) and returns the head's raw outputs:

* ``cls``   ``(B, A, C)``: class logits (apply a sigmoid for scores);
* ``box``   ``(B, A, 4, R)``: DFL logits of the distances (l, t, r, b), ``R = reg_max + 1``, in strides;
* ``angle`` ``(B, A, K)``: CSL logits, ``K = 180`` one-degree bins of the long side's angle.

Decoding and NMS are post-processing, outside the graph (as :func:`daik_core.models.postprocess` does them):
the anchor points are the cell centres ``((i + 0.5) * s, (j + 0.5) * s)`` of the grids of strides
``s = 8, 16, 32``, levels concatenated P3, P4, P5, row-major; distance = softmax-expectation of the DFL bins
times the stride; angle = centre of the argmax CSL bin, ``(k + 0.5) * pi / K``; box =
:func:`daik_core.models.decode.distances_to_obb`; then score threshold and class-aware rotated NMS. The model
file's metadata (``metadata_props``) records the classes, imgsz, reg_max, strides and angle bins.

The export is checked before it is kept: onnxruntime (CPU) and torch run the same random input at
``imgsz`` and every output must agree within ``atol = rtol = 1e-4``; the maximum absolute difference is
reported. onnx and onnxruntime are optional dependencies (the ``export`` extra).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn

from daik_core.engine.checkpoint import load_detector
from daik_core.errors import DaikError
from daik_core.files import atomic_write_bytes
from daik_core.models.detector import Detector

__all__ = ["ONNX_OUTPUTS", "ExportResult", "RawOutputs", "export_onnx"]

ONNX_OUTPUTS = ("cls", "box", "angle")
_TOL = 1e-4


class RawOutputs(nn.Module):
    """The detector's three logit tensors as a tuple (exporters want tensors, not a dataclass)."""

    def __init__(self, model: Detector) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model(images)
        return out.cls_logits, out.box_logits, out.angle_logits


@dataclass(frozen=True)
class ExportResult:
    """The written file, the check's maximum absolute difference, and the export settings."""

    path: Path
    max_abs_diff: float
    imgsz: int
    opset: int

    def describe(self) -> str:
        return (
            f"exported {self.path} (opset {self.opset}, checked at imgsz {self.imgsz}): onnxruntime matches "
            f"torch, max |difference| {self.max_abs_diff:.3g} (tolerance {_TOL:g})"
        )


def _import_onnx() -> tuple[ModuleType, ModuleType]:
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise DaikError(
            f"export to ONNX needs the optional packages onnx and onnxruntime ({err.name} is missing): "
            "pip install 'daik[export]' (or pip install onnx onnxruntime)"
        ) from None
    return onnx, onnxruntime


def export_onnx(
    weights: str | Path,
    out: str | Path | None = None,
    *,
    imgsz: int | None = None,
    opset: int = 17,
    dynamic: bool = True,
) -> ExportResult:
    """Export the fused EMA model of ``weights`` to ``out`` (default: next to the weights, ``.onnx``) and
    check it against torch (module docstring). The file appears only when the check passes."""
    onnx, ort = _import_onnx()
    if imgsz is not None and (imgsz < 32 or imgsz % 32):
        raise DaikError(f"--imgsz must be a positive multiple of 32, got {imgsz}")
    if not 7 <= opset <= 25:
        raise DaikError(f"--opset must be in [7, 25], got {opset}")
    model, meta = load_detector(weights, map_location="cpu")
    size = imgsz if imgsz is not None else meta.imgsz
    out_path = Path(out) if out is not None else Path(weights).with_suffix(".onnx")
    wrapper = RawOutputs(model.eval().fuse()).eval()
    x = torch.rand((1, 3, size, size), generator=torch.Generator().manual_seed(0))

    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}}
        dynamic_axes.update({name: {0: "batch", 1: "anchors"} for name in ONNX_OUTPUTS})
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter of the TorchScript exporter
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(
            wrapper,
            (x,),
            str(raw),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes=dynamic_axes,
        )
        proto = onnx.load(str(raw))
    metadata = {
        "producer": "daik",
        "classes": json.dumps(list(meta.classes)),
        "imgsz": str(size),
        "reg_max": str(meta.reg_max),
        "strides": json.dumps([8, 16, 32]),
        "angle_bins": str(model.config.angle_bins),
        "outputs": "cls (B,A,C) logits; box (B,A,4,reg_max+1) DFL logits; angle (B,A,K) CSL logits",
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        want = wrapper(x)
    max_diff = 0.0
    ok = True
    for name, g, w in zip(ONNX_OUTPUTS, got, want, strict=True):
        w_np = w.numpy()
        if g.shape != w_np.shape:
            raise DaikError(f"ONNX output {name!r} has shape {g.shape}, torch {w_np.shape}")
        diff = np.abs(g.astype(np.float64) - w_np.astype(np.float64))
        max_diff = max(max_diff, float(diff.max()) if diff.size else 0.0)
        ok &= bool(np.all(diff <= _TOL + _TOL * np.abs(w_np)))
    if not ok:
        raise DaikError(
            f"ONNX check failed: onnxruntime differs from torch by up to {max_diff:.3g} (> {_TOL:g}); "
            f"{out_path} not written"
        )
    atomic_write_bytes(out_path, data)
    return ExportResult(path=out_path, max_abs_diff=max_diff, imgsz=size, opset=opset)
