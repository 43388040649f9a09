"""Inference over a validation set and its DOTA Task1 evaluation on the *source* images.

1. Every item of the dataset (a whole image letterboxed to ``imgsz``, or, with ``split``, one window of an
   image at one rate) goes through the model and :func:`~daik_core.models.postprocess` (score threshold,
   class-aware rotated NMS at ``nms_iou``, at most ``max_det`` boxes).
2. The boxes are mapped back to source-image pixels with the item's
   :meth:`~daik_core.data.dataset.SampleMeta.to_source` (undoing the letterbox, the window offset and the
   rate).
3. When an image was served as several items (tiling, or several rates), its detections are merged with
   class-aware rotated NMS at ``merge_iou`` (0.1, the DOTA devkit's merge threshold) over all its windows,
   as ``daik merge`` does for Task1 files.
4. :func:`~daik_core.eval.dota.evaluate_dota` against the source annotations
   (:meth:`~daik_core.data.dataset.DotaDataset.source_objects`): mAP at ``iou_thr`` (VOC07 11-point or
   all-point) and mAP50:95.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from daik_core.config import DEFAULT_NMS_IOU, SplitSpec
from daik_core.data.dataset import DotaDataset
from daik_core.data.dota import DotaLabel, DotaObject, Task1Detections
from daik_core.data.loader import build_dataloader
from daik_core.engine.checkpoint import load_detector
from daik_core.engine.distributed import resolve_device, unwrap_model
from daik_core.errors import DaikError
from daik_core.eval.dota import DotaEvalWarning, DotaResult, evaluate_dota
from daik_core.inference.options import InferenceOptions
from daik_core.models.detector import postprocess
from daik_core.ops import nms_rotated
from daik_core.structures.boxes import obb_to_poly

__all__ = [
    "EvalOutput",
    "PredictSettings",
    "dataset_ground_truth",
    "detections_to_task1",
    "evaluate_checkpoint",
    "evaluate_model",
    "predict_dataset",
]


@dataclass
class EvalOutput:
    """The evaluation, the merged full-image detections per class, how long it took, and the ground truth
    it was scored against (keyed by image id)."""

    result: DotaResult
    detections: dict[str, Task1Detections]
    seconds: float
    ground_truth: dict[str, DotaLabel] = field(default_factory=dict)


@dataclass
class _ImageDets:
    boxes: list[Tensor]
    scores: list[Tensor]
    labels: list[Tensor]
    windows: int = 0


def dataset_ground_truth(dataset: DotaDataset) -> dict[str, DotaLabel]:
    """The source annotations of every image of ``dataset`` (the classes it knows), keyed by image id."""
    gt: dict[str, DotaLabel] = {}
    for i, rec in enumerate(dataset.images):
        objs = dataset.source_objects(i)
        gt[rec.image_id] = DotaLabel(
            [
                DotaObject(tuple(float(v) for v in poly.reshape(-1)), dataset.classes[int(c)], int(d))
                for poly, c, d in zip(objs.polys, objs.labels, objs.difficult, strict=True)
            ]
        )
    return gt


def detections_to_task1(
    per_image: dict[str, tuple[Tensor, Tensor, Tensor]], classes: tuple[str, ...]
) -> dict[str, Task1Detections]:
    """Per-image ``(boxes (N, 5) obb, scores (N,), labels (N,))`` -> Task1 detections per class (images in
    the order given, detections by descending score within an image)."""
    ids: list[list[str]] = [[] for _ in classes]
    scores: list[list[np.ndarray]] = [[] for _ in classes]
    polys: list[list[np.ndarray]] = [[] for _ in classes]
    for image_id, (b, s, lab) in per_image.items():
        if len(b) == 0:
            continue
        p = obb_to_poly(b.double().cpu()).reshape(-1, 8).numpy()
        sc = s.double().cpu().numpy()
        lb = lab.cpu().numpy()
        for c in np.unique(lb).tolist():
            sel = np.flatnonzero(lb == c)
            sel = sel[np.argsort(-sc[sel], kind="stable")]
            ids[c].extend([image_id] * len(sel))
            scores[c].append(sc[sel])
            polys[c].append(p[sel])
    return {
        name: Task1Detections(
            ids[c],
            np.concatenate([np.zeros(0), *scores[c]]),
            np.concatenate([np.zeros((0, 8)), *polys[c]]),
        )
        for c, name in enumerate(classes)
    }


@dataclass(frozen=True)
class PredictSettings:
    """How :func:`predict_dataset` runs a model over a dataset: windows per batch, device, the postprocess
    of each window (score threshold ``conf_thr``, class-aware rotated NMS at ``nms_iou``, at most
    ``max_det`` boxes), the NMS IoU ``merge_iou`` merging the windows of an image, AMP and channels-last
    (CUDA only) and data-loader workers."""

    batch_size: int = 8
    device: torch.device | str = "cpu"
    conf_thr: float = 0.001
    nms_iou: float = DEFAULT_NMS_IOU
    max_det: int = 1000
    merge_iou: float = 0.1
    amp: bool = False
    channels_last: bool = False
    workers: int = 0


@torch.no_grad()
def predict_dataset(
    model: nn.Module, dataset: DotaDataset, settings: PredictSettings | None = None, *, progress: bool = False
) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """Detections on every source image of ``dataset`` in source pixels (steps 1-3 of the module
    docstring): ``{image_id: (boxes (N, 5) obb float64, scores (N,), labels (N,) int64)}`` on the CPU, every
    image present (possibly empty), in dataset order."""
    opts = settings if settings is not None else PredictSettings()
    device = torch.device(opts.device)
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    use_amp = opts.amp and device.type == "cuda"
    loader = build_dataloader(dataset, opts.batch_size, workers=opts.workers, shuffle=False, seed=0)
    found: dict[int, _ImageDets] = {i: _ImageDets([], [], []) for i in range(dataset.num_images)}
    try:
        for batch in tqdm(loader, desc="eval", unit="batch", disable=not progress, leave=False):
            images = batch.images.to(device, non_blocking=True)
            if opts.channels_last and device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, enabled=use_amp):
                out = net(images)
            dets = postprocess(out, conf_thr=opts.conf_thr, iou_thr=opts.nms_iou, max_det=opts.max_det)
            for det, meta in zip(dets, batch.metas, strict=True):
                image = dataset.windows[meta.index].image
                slot = found[image]
                slot.windows += 1
                if len(det.boxes):
                    slot.boxes.append(meta.to_source(det.boxes.double().cpu()))
                    slot.scores.append(det.scores.float().cpu())
                    slot.labels.append(det.labels.cpu())
    finally:
        net.train(was_training)

    out_dets: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    for i, rec in enumerate(dataset.images):
        slot = found[i]
        if not slot.boxes:
            out_dets[rec.image_id] = (
                torch.zeros((0, 5), dtype=torch.float64),
                torch.zeros(0),
                torch.zeros(0, dtype=torch.int64),
            )
            continue
        boxes, scores, labels = torch.cat(slot.boxes), torch.cat(slot.scores), torch.cat(slot.labels)
        if slot.windows > 1:  # tiled: duplicates of the overlapping windows
            keep = nms_rotated(boxes, scores, opts.merge_iou, labels)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        out_dets[rec.image_id] = (boxes, scores, labels)
    return out_dets


def evaluate_model(
    model: nn.Module,
    dataset: DotaDataset,
    settings: PredictSettings | None = None,
    *,
    iou_thr: float = 0.5,
    metric: str = "voc07",
    progress: bool = False,
) -> EvalOutput:
    """DOTA Task1 evaluation of ``model`` on ``dataset`` (see the module docstring); the model's training
    mode is restored afterwards."""
    t0 = time.perf_counter()
    per_image = predict_dataset(model, dataset, settings, progress=progress)
    detections = detections_to_task1(per_image, dataset.classes)
    gt = dataset_ground_truth(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DotaEvalWarning)  # every detection is on an annotated image
        result = evaluate_dota(gt, detections, dataset.classes, iou_thr=iou_thr, metric=metric)
    return EvalOutput(result=result, detections=detections, seconds=time.perf_counter() - t0, ground_truth=gt)


def _yolo_val_split(data: str | Path, classes: tuple[str, ...]) -> Path:
    """``data``, or the ``val`` split of the YOLO data YAML ``data`` (its names must be ``classes``)."""
    from daik_core.data.yolo_obb import is_data_yaml, read_data_yaml

    if not is_data_yaml(data):
        return Path(data)
    yolo = read_data_yaml(data)
    if yolo.names != classes:
        raise DaikError(f"{data}: names {list(yolo.names)} are not the model's classes {list(classes)}")
    return yolo.split("val")


def _hparam(spec: dict[str, Any], name: str, default: Any) -> Any:
    hp = spec.get("hparams") if isinstance(spec, dict) else None
    return hp.get(name, default) if isinstance(hp, dict) else default


def evaluate_checkpoint(
    weights: str | Path,
    data: str | Path,
    options: InferenceOptions | None = None,
    *,
    iou_thr: float = 0.5,
    metric: str = "voc07",
    skip_unknown: bool = False,
    workers: int = 0,
    progress: bool = False,
) -> EvalOutput:
    """``daik eval --weights W --data DIR``: the EMA model of a checkpoint on a DOTA folder, a YOLO-OBB
    split, or a YOLO data YAML (its ``val`` split, whose names must be the checkpoint's classes).

    The ``options`` left unset come from the checkpoint's training spec: ``imgsz``, ``conf`` / ``iou`` /
    ``max_det`` (its hparams ``conf_thr`` / ``nms_iou`` / ``max_det``) and the tiling (its
    ``dataset.split``). ``split_size`` 0 turns tiling off; a given ``split_size`` tiles at rate 1.0 with
    ``gap`` (default 200).
    """
    opts = options if options is not None else InferenceOptions()
    imgsz, split_size, gap = opts.imgsz, opts.split_size, opts.gap
    dev = resolve_device(opts.device)
    model, meta = load_detector(weights, map_location="cpu")
    data = _yolo_val_split(data, meta.classes)
    split: SplitSpec | None
    try:
        if split_size is None:
            split = SplitSpec.model_validate(meta.split) if meta.split is not None else None
            if split is not None and gap is not None:
                split = SplitSpec(size=split.size, gap=gap, rates=split.rates)
        elif split_size == 0:
            split = None
        else:
            split = SplitSpec(size=split_size, gap=200 if gap is None else gap)
    except ValueError as err:
        raise DaikError(f"--split-size / --gap: {err}") from None
    dataset = DotaDataset(
        data,
        meta.classes,
        imgsz if imgsz is not None else meta.imgsz,
        augment=None,
        split=split,
        skip_unknown=skip_unknown,
        train=False,
    )
    spec = meta.spec
    settings = PredictSettings(
        batch_size=opts.batch,
        device=dev,
        conf_thr=float(_hparam(spec, "conf_thr", 0.001)) if opts.conf is None else opts.conf,
        nms_iou=float(_hparam(spec, "nms_iou", 0.45)) if opts.iou is None else opts.iou,
        max_det=int(_hparam(spec, "max_det", 1000)) if opts.max_det is None else opts.max_det,
        merge_iou=opts.merge_iou,
        amp=dev.type == "cuda",
        workers=workers,
    )
    return evaluate_model(model.to(dev), dataset, settings, iou_thr=iou_thr, metric=metric, progress=progress)
