"""Checkpoints: what ``weights/last.pt`` and ``weights/best.pt`` hold, atomic writes, safe loading.

Format (version :data:`FORMAT_VERSION`), a dict of plain Python values and tensors only, so that
``torch.load(..., weights_only=True)`` reads it::

    format            "daik-checkpoint"
    format_version    1
    model             state dict of the training (unfused) model, unwrapped from DDP
    ema               {"state": state dict, "updates": int} or None (hparams.ema off)
    optimizer         optimizer.state_dict()
    scheduler         {"kind": "warmup_cosine", "step": int, "warmup_steps": int, "total_steps": int}
    scaler            GradScaler.state_dict() (empty when AMP is off)
    rng               {"python": random.getstate(), "numpy": {...}, "torch": ByteTensor, "cuda": [ByteTensor]}
    epoch             completed epochs
    iteration         batches done in epoch ``epoch`` (0 at an epoch boundary; > 0 after a stop mid-epoch)
    step              optimiser steps so far (the global step)
    progress          the running sums of the unfinished epoch (losses, images, seconds); {} at a boundary
    best_fitness      best validation mAP50 so far (None before the first evaluation)
    best_epoch        the epoch that reached it (None before)
    train_time_s      seconds of training so far, over every resume
    environments      the compute environments the run trained in (:mod:`daik_core.engine.environment`),
                      one per distinct environment of its resumes; absent from older checkpoints
    spec              the resolved job spec (``JobSpec.model_dump(mode="json")``)
    model_info        {"preset", "num_classes", "classes", "reg_max", "imgsz"}: enough to rebuild the
                      detector without the spec (``daik predict --weights best.pt``)

Writes go to a temporary file in the same folder, are fsynced, then renamed over the target (and the
folder fsynced), so a reader or a crash never sees half a checkpoint. Reading a file that is not a complete
DAIK checkpoint raises :class:`~daik_core.errors.DaikError` naming the file.
"""

from __future__ import annotations

import pickle
import random
import struct
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daik_core.config import HParams
from daik_core.errors import DaikError
from daik_core.files import atomic_write
from daik_core.models.detector import Detector
from daik_core.presets import PRESETS, build_detector

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointMeta",
    "checkpoint_meta",
    "get_rng_state",
    "load_checkpoint",
    "load_detector",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT_NAME = "daik-checkpoint"
_ZIP_MAGIC = b"PK\x03\x04"
FORMAT_VERSION = 1

_LOAD_ERRORS = (
    RuntimeError,
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    zipfile.BadZipFile,
    KeyError,
    AttributeError,
    TypeError,
    IndexError,
    struct.error,  # a few bytes of junk: the legacy (non-zip) reader unpacks a header it cannot find
)


# ----------------------------------------------------------------------------------------------- I/O
def save_checkpoint(path: str | Path, checkpoint: Mapping[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (:func:`daik_core.files.atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(dict(checkpoint), f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a DAIK checkpoint with ``weights_only=True``. A missing, truncated, corrupt or foreign file, or
    a newer format version, raises :class:`DaikError` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise DaikError(f"{path}: a folder, not a checkpoint file (e.g. runs/<name>/weights/best.pt)")
    if not path.is_file():
        raise DaikError(f"{path}: checkpoint file does not exist")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise DaikError(f"{path}: cannot read the checkpoint ({err.strerror or err})") from None
    if magic != _ZIP_MAGIC:  # torch.save writes a zip archive; anything else is not one of ours
        what = "an empty file" if not magic else "not a zip archive as torch.save writes"
        raise DaikError(f"{path}: not a readable checkpoint (truncated or corrupt): {what}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: not the user's business
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which would run code from the file: never
        raise DaikError(
            f"{path}: not a readable checkpoint: it holds Python objects other than tensors and plain "
            "values, which DAIK does not load (or it is corrupt)"
        ) from None
    except _LOAD_ERRORS as err:
        reason = _first_sentence(err)
        raise DaikError(f"{path}: not a readable checkpoint (truncated or corrupt): {reason}") from None
    except OSError as err:
        raise DaikError(f"{path}: cannot read the checkpoint ({err.strerror or err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_NAME:
        raise DaikError(f"{path}: not a DAIK checkpoint (written by `daik train`)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DaikError(
            f"{path}: checkpoint format version {version!r} is newer than this DAIK reads ({FORMAT_VERSION})"
        )
    for key in ("model", "model_info", "epoch", "step"):
        if key not in ckpt:
            raise DaikError(f"{path}: checkpoint has no {key!r} entry (incomplete file?)")
    return ckpt


def _first_sentence(err: BaseException) -> str:
    """The exception's type and the first sentence of its message (torch appends paragraphs of advice)."""
    head = " ".join(str(err).split()).split(". ")[0].rstrip(".")
    return f"{type(err).__name__}: {head}" if head else type(err).__name__


# ----------------------------------------------------------------------------------------------- RNG
def get_rng_state() -> dict[str, Any]:
    """The random states of python, numpy (legacy global generator), torch CPU and every CUDA device, as
    plain values and tensors (``weights_only``-loadable)."""
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 (the global generator)
    assert isinstance(np_state, dict)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": str(np_state["bit_generator"]),
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (CUDA states only when the device count matches)."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002 (the global generator)
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
            "has_gauss": int(n["has_gauss"]),
            "gauss": float(n["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = list(state.get("cuda") or [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in cuda])


# ----------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about its detector and training."""

    preset: str
    num_classes: int
    classes: tuple[str, ...]
    reg_max: int
    imgsz: int
    epoch: int
    step: int
    spec: dict[str, Any]

    @property
    def split(self) -> dict[str, Any] | None:
        """The ``dataset.split`` of the training spec (``None`` when the data was not tiled)."""
        dataset = self.spec.get("dataset") if isinstance(self.spec, dict) else None
        split = dataset.get("split") if isinstance(dataset, dict) else None
        return split if isinstance(split, dict) else None

    @property
    def nms_iou(self) -> float:
        """The NMS IoU the model was evaluated with in training (``hparams.nms_iou``; its default when the
        spec does not say), so that ``daik predict`` and ``daik eval`` see the same detections."""
        hparams = self.spec.get("hparams") if isinstance(self.spec, dict) else None
        value = hparams.get("nms_iou") if isinstance(hparams, dict) else None
        return float(value) if isinstance(value, (int, float)) else float(HParams().nms_iou)


def checkpoint_meta(ckpt: Mapping[str, Any], path: str | Path = "checkpoint") -> CheckpointMeta:
    """The :class:`CheckpointMeta` of a loaded checkpoint; :class:`DaikError` naming ``path`` when its
    ``model_info`` is malformed."""
    info = ckpt.get("model_info")
    try:
        assert isinstance(info, dict)
        classes = tuple(str(c) for c in info["classes"])
        meta = CheckpointMeta(
            preset=str(info["preset"]),
            num_classes=int(info["num_classes"]),
            classes=classes,
            reg_max=int(info["reg_max"]),
            imgsz=int(info["imgsz"]),
            epoch=int(ckpt.get("epoch", 0)),
            step=int(ckpt.get("step", 0)),
            spec=dict(ckpt.get("spec") or {}),
        )
    except (AssertionError, KeyError, TypeError, ValueError):
        raise DaikError(f"{path}: checkpoint has a malformed model_info entry") from None
    if meta.preset not in PRESETS or meta.num_classes != len(meta.classes) or meta.num_classes < 1:
        raise DaikError(
            f"{path}: checkpoint model_info is inconsistent (preset {meta.preset!r}, {meta.num_classes} "
            f"classes, {len(meta.classes)} class names)"
        )
    return meta


def load_detector(
    path: str | Path, *, prefer_ema: bool = True, map_location: str | torch.device = "cpu"
) -> tuple[Detector, CheckpointMeta]:
    """Rebuild the detector of a checkpoint (the EMA weights when there are, unless ``prefer_ema`` is
    off), in ``eval()`` mode and unfused, with its :class:`CheckpointMeta`."""
    ckpt = load_checkpoint(path, map_location=map_location)
    meta = checkpoint_meta(ckpt, path)
    model = build_detector(meta.preset, meta.num_classes, reg_max=meta.reg_max)
    ema = ckpt.get("ema")
    state = ema["state"] if prefer_ema and isinstance(ema, dict) and "state" in ema else ckpt["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise DaikError(
            f"{path}: the weights do not fit a {meta.preset} detector with {meta.num_classes} classes "
            f"(reg_max {meta.reg_max}): {first[1].strip() if len(first) > 1 else first[0]}"
        ) from None
    return model.eval(), meta
