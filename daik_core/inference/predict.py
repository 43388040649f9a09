"""``daik predict``: detections of a trained checkpoint on images, as DOTA Task1 files and drawn PNGs.

Per image: with ``split_size`` and an image larger than it, the image is cut into the windows of
:func:`~daik_core.data.split.patch_windows` (``split_size`` x ``split_size``, ``gap`` overlap, the DOTA
devkit's layout), otherwise it is one window. Each window is letterboxed to ``imgsz`` exactly as the
training and validation data are (:func:`~daik_core.data.transforms.letterbox`, RGB, [0, 1]), detected
(score > ``conf``, class-aware rotated NMS at ``iou``, ``max_det``), mapped back to image pixels, and the
windows' detections are merged with class-aware rotated NMS at ``merge_iou`` (0.1, as ``daik merge``).

Outputs in ``out``: ``task1/Task1_<class>.txt`` (every class, image id = file stem; DOTA's submission
format) and ``vis/<stem>.png`` (the image with every box drawn with :func:`cv2.polylines`, labelled with the
class name and score).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from daik_core.data.dota import IMAGE_SUFFIXES, find_images, write_task1_dir
from daik_core.data.image_header import decode_image
from daik_core.data.split import patch_windows
from daik_core.data.transforms import Objects, letterbox
from daik_core.engine.checkpoint import load_detector
from daik_core.engine.distributed import resolve_device
from daik_core.errors import DaikError
from daik_core.inference.evaluate import detections_to_task1
from daik_core.inference.options import InferenceOptions, InferenceSettings
from daik_core.models.detector import Detections, Detector, postprocess
from daik_core.ops import nms_rotated
from daik_core.structures.boxes import obb_to_poly

__all__ = [
    "PredictSummary",
    "WindowModel",
    "detect_image",
    "draw_detections",
    "find_sources",
    "predict",
    "torch_windows",
]

#: What detects objects in a batch of windows: ``(images (B, 3, S, S) RGB in [0, 1], conf, iou, max_det) ->``
#: one :class:`~daik_core.models.detector.Detections` per window, in input pixels (score > ``conf``,
#: class-aware rotated NMS at ``iou``, at most ``max_det``): a torch model (:func:`torch_windows`) or an
#: ONNX model (:mod:`daik_core.inference.onnx_model`).
WindowModel = Callable[[Tensor, float, float, int], list[Detections]]


def torch_windows(model: Detector) -> WindowModel:
    """A :data:`WindowModel` of a torch detector (put it in ``eval()`` mode, fused or not)."""

    def run(images: Tensor, conf: float, iou: float, max_det: int) -> list[Detections]:
        return postprocess(model(images), conf_thr=conf, iou_thr=iou, max_det=max_det)

    return run


@dataclass
class PredictSummary:
    """What :func:`predict` wrote."""

    out: Path
    images: int = 0
    windows: int = 0
    detections: int = 0
    per_class: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.per_class.items() if v)
        return (
            f"{self.detections} detections on {self.images} images ({self.windows} windows)"
            f"{': ' + counts if counts else ''}\n  Task1 files -> {self.out / 'task1'}, drawings -> "
            f"{self.out / 'vis'}"
        )


def find_sources(source: str | Path) -> list[Path]:
    """An image file, or the images of a folder (sorted); :class:`DaikError` naming ``source`` when it
    does not exist, is not an image or holds none."""
    source = Path(source)
    if source.is_file():
        if source.suffix.lower() not in IMAGE_SUFFIXES:
            raise DaikError(f"{source}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
        return [source]
    if source.is_dir():
        images = find_images(source)
        if not images:
            raise DaikError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return images
    raise DaikError(f"{source}: no such image or folder")


@torch.no_grad()
def detect_image(
    model: Detector | WindowModel,
    image_bgr: np.ndarray,
    settings: InferenceSettings,
    device: torch.device,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Detections of one BGR image in its pixels (see the module docstring): ``boxes (N, 5)`` obb float64,
    ``scores (N,)``, ``labels (N,)`` on the CPU, by descending score, and the number of windows. ``model``:
    a torch detector in ``eval()`` mode on ``device``, or any :data:`WindowModel`; ``settings``: the
    options resolved against its checkpoint (:meth:`.InferenceOptions.for_images`)."""
    detect = torch_windows(model) if isinstance(model, Detector) else model
    imgsz, split_size, gap, batch = settings.imgsz, settings.split_size, settings.gap, settings.batch
    conf, iou, max_det, merge_iou = settings.conf, settings.iou, settings.max_det, settings.merge_iou
    h, w = image_bgr.shape[:2]
    if split_size and max(w, h) > split_size:
        windows = [
            (x, y, min(split_size, w - x), min(split_size, h - y))
            for x, y in patch_windows(w, h, split_size, gap)
        ]
    else:
        windows = [(0, 0, w, h)]
    boxes_l: list[Tensor] = []
    scores_l: list[Tensor] = []
    labels_l: list[Tensor] = []
    for s in range(0, len(windows), batch):
        chunk = windows[s : s + batch]
        pixels, frames = [], []
        for x, y, ww, hh in chunk:
            canvas, _, r, pad = letterbox(image_bgr[y : y + hh, x : x + ww], Objects.empty(), imgsz)
            pixels.append(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB))
            frames.append((x, y, r, pad))
        images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float().div_(255.0).to(device)
        dets = detect(images, conf, iou, max_det)
        for det, (x, y, r, pad) in zip(dets, frames, strict=True):
            if not len(det.boxes):
                continue
            b = det.boxes.double().cpu().clone()
            b[:, 0] = (b[:, 0] - pad[0]) / r + x
            b[:, 1] = (b[:, 1] - pad[1]) / r + y
            b[:, 2:4] /= r
            boxes_l.append(b)
            scores_l.append(det.scores.float().cpu())
            labels_l.append(det.labels.cpu())
    if not boxes_l:
        return (
            torch.zeros((0, 5), dtype=torch.float64),
            torch.zeros(0),
            torch.zeros(0, dtype=torch.long),
            len(windows),
        )
    boxes, scores, labels = torch.cat(boxes_l), torch.cat(scores_l), torch.cat(labels_l)
    if len(windows) > 1:
        keep = nms_rotated(boxes, scores, merge_iou, labels)
    else:
        keep = scores.argsort(descending=True, stable=True)
    keep = keep[:max_det] if len(windows) == 1 else keep
    return boxes[keep], scores[keep], labels[keep], len(windows)


def _color(index: int) -> tuple[int, int, int]:
    """A distinct BGR colour per class (golden-ratio hues)."""
    hue = int((index * 0.618033988749895 % 1.0) * 180)
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].tolist()
    return int(b), int(g), int(r)


def draw_detections(
    image_bgr: np.ndarray, boxes: Tensor, scores: Tensor, labels: Tensor, classes: Sequence[str]
) -> np.ndarray:
    """A copy of the image with each oriented box drawn and labelled ``class score``."""
    out = image_bgr.copy()
    thick = max(1, round(max(out.shape[:2]) / 600))
    scale = max(0.35, max(out.shape[:2]) / 1600)
    polys = obb_to_poly(boxes.double()).reshape(-1, 4, 2).numpy() if len(boxes) else np.zeros((0, 4, 2))
    order = np.argsort(scores.numpy(), kind="stable")  # the best boxes drawn last, on top
    for i in order.tolist():
        color = _color(int(labels[i]))
        pts = np.round(polys[i]).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], isClosed=True, color=color, thickness=thick, lineType=cv2.LINE_AA)
        text = f"{classes[int(labels[i])]} {float(scores[i]):.2f}"
        x, y = int(pts[:, 0, 0].min()), int(pts[:, 0, 1].min())
        cv2.putText(out, text, (x, max(y - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return out


def predict(
    weights: str | Path,
    source: str | Path,
    out: str | Path,
    options: InferenceOptions | None = None,
    *,
    draw: bool = True,
    progress: bool = True,
) -> PredictSummary:
    """Run a checkpoint (or an ONNX model of ``daik export``) over ``source`` (an image or a folder) and write
    ``out`` (module docstring); the options left unset take their defaults from the checkpoint
    (:meth:`~daik_core.inference.options.InferenceOptions.for_images`)."""
    options = options if options is not None else InferenceOptions()
    sources = find_sources(source)
    model: WindowModel
    if Path(weights).suffix.lower() == ".onnx":  # `daik export`'s graphs, through onnxruntime on the CPU
        from daik_core.inference.onnx_model import OnnxModel

        onnx_model = OnnxModel(weights)
        model, meta, dev = onnx_model.detect, onnx_model.meta, torch.device("cpu")
    else:
        dev = resolve_device(options.device)
        net, meta = load_detector(weights, map_location="cpu")
        model = torch_windows(net.fuse().to(dev))
    settings = options.for_images(meta)
    out = Path(out)
    summary = PredictSummary(out=out, per_class=dict.fromkeys(meta.classes, 0))
    per_image: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    for path in tqdm(sources, desc="predict", unit="img", disable=not progress):
        image = decode_image(path)
        boxes, scores, labels, n_windows = detect_image(model, image, settings, dev)
        if path.stem in per_image:
            raise DaikError(f"{path}: another image of {path.parent} has the same name (Task1 ids are stems)")
        per_image[path.stem] = (boxes, scores, labels)
        summary.images += 1
        summary.windows += n_windows
        summary.detections += len(boxes)
        for c in labels.tolist():
            summary.per_class[meta.classes[c]] += 1
        if draw:
            vis = out / "vis" / f"{path.stem}.png"
            vis.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(vis), draw_detections(image, boxes, scores, labels, meta.classes)):
                raise DaikError(f"{vis}: cannot write the image")
    write_task1_dir(out / "task1", detections_to_task1(per_image, meta.classes))
    return summary
