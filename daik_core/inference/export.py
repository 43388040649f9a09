"""``daik export``: the fused (re-parameterised) detector of a checkpoint as ONNX, checked against torch.

Two graphs, both run by onnxruntime and by ``daik predict --weights model.onnx``
(:mod:`daik_core.inference.onnx_model`):

**Raw** (the default). It takes ``images (B, 3, H, W)`` float32 RGB in [0, 1] (letterboxed as in training; H
and W multiples of 32; B, H and W are dynamic) and returns the head's raw outputs:

* ``cls``   ``(B, A, C)``: class logits (apply a sigmoid for scores);
* ``box``   ``(B, A, 4, R)``: DFL logits of the distances (l, t, r, b), ``R = reg_max + 1``, in strides;
* ``angle`` ``(B, A, K)``: CSL logits, ``K = 180`` one-degree bins of the long side's angle.

Decoding and NMS are then post-processing outside the graph (:func:`daik_core.models.postprocess`): the
anchor points are the cell centres ``((i + 0.5) * s, (j + 0.5) * s)`` of the grids of strides ``s = 8, 16,
32``, levels concatenated P3, P4, P5, row-major; distance = softmax-expectation of the DFL bins times the
stride; angle = centre of the argmax CSL bin, ``(k + 0.5) * pi / K``; box =
:func:`daik_core.models.decode.distances_to_obb`; then score threshold and class-aware rotated NMS.

**End to end** (``--end2end``). Decoding, the score threshold and the exact class-aware rotated NMS are
inside the graph, as :func:`daik_core.models.postprocess` does them: it takes ``images (1, 3, S, S)`` (one
letterboxed window at the export size ``S``, fixed), ``conf`` and ``iou`` (float32 scalars) and ``max_det``
(int64 scalar), and returns ``boxes (N, 5)`` (obb, input pixels), ``scores (N,)`` and ``labels (N,)`` (int64)
by descending score. The ``pre_nms_topk`` (5000) best (anchor, class) candidates with score > ``conf`` go to
NMS, written with dense ``(N, N)`` tensors (:func:`~daik_core.ops.nms.nms_rotated_dense`: the exact rotated
IoU of the candidate pairs whose enclosing boxes overlap, then the greedy rule as an ONNX ``Loop``). ONNX has
no rotated NMS operator (its ``NonMaxSuppression`` is axis-aligned); this is the same rule, exactly, in
standard operators. Candidates of equal score are visited by ascending index (ONNX's TopK's order, which
:func:`~daik_core.models.detector.top_candidates` imposes on torch too); the result equals torch's except
where two overlapping candidates' scores are equal to within the two runtimes' float rounding (they may then
be visited in the other order, and the other one survive). Its cost grows as ``N^2``: a few thousand
candidates (the low ``conf`` of an evaluation) take seconds on a CPU.

The model file's metadata (``metadata_props``) records the classes, preset, imgsz, reg_max, strides, angle
bins, the training's tiling and NMS IoU (the defaults of ``daik predict``) and which graph it is.

The export is checked before it is kept, on a random input at ``imgsz``: the raw graph's outputs must agree
with torch's within ``atol = rtol = 1e-4``; for the end-to-end graph (at ``conf`` 0.001), its NMS candidates
must be torch's (boxes within 1e-3 px, scores within 1e-5) and the detections it keeps of them exactly those
of torch's :func:`~daik_core.ops.nms.nms_rotated`. onnx and onnxruntime are optional
dependencies (the ``export`` extra).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from daik_core.engine.checkpoint import CheckpointMeta, load_detector
from daik_core.errors import DaikError
from daik_core.files import atomic_write_bytes
from daik_core.models.decode import decode_boxes
from daik_core.models.detector import Detector, top_candidates
from daik_core.ops.nms import greedy_keep, nms_rotated, nms_rotated_dense

__all__ = [
    "END2END_INPUTS",
    "END2END_OUTPUTS",
    "ONNX_OUTPUTS",
    "PRE_NMS_TOPK",
    "End2End",
    "ExportResult",
    "RawOutputs",
    "export_onnx",
]

ONNX_OUTPUTS = ("cls", "box", "angle")
END2END_INPUTS = ("images", "conf", "iou", "max_det")
END2END_OUTPUTS = ("boxes", "scores", "labels")
_CHECK_OUTPUTS = ("candidates", "candidate_boxes", "candidate_scores", "kept")
#: candidates of the end-to-end graph (as :func:`~daik_core.models.postprocess`'s default)
PRE_NMS_TOPK = 5000
#: the score threshold of the end-to-end export's check (low: many candidates for the NMS to decide)
CHECK_CONF = 0.001
_TOL = 1e-4


class RawOutputs(nn.Module):
    """The detector's three logit tensors as a tuple (exporters want tensors, not a dataclass)."""

    def __init__(self, model: Detector) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model(images)
        return out.cls_logits, out.box_logits, out.angle_logits


class End2End(nn.Module):
    """One window in, its detections out: :func:`~daik_core.models.postprocess` in traceable form.

    ``images (1, 3, S, S)``, ``conf`` and ``iou`` (0-d float), ``max_det`` (0-d int64) -> ``boxes (N, 5)``,
    ``scores (N,)``, ``labels (N,)`` by descending score; then, for the export's check (dropped from the
    saved graph), the NMS's input and output: ``candidates (M,)`` (indices into the flat ``(A * C)``
    scores), their ``candidate_boxes (M, 5)`` and ``candidate_scores (M,)``, and ``kept (N,)`` (indices
    into the candidates). ``greedy``: :func:`~daik_core.ops.nms.greedy_keep`, scripted for export (a loop
    the tracer would otherwise unroll)."""

    def __init__(
        self,
        model: Detector,
        greedy: Callable[[Tensor], Tensor] = greedy_keep,
        pre_nms_topk: int = PRE_NMS_TOPK,
    ) -> None:
        super().__init__()
        self.model = model
        self.greedy = greedy
        self.pre_nms_topk = pre_nms_topk

    def forward(
        self, images: Tensor, conf: Tensor, iou: Tensor, max_det: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        out = self.model(images)
        boxes = decode_boxes(out.box_logits, out.angle_logits, out.anchor_points, out.strides)[0]  # (A, 5)
        num_classes = out.cls_logits.shape[-1]
        flat = out.cls_logits[0].float().sigmoid().reshape(-1)  # (A * C,), anchor-major
        top_scores, top_idx = top_candidates(flat, self.pre_nms_topk, conf)  # k is static: S is fixed
        labels = top_idx % num_classes
        cand = boxes[torch.div(top_idx, num_classes, rounding_mode="floor")]
        keep = nms_rotated_dense(cand, iou, labels, greedy=self.greedy)[:max_det]
        return cand[keep], top_scores[keep], labels[keep], top_idx, cand, top_scores, keep


def _end2end_args(conf: float, iou: float, max_det: int) -> tuple[Tensor, Tensor, Tensor]:
    return (
        torch.tensor(conf, dtype=torch.float32),
        torch.tensor(iou, dtype=torch.float32),
        torch.tensor(max_det, dtype=torch.int64),
    )


@dataclass(frozen=True)
class ExportResult:
    """The written file, the check's maximum absolute difference, and the export settings."""

    path: Path
    max_abs_diff: float
    imgsz: int
    opset: int
    end2end: bool = False
    detections: int | None = None  # the end-to-end check's detections

    def describe(self) -> str:
        if self.end2end:
            return (
                f"exported {self.path} (end to end: decoding and rotated NMS in the graph, one "
                f"{self.imgsz} x {self.imgsz} window, opset {self.opset}): on the check input its candidates "
                f"match torch's (max |difference| {self.max_abs_diff:.3g}) and its NMS keeps torch's "
                f"{self.detections}"
            )
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
    end2end: bool = False,
) -> ExportResult:
    """Export the fused EMA model of ``weights`` to ``out`` (default: next to the weights, ``.onnx``) and
    check it against torch (module docstring). ``end2end``: decoding and rotated NMS in the graph (one
    window of ``imgsz``, fixed). The file appears only when the check passes."""
    onnx, ort = _import_onnx()
    _check_export_options(imgsz, opset, end2end)
    model, meta = load_detector(weights, map_location="cpu")
    size = imgsz if imgsz is not None else meta.imgsz
    out_path = Path(out) if out is not None else Path(weights).with_suffix(".onnx")
    fused = model.eval().fuse()
    x = torch.rand((1, 3, size, size), generator=torch.Generator().manual_seed(0))
    metadata = _onnx_metadata(meta, model.config.angle_bins, size, end2end)
    proto = _trace_onnx(onnx, fused, x, opset=opset, dynamic=dynamic, end2end=end2end, nms_iou=meta.nms_iou)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    if end2end:
        max_diff, checked = _check_end2end(session, fused, x, meta.nms_iou, out_path)
        for output in [o for o in proto.graph.output if o.name in _CHECK_OUTPUTS]:
            proto.graph.output.remove(output)  # the check's outputs: their values are computed anyway
        onnx.checker.check_model(proto)
        data = proto.SerializeToString()
    else:
        max_diff, checked = _check_raw(session, fused, x, out_path), None
    atomic_write_bytes(out_path, data)
    return ExportResult(
        path=out_path, max_abs_diff=max_diff, imgsz=size, opset=opset, end2end=end2end, detections=checked
    )


def _check_export_options(imgsz: int | None, opset: int, end2end: bool) -> None:
    if imgsz is not None and (imgsz < 32 or imgsz % 32):
        raise DaikError(f"--imgsz must be a positive multiple of 32, got {imgsz}")
    if not 7 <= opset <= 25 or (end2end and opset < 14):
        raise DaikError(f"--opset must be in [{14 if end2end else 7}, 25], got {opset}")


def _onnx_metadata(meta: CheckpointMeta, angle_bins: int, size: int, end2end: bool) -> dict[str, str]:
    """The graph's metadata properties: what :class:`~daik_core.inference.onnx_model.OnnxModel` reads."""
    return {
        "producer": "daik",
        "graph": "end2end" if end2end else "raw",
        "classes": json.dumps(list(meta.classes)),
        "preset": meta.preset,
        "imgsz": str(size),
        "reg_max": str(meta.reg_max),
        "strides": json.dumps([8, 16, 32]),
        "angle_bins": str(angle_bins),
        # what `daik predict` takes its defaults from (the training's tiling and NMS IoU)
        "spec": json.dumps({"dataset": {"split": meta.split}, "hparams": {"nms_iou": meta.nms_iou}}),
        "outputs": (
            f"boxes (N,5) obb in input pixels; scores (N,); labels (N,) int64 (pre-NMS top-k {PRE_NMS_TOPK})"
            if end2end
            else "cls (B,A,C) logits; box (B,A,4,reg_max+1) DFL logits; angle (B,A,K) CSL logits"
        ),
    }


def _trace_onnx(
    onnx: ModuleType, fused: Detector, x: Tensor, *, opset: int, dynamic: bool, end2end: bool, nms_iou: float
) -> Any:
    """The traced graph (TorchScript exporter) as an ONNX ModelProto: the end-to-end module (with the
    check's extra outputs) or the raw outputs (dynamic batch and size when ``dynamic``)."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter of the TorchScript exporter
        raw = Path(tmp) / "model.onnx"
        if end2end:
            example = (x, *_end2end_args(CHECK_CONF, nms_iou, 1000))
            torch.onnx.export(
                End2End(fused, greedy=torch.jit.script(greedy_keep)).eval(),
                example,
                str(raw),
                dynamo=False,
                opset_version=opset,
                input_names=list(END2END_INPUTS),
                output_names=[*END2END_OUTPUTS, *_CHECK_OUTPUTS],
                dynamic_axes={
                    **{name: {0: "detections"} for name in (*END2END_OUTPUTS, "kept")},
                    **{name: {0: "candidates"} for name in _CHECK_OUTPUTS[:3]},
                },
            )
        else:
            dynamic_axes = None
            if dynamic:
                dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}}
                dynamic_axes.update({name: {0: "batch", 1: "anchors"} for name in ONNX_OUTPUTS})
            torch.onnx.export(
                RawOutputs(fused).eval(),
                (x,),
                str(raw),
                dynamo=False,
                opset_version=opset,
                input_names=["images"],
                output_names=list(ONNX_OUTPUTS),
                dynamic_axes=dynamic_axes,
            )
        return onnx.load(str(raw))


def _check_raw(session: Any, model: Detector, x: Tensor, out_path: Path) -> float:
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        want = RawOutputs(model)(x)
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
    return max_diff


def _check_end2end(session: Any, model: Detector, x: Tensor, iou: float, out_path: Path) -> tuple[float, int]:
    """The graph against torch, in two exact parts: its candidates (which (anchor, class) pairs pass
    ``conf``, their boxes and scores) are torch's, within float tolerance; and the detections it keeps of
    *its own* candidates are those :func:`~daik_core.ops.nms.nms_rotated` keeps. (Comparing the final
    detections directly would fail on candidates whose scores tie to within float rounding, which two
    runtimes may order differently: then which of two near-equal overlapping boxes survives may differ.)
    Returns the largest difference and the number of detections."""
    values = [x.numpy(), *(a.numpy() for a in _end2end_args(CHECK_CONF, iou, 1000))]
    got = session.run(None, dict(zip(END2END_INPUTS, values, strict=True)))
    boxes, scores, labels, cand_idx, cand_boxes, cand_scores, kept = got
    fail = f"ONNX check failed: the end-to-end graph differs from torch; {out_path} not written"
    with torch.no_grad():
        out = model(x)
    want_boxes = decode_boxes(out.box_logits, out.angle_logits, out.anchor_points, out.strides)[0]
    num_classes = out.cls_logits.shape[-1]
    want_scores, want_idx = top_candidates(out.cls_logits[0].sigmoid().reshape(-1), PRE_NMS_TOPK, CHECK_CONF)
    if not np.array_equal(np.sort(cand_idx), np.sort(want_idx.numpy())):
        raise DaikError(f"{fail} (candidates above conf: {len(cand_idx)}, torch {len(want_idx)})")
    order = np.argsort(cand_idx, kind="stable")  # both sets of candidates by (anchor, class)
    want_order = want_idx.argsort().numpy()
    box_diff = np.abs(cand_boxes[order] - want_boxes[want_idx // num_classes].numpy()[want_order])
    score_diff = np.abs(cand_scores[order] - want_scores.numpy()[want_order])
    max_box = float(box_diff.max()) if box_diff.size else 0.0
    max_score = float(score_diff.max()) if score_diff.size else 0.0
    if max_box > 1e-3 or max_score > 1e-5:
        raise DaikError(f"{fail} (candidate boxes by up to {max_box:.3g} px, scores by {max_score:.3g})")
    keep = nms_rotated(
        torch.from_numpy(cand_boxes),
        torch.from_numpy(cand_scores),
        iou,
        torch.from_numpy(cand_idx % num_classes),
    )[:1000]
    if not np.array_equal(kept, keep.numpy()):
        raise DaikError(f"{fail} (rotated NMS keeps {len(kept)} of its candidates, torch {len(keep)})")
    if not (
        np.array_equal(boxes, cand_boxes[kept])
        and np.array_equal(scores, cand_scores[kept])
        and np.array_equal(labels, cand_idx[kept] % num_classes)
    ):
        raise DaikError(f"{fail} (its outputs are not its kept candidates)")
    return max(max_box, max_score), len(boxes)
