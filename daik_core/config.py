"""The job spec: one schema for the CLI (``daik train SPEC``) and the HTTP API (``POST /jobs``).

Pydantic only, no torch import (the API process stays torch-free). YAML or JSON. Unknown keys and bad values
are errors that name the field. Every option of METHOD.md is a field here with a documented default; the
fields marked *(reading)* are our reading where the paper is silent.

Paths (:data:`SPEC_PATH_FIELDS`: ``dataset.train``, ``dataset.val``, ``student.weights``,
``teacher.checkpoint``, ``output``): in a spec *file*, a relative path is relative to the folder of the file
(:func:`load_spec` makes it absolute, and checks that the inputs exist), so a spec means the same thing from
any working directory. Without ``output`` a run goes to ``runs/<name>`` in the current directory. A spec sent
as data (``POST /jobs``, :func:`parse_spec`) keeps its paths as given. ``dataset.train`` may also be an
Ultralytics data YAML (:mod:`daik_core.data.yolo_obb`): its ``train`` split, its ``val`` split unless
``dataset.val`` is given, and its ``names`` unless ``dataset.classes`` is.

Example (it must stay valid; ``tests/core/test_config.py`` checks it)::

    name: synth-n
    kind: train                      # train | distill
    dataset:
      train: data/synth/train        # DOTA layout: images/ and labelTxt/
      val: data/synth/val
      classes: dota1.0               # or an explicit list
      split: {size: 1024, gap: 200}  # optional: tile images larger than this
    student: {preset: n}             # n | s | m | l
    hparams: {epochs: 30, batch: 16, imgsz: 512, lr: 0.0008, seed: 0, device: auto, workers: 2}
    output: runs/synth-n
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from daik_core.errors import DaikError

__all__ = [
    "DEFAULT_NMS_IOU",
    "SPEC_PATH_FIELDS",
    "TRACKING_HPARAMS",
    "AssignerSpec",
    "AugmentSpec",
    "DatasetSpec",
    "DetectionLossSpec",
    "DistillSpec",
    "HParams",
    "JobSpec",
    "KDAALSpec",
    "KDAngleSpec",
    "KDClassSpec",
    "KDFeatureSpec",
    "KDLocalizationSpec",
    "KDLogitSpec",
    "KDSampleAlignSpec",
    "ModelSpec",
    "SpecError",
    "SplitSpec",
    "TeacherSpec",
    "deep_merge",
    "format_validation_error",
    "load_spec",
    "parse_spec",
    "relative_spec_paths",
    "resolve_spec_paths",
    "spec_from_mapping",
    "spec_overrides",
]

# NMS IoU per image (or tile) of evaluation and prediction, one value for the trainer, `daik eval` and
# `daik predict`; chosen by measurement (bench/README.md, "NMS threshold"). Merging tiles of a large image
# is a separate step with the DOTA devkit's 0.1.
DEFAULT_NMS_IOU = 0.45

#: The ``hparams`` fields that say where a run is reported (MLflow, TensorBoard), not what it trains: left
#: out of the training hash (:func:`daik_core.ablation.grid.config_hash`), so turning tracking on or off
#: never makes a finished run train again, and specs written before these fields hash as they did.
TRACKING_HPARAMS = ("mlflow", "tensorboard")

PositiveInt = Annotated[int, Field(gt=0)]
#: The overlap ``u`` of the assigner's metric (see ``daik_core.assigners.tal``).
OverlapKind = Literal["rotated_iou", "probiou", "hbb_iou", "extent_iou"]
NonNegFloat = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class SplitSpec(_Strict):
    """Tiling of images larger than ``size`` into overlapping patches (the DOTA devkit's split)."""

    size: PositiveInt = 1024
    gap: Annotated[int, Field(ge=0)] = 200
    rates: tuple[Annotated[float, Field(gt=0)], ...] = (1.0,)

    @model_validator(mode="after")
    def _gap_below_size(self) -> SplitSpec:
        if self.gap >= self.size:
            raise ValueError(f"gap ({self.gap}) must be smaller than size ({self.size})")
        return self


class DatasetSpec(_Strict):
    train: str = Field(
        min_length=1,
        description="DOTA folder (images/, labelTxt/), YOLO-OBB folder (images/, labels/) or data YAML, or "
        "(service) a registered name",
    )
    val: str | None = Field(default=None, description="validation folder; none: no evaluation")
    classes: str | tuple[str, ...] = Field(
        default="dota1.0", description="dota1.0 | dota1.5 | dota2.0 | a,b,c | a list of names"
    )
    skip_unknown: bool = Field(default=False, description="drop objects of classes not in the list")
    split: SplitSpec | None = Field(default=None, description="tile images larger than split.size")

    @field_validator("classes")
    @classmethod
    def _classes_resolve(cls, v: str | tuple[str, ...]) -> str | tuple[str, ...]:
        from daik_core.data.classes import resolve_classes

        try:
            resolve_classes(v)
        except DaikError as err:
            raise ValueError(str(err).removeprefix("classes: ")) from None
        return v

    def class_names(self) -> tuple[str, ...]:
        from daik_core.data.classes import resolve_classes

        return resolve_classes(self.classes)


class ModelSpec(_Strict):
    preset: Literal["n", "s", "m", "l"] = "n"
    reg_max: Annotated[int, Field(ge=1, le=64)] = Field(
        default=16, description="DFL bins - 1 per box side (the seed text says n=15; METHOD default 16)"
    )
    weights: str | None = Field(default=None, description="initialise from this checkpoint (optional)")


class TeacherSpec(_Strict):
    """The teacher of a distill job: a checkpoint file, or (through the service) a finished job's id."""

    checkpoint: str | None = Field(
        default=None, min_length=1, description="a checkpoint written by `daik train` (best.pt)"
    )
    job: str | None = Field(
        default=None, min_length=1, description="service only: a succeeded job whose best.pt is the teacher"
    )

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:
        if (self.checkpoint is None) == (self.job is None):
            raise ValueError("give exactly one of teacher.checkpoint and teacher.job")
        return self


class AssignerSpec(_Strict):
    """Rotated task-aligned assigner: metric t = s^alpha * u^beta * AAL^gamma over anchors inside the GT."""

    topk: PositiveInt = 13
    alpha: NonNegFloat = 1.0
    beta: NonNegFloat = 6.0
    gamma: NonNegFloat = Field(default=0.0, description="AAL exponent; 0 turns AAL off in the assigner")
    overlap: OverlapKind = Field(
        default="probiou",
        description="the overlap u between predicted and GT boxes: probiou, exact rotated IoU, IoU of the "
        "enclosing axis-aligned boxes, or extent_iou (angle-free: the predicted distances against the "
        "GT's, both in the GT's frame, as loss_box decodes)",
    )
    aal: Literal["table", "sin"] = Field(
        default="table", description="AAL as the exact rotated-IoU table (reading) or the paper's |sin| form"
    )
    aal_r: Annotated[float, Field(ge=1.0)] = Field(
        default=3.0, description="|sin| form: V(AR) = 2 if AR > r else 1 (reading)"
    )
    aal_ar_bins: Annotated[int, Field(ge=2)] = 400
    aal_angle_bins: Annotated[int, Field(ge=2)] = 400


class DetectionLossSpec(_Strict):
    w_cls: NonNegFloat = 1.0
    w_box: NonNegFloat = 2.5
    w_dfl: NonNegFloat = 0.5
    w_angle: NonNegFloat = Field(default=0.05, description="CSL-BCE angle loss weight (reading)")
    angle_reduction: Literal["sum", "mean"] = Field(
        default="sum",
        description="CSL-BCE over the 180 angle bins: summed (the method's reference form) or averaged "
        "(180x weaker for the same w_angle)",
    )
    csl_sigma: Annotated[float, Field(gt=0)] = Field(default=6.0, description="CSL Gaussian window, bins")
    box_loss: Literal["rotated_iou", "probiou"] = "rotated_iou"
    csl_square_ar: Annotated[float, Field(ge=1.0)] = Field(
        default=1.0,
        description="GTs with long/short side <= this take the smaller CSL loss of angle and angle + 90 deg "
        "(a square's long side is ambiguous); 1.0: exact squares only",
    )
    vfl_alpha: NonNegFloat = 0.75
    vfl_gamma: NonNegFloat = 2.0


PositiveFloat = Annotated[float, Field(gt=0)]


class KDAngleSpec(_Strict):
    """AD, angle distillation: ``weight * tau^2 * KL(q_T || p_S)`` over the K angle bins of the positives,
    weighted by ``t_hat``, with ``p = softmax(S/tau)``, ``q = softmax(T/tau)``."""

    enabled: bool = False
    weight: NonNegFloat = Field(default=1.0, description="lambda_theta (reading)")
    tau: PositiveFloat = Field(default=10.0, description="temperature (reading)")
    sigmoid_softmax: bool = Field(
        default=False, description="softmax of sigmoid(logits)/tau instead of logits/tau (YOLOv6's class KD)"
    )


class KDAALSpec(_Strict):
    """AAL in the distillation assigner: ``t = s^alpha u^beta AAL^gamma`` with the distillation exponents.
    The trainer builds the distill job's assigner with these ``beta``/``gamma`` and this table when on."""

    enabled: bool = False
    form: Literal["table", "sin"] = Field(
        default="table", description="exact rotated-IoU table (reading) or the paper's |sin| form"
    )
    r: Annotated[float, Field(ge=1.0)] = Field(default=3.0, description="|sin| form: V = 2 if AR > r else 1")
    beta: NonNegFloat = Field(
        default=4.0, description="overlap exponent of the distillation assigner (reading)"
    )
    gamma: NonNegFloat = Field(default=3.0, description="AAL exponent of the distillation assigner (reading)")
    overlap: OverlapKind | None = Field(
        default=None,
        description="the overlap u of the distillation assigner; none keeps assigner.overlap. extent_iou "
        "leaves the angle out of u, so that the table is the only angle term",
    )


class KDSampleAlignSpec(_Strict):
    """SAD: the student's positives are the teacher's top-k inside each GT (targets normalised with the
    student's own metric); optional differentiable per-GT KL of the two alignment-metric distributions."""

    enabled: bool = False
    kl_weight: NonNegFloat = Field(default=0.0, description="weight of the SAD-KL term; 0 turns it off")
    tau: PositiveFloat = Field(default=20.0, description="temperature of the SAD-KL softmax over anchors")


class KDLocalizationSpec(_Strict):
    """LD: ``weight * tau^2 * KL`` of the four DFL distributions of each positive, weighted by ``t_hat``."""

    enabled: bool = False
    weight: NonNegFloat = Field(
        default=1.0, description="lambda_ld (measured best on the tuning split; the LD paper uses 0.25)"
    )
    tau: PositiveFloat = Field(default=20.0, description="temperature (METHOD; the LD paper uses 10)")


class KDClassSpec(_Strict):
    """Classification distillation: ``weight * tau^2 * KL`` of teacher and student class distributions per
    anchor (``daik_core.losses.distillation``, "Classification distillation").

    ``form``: ``softmax`` (one categorical distribution over the C classes of ``logits / tau``: blind to
    objectness, as adding a constant to every logit leaves it unchanged), ``sigmoid_softmax`` (of
    ``sigmoid(logits) / tau``, the method's reference form) or ``binary`` (one Bernoulli distribution
    ``sigmoid(logit / tau)`` per anchor and class, the KL summed over the classes: it carries the absolute
    scores). ``scope``: the anchors distilled: ``positives`` (weighted by ``losses.weighting``, a weighted
    mean like ``loss_ad``), ``all`` anchors or ``teacher_fg`` (the positives and the anchors whose best
    teacher score reaches ``fg_thr``); over ``all`` / ``teacher_fg`` the per-anchor terms are summed and
    divided by the number of positive anchors."""

    enabled: bool = False
    weight: NonNegFloat = Field(default=4.0, description="lambda_cls (measured best on the tuning split)")
    tau: PositiveFloat | None = Field(
        default=None, description="temperature; default 10 (softmax, sigmoid_softmax), 1 (binary)"
    )
    scope: Literal["all", "positives", "teacher_fg"] = "all"
    form: Literal["softmax", "sigmoid_softmax", "binary"] = "binary"
    fg_thr: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.05, description="scope teacher_fg: the teacher score that makes an anchor foreground"
    )

    @property
    def temperature(self) -> float:
        """``tau``, or the form's default when unset."""
        if self.tau is not None:
            return self.tau
        return 1.0 if self.form == "binary" else 10.0


class KDLogitSpec(_Strict):
    """Baseline: Hinton logit KD on the class logits, one Bernoulli distribution per (anchor, class)."""

    enabled: bool = False
    weight: NonNegFloat = 1.0
    tau: PositiveFloat = 4.0


class KDFeatureSpec(_Strict):
    """Baseline: feature imitation on the neck outputs [P3, P4, P5] through 1x1 adapters: FitNet (MSE) or
    channel-wise distillation (CWD, Shu et al. 2021)."""

    kind: Literal["none", "fitnet", "cwd"] = "none"
    weight: NonNegFloat = Field(default=1.0, description="w_feat (reading)")
    tau: PositiveFloat = Field(default=4.0, description="CWD temperature")


class DistillSpec(_Strict):
    """The distillation terms of a job (``losses:``); every toggle is off by default. The options' defaults
    are the best measured on a tuning split (docs/RESULTS.md). With ``decay: cosine`` all KD terms fade as
    YOLOv6's ``1 - 0.99 (1 - cos(pi e / E)) / 2`` (1 at the start, 0.01 at the end); ``none`` keeps them."""

    ad: KDAngleSpec = KDAngleSpec()
    aal: KDAALSpec = KDAALSpec()
    sad: KDSampleAlignSpec = KDSampleAlignSpec()
    ld: KDLocalizationSpec = KDLocalizationSpec()
    cls_kd: KDClassSpec = KDClassSpec()
    logit_kd: KDLogitSpec = KDLogitSpec()
    feat: KDFeatureSpec = KDFeatureSpec()
    decay: Literal["cosine", "none"] = Field(
        default="none", description="none (measured best on the tuning split) or YOLOv6's cosine fade"
    )
    weighting: Literal["student", "teacher", "uniform"] = Field(
        default="student",
        description="the weight of each positive anchor in AD, LD and class KD on the positives: the "
        "student's normalised alignment t_hat, the teacher's (its metric on the same anchor and GT, "
        "normalised per GT the same way), or 1",
    )

    def needs_teacher(self) -> bool:
        """Whether any enabled term reads the teacher (all but AAL do)."""
        return (
            self.ad.enabled
            or self.sad.enabled
            or self.ld.enabled
            or self.cls_kd.enabled
            or self.logit_kd.enabled
            or self.feat.kind != "none"
        )


class AugmentSpec(_Strict):
    hflip: Annotated[float, Field(ge=0, le=1)] = 0.5
    vflip: Annotated[float, Field(ge=0, le=1)] = 0.5
    rot90: Annotated[float, Field(ge=0, le=1)] = 0.5
    rotate_deg: Annotated[float, Field(ge=0, le=180)] = Field(default=0.0, description="free rotation")
    scale: Annotated[float, Field(ge=0, lt=1)] = Field(default=0.25, description="random scale +-")
    hsv_h: Annotated[float, Field(ge=0, le=1)] = 0.015
    hsv_s: Annotated[float, Field(ge=0, le=1)] = 0.5
    hsv_v: Annotated[float, Field(ge=0, le=1)] = 0.3
    mosaic: Annotated[float, Field(ge=0, le=1)] = 0.0


class HParams(_Strict):
    epochs: PositiveInt = 30
    batch: PositiveInt = 16
    imgsz: Annotated[int, Field(ge=32, le=8192)] = 512
    lr: Annotated[float, Field(gt=0, le=10)] = 0.0008
    lr_final: Annotated[float, Field(gt=0, le=1)] = Field(default=0.01, description="final lr / lr")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.937
    weight_decay: NonNegFloat = 0.05
    warmup_epochs: NonNegFloat = 1.0
    ema: bool = True
    ema_decay: Annotated[float, Field(gt=0, lt=1)] = 0.9999
    grad_clip: NonNegFloat = Field(default=10.0, description="max gradient norm; 0 turns clipping off")
    amp: bool = Field(default=True, description="mixed precision (CUDA only)")
    channels_last: bool = Field(default=True, description="channels_last memory format (CUDA only)")
    seed: Annotated[int, Field(ge=0)] = 0
    deterministic: bool = False
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    workers: Annotated[int, Field(ge=0, le=64)] = 2
    eval_interval: PositiveInt = Field(default=1, description="evaluate every k epochs (and at the end)")
    conf_thr: Annotated[float, Field(ge=0, lt=1)] = 0.001
    nms_iou: Annotated[float, Field(gt=0, le=1)] = Field(
        default=DEFAULT_NMS_IOU,
        description="class-aware rotated NMS IoU of evaluation; `daik predict` and `daik eval` use the "
        "checkpoint's value by default",
    )
    max_det: PositiveInt = 1000
    # experiment tracking (daik_core.engine.tracking): where the run is reported, not what it trains, so
    # neither is part of a run's training hash (TRACKING_HPARAMS)
    mlflow: str | None = Field(
        default=None,
        min_length=1,
        description="MLflow tracking URI (http(s)://host:port, file:///abs/mlruns, sqlite:////abs/mlflow.db) "
        "that the run logs its parameters, metrics and artifacts to (the mlflow extra: pip install "
        "'daik[mlflow]'); unset: the environment's DAIK_MLFLOW_TRACKING_URI, else no MLflow logging",
    )
    tensorboard: bool = Field(
        default=False,
        description="write TensorBoard event files to <output>/tensorboard (the tensorboard extra: pip "
        "install 'daik[tensorboard]'); DAIK_TENSORBOARD=1 in the environment does the same",
    )

    @field_validator("imgsz")
    @classmethod
    def _imgsz_multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"must be a multiple of 32 (the largest stride), got {v}")
        return v


class JobSpec(_Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["train", "distill"] = "train"
    dataset: DatasetSpec
    student: ModelSpec = ModelSpec()
    teacher: TeacherSpec | None = None
    assigner: AssignerSpec = AssignerSpec()
    loss: DetectionLossSpec = DetectionLossSpec()
    augment: AugmentSpec = AugmentSpec()
    hparams: HParams = HParams()
    output: str | None = Field(
        default=None, description="output folder; default runs/<name> in the current directory"
    )
    losses: DistillSpec = Field(default=DistillSpec(), description="distillation terms; all off by default")

    @model_validator(mode="after")
    def _teacher_matches_kind(self) -> JobSpec:
        if self.kind == "distill" and self.teacher is None:
            raise ValueError("a distill job needs teacher.checkpoint")
        if self.kind == "train" and self.teacher is not None:
            raise ValueError("a train job takes no teacher (use kind: distill)")
        if self.kind == "train" and self.losses.needs_teacher():
            raise ValueError(
                "losses: a train job takes no teacher-based distillation terms (use kind: distill)"
            )
        return self

    def output_dir(self) -> Path:
        return Path(self.output) if self.output else Path("runs") / self.name

    def with_overrides(self, overrides: Mapping[str, Any], *, source: str = "spec") -> JobSpec:
        """A validated copy of the spec with ``overrides`` merged into its fields (:func:`deep_merge`: a
        mapping merges into a section, ``{"hparams": {"epochs": 3}}`` changes one field; any other value,
        ``None`` included, replaces the field); errors name ``source`` as :func:`parse_spec`'s do. No
        overrides: the spec itself."""
        if not overrides:
            return self
        return parse_spec(deep_merge(self.model_dump(mode="json"), overrides), source=source)


class SpecError(DaikError):
    """A job spec that does not validate; the message names every bad field."""


def format_validation_error(err: ValidationError) -> list[str]:
    """One ``field.path: message`` line per problem."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return lines


def parse_spec(data: Any, source: str = "spec") -> JobSpec:
    """Validate a mapping as a :class:`JobSpec`; errors name the source and each bad field."""
    try:
        return JobSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(f"{source}: " + "; ".join(format_validation_error(err))) from None


#: The fields of a job spec that are paths (see the module docstring).
SPEC_PATH_FIELDS = ("dataset.train", "dataset.val", "student.weights", "teacher.checkpoint", "output")


def _path_holders(data: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """``(field, mapping, key)`` of every path field present as a non-empty string in raw spec ``data``."""
    out = []
    for field in SPEC_PATH_FIELDS:
        section, _, key = field.rpartition(".")
        holder = data.get(section) if section else data
        if isinstance(holder, dict) and isinstance(holder.get(key), str) and holder[key]:
            out.append((field, holder, key))
    return out


def resolve_spec_paths(data: Mapping[str, Any], base: str | Path) -> dict[str, Any]:
    """A copy of the raw spec mapping ``data`` with its relative paths (:data:`SPEC_PATH_FIELDS`) made
    absolute against the folder ``base`` (``~`` expanded); other values are left to validation."""
    out = copy.deepcopy(dict(data))
    for _, holder, key in _path_holders(out):
        holder[key] = os.path.abspath(Path(base) / Path(holder[key]).expanduser())
    return out


def relative_spec_paths(data: Mapping[str, Any], base: str | Path | None = None) -> dict[str, Any]:
    """A copy of the raw spec mapping ``data`` with its absolute paths written relative to ``base`` (default:
    the current directory): the form a spec of relative paths had before they were resolved (what the
    ablation's run hashes were computed from)."""
    out = copy.deepcopy(dict(data))
    start = os.path.abspath(base if base is not None else os.curdir)
    for _, holder, key in _path_holders(out):
        if os.path.isabs(holder[key]):
            holder[key] = os.path.relpath(holder[key], start)
    return out


def _key_lines(text: str) -> dict[str, int]:
    """The 1-based line of every key of a YAML (or JSON) mapping, by dotted path (``dataset.train``)."""
    import yaml

    lines: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    lines[prefix + str(key.value)] = key.start_mark.line + 1
                    walk(value, f"{prefix}{key.value}.")

    with contextlib.suppress(yaml.YAMLError):
        walk(yaml.compose(text, Loader=yaml.SafeLoader), "")
    return lines


def _yolo_dataset(data: dict[str, Any], where: str) -> None:
    """``dataset.train`` naming an Ultralytics data YAML: its split folders and names, in place."""
    from daik_core.data.yolo_obb import is_data_yaml, read_data_yaml

    dataset = data.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("train"), str):
        return
    if not is_data_yaml(dataset["train"]):
        return
    try:
        yolo = read_data_yaml(dataset["train"])
    except DaikError as err:
        raise SpecError(f"{where}: dataset.train: {err}") from None
    dataset["train"] = str(yolo.split("train"))
    val = dataset.get("val")
    if val is None and "val" in yolo.splits:
        dataset["val"] = str(yolo.splits["val"])
    elif isinstance(val, str) and is_data_yaml(val):
        try:
            dataset["val"] = str(read_data_yaml(val).split("val"))
        except DaikError as err:
            raise SpecError(f"{where}: dataset.val: {err}") from None
    if "classes" not in dataset:
        dataset["classes"] = list(yolo.names)
    else:
        try:
            given = DatasetSpec.model_validate({"train": "x", "classes": dataset["classes"]}).class_names()
        except ValidationError:
            return  # validation names the field
        if given != yolo.names:
            raise SpecError(
                f"{where}: dataset.classes {list(given)} differ from the names of {yolo.path} "
                f"{list(yolo.names)} (YOLO class k is the k-th name; leave dataset.classes out)"
            )


def _check_paths(spec: JobSpec, given: dict[str, str], lines: dict[str, int], source: str) -> None:
    """The inputs of a spec file exist: dataset folders, checkpoint files."""
    wanted = {
        "dataset.train": ("folder", spec.dataset.train),
        "dataset.val": ("folder", spec.dataset.val),
        "student.weights": ("file", spec.student.weights),
        "teacher.checkpoint": ("file", spec.teacher.checkpoint if spec.teacher is not None else None),
    }
    for field, (kind, value) in wanted.items():
        if value is None:
            continue
        path = Path(value)
        if path.is_dir() if kind == "folder" else path.is_file():
            continue
        original = given.get(field, value)
        shown = original if original == value else f"{original} (resolved to {value})"
        line = lines.get(field)
        where = f"{source}:{line}" if line is not None else str(source)
        raise SpecError(f"{where}: {field}: {shown}: {kind} does not exist")


def spec_from_mapping(
    data: Mapping[str, Any],
    base: str | Path = ".",
    *,
    source: str = "spec",
    check_paths: bool = True,
    lines: Mapping[str, int] | None = None,
) -> JobSpec:
    """A job spec from the raw mapping of a spec written in the folder ``base`` (:func:`load_spec` reads a
    file into this): relative paths resolved against ``base``, a data YAML expanded, validated, and with
    ``check_paths`` the inputs checked (errors name ``source`` and, from ``lines``, the field's line)."""
    given = {field: holder[key] for field, holder, key in _path_holders(dict(data))}
    resolved = resolve_spec_paths(data, Path(base).absolute())
    _yolo_dataset(resolved, source)
    spec = parse_spec(resolved, source=source)
    if check_paths:
        _check_paths(spec, given, dict(lines or {}), source)
    return spec


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``update`` merged in: a mapping of ``update`` merges into a mapping of
    ``base`` at the same key, every other value replaces (copied)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def spec_overrides(hparams: Mapping[str, Any], output: str | Path | None = None) -> dict[str, Any]:
    """The overrides for :meth:`JobSpec.with_overrides` of ``hparams`` fields (``epochs``, ``batch``, ...)
    and an ``output`` folder: the command line's and :func:`daik_core.train`'s; empty when there are none."""
    overrides: dict[str, Any] = {}
    if hparams:
        overrides["hparams"] = dict(hparams)
    if output is not None:
        overrides["output"] = str(output)
    return overrides


def load_spec(path: str | Path, *, check_paths: bool = True) -> JobSpec:
    """Read a YAML or JSON job spec file. Relative paths are relative to the file's folder (module
    docstring); with ``check_paths`` the input folders and files must exist (an error names the field,
    the path as written, what it resolved to, and the line)."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise SpecError(f"{path}: a folder, not a job spec file (YAML or JSON, e.g. configs/synth-n.yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: file does not exist") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not a UTF-8 text file ({err.reason}); a job spec is YAML or JSON") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read the file ({err.strerror or err})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SpecError(f"{path}{line}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a job spec must be a mapping, got {type(data).__name__}")
    return spec_from_mapping(
        data, path.absolute().parent, source=str(path), check_paths=check_paths, lines=_key_lines(text)
    )
