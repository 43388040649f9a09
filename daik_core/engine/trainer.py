"""The trainer: ``Trainer(spec, callbacks).fit() -> TrainResult``.

One run, in order:

1. Seed python, numpy and torch with ``hparams.seed`` (``deterministic``: ``torch.use_deterministic_
   algorithms(True)``, cuDNN deterministic, no benchmark); pick the device (``auto``: ``cuda:<local_rank>``
   when CUDA is available, else the CPU); join the DDP process group when ``torchrun`` started us.
2. Open the datasets (every file is checked before any training: a bad or missing folder is a
   :class:`~daik_core.errors.DaikError` naming it), build the detector, the loss, the optimiser, the EMA;
   resume from a checkpoint when asked.
3. Epochs of iterations: learning rate of the step (linear warm-up over ``warmup_epochs``, per iteration,
   then cosine down to ``lr * lr_final``), forward (``torch.autocast`` on CUDA when ``amp``), the loss
   terms, backward through a GradScaler, gradient clipping (``grad_clip`` max norm; 0 = off), the optimiser
   step, the EMA update.
4. After every ``eval_interval`` epochs and after the last: rank 0 evaluates the EMA model with the DOTA
   evaluator on the validation set (merged on full images when tiled; :mod:`daik_core.inference.evaluate`).
   Fitness is mAP50; the best epoch's checkpoint is ``best.pt``. Without a validation set, ``best.pt`` is
   the last epoch.
5. Outputs in ``spec.output_dir()`` (rank 0 only): ``spec.yaml`` (the resolved spec), ``metrics.jsonl``
   (one line per epoch), ``weights/last.pt`` every epoch and ``weights/best.pt`` (atomic writes; format in
   :mod:`daik_core.engine.checkpoint`), and ``results.json`` when the run completes (its ``params`` and
   ``gflops`` are those of the fused inference model, as ``daik info`` and the ablation table count them).
   Then, unless ``plots=False``, the pictures of :class:`~daik_core.engine.callbacks.PlotsCallback`:
   ``results.png``, ``pr_curve.png``, ``confusion_matrix.png``, ``labels.png`` and ``val_pred_<i>.jpg``.

``metrics.jsonl`` lines: ``epoch`` (1-based), ``step`` (optimiser steps so far), every ``loss_*`` term and
``loss`` (their sum) as epoch means (over iterations, and over ranks under DDP), ``lr`` (of the epoch's last
step), ``images_per_s`` (all ranks, training loop only), ``epoch_time_s``; after an evaluation also
``map50``, ``map50_95``, ``ap50`` and ``ap50_95`` (per class; ``null`` for a class without ground truth),
``eval_time_s``, ``is_best``.

Tracking: rank 0 adds the MLflow and TensorBoard callbacks that the spec (``hparams.mlflow``,
``hparams.tensorboard``) or the environment asks for (:mod:`daik_core.engine.tracking`); when training
raises, the callbacks' ``on_train_error`` runs before the error goes on.

Stopping: callbacks' ``should_stop()`` is polled before every iteration (all ranks agree: any rank's stop
stops all). On a stop the trainer writes ``last.pt`` *at the current iteration* (model, optimiser, EMA, RNG,
the position in the epoch and the epoch's running sums) and returns status ``"stopped"``; resuming from it
continues exactly where it stopped (the loader replays the epoch's order and skips the batches done).

Exact resume: the data order and augmentation are functions of ``(seed, epoch, index)``
(:mod:`daik_core.data.loader`), the schedule is a function of the global step, and the checkpoint holds
every other piece of state; in ``deterministic`` mode on one process a resumed run ends with the same weights
and metrics as an uninterrupted one.

DDP: ``hparams.batch`` is the global batch; each of the ``W`` processes takes ``batch // W``. Rank 0 alone
writes files, evaluates and calls the callbacks; the others wait at a barrier. On CUDA the BatchNorm layers
become SyncBatchNorm (so the batch statistics are those of the global batch, as on one process);
SyncBatchNorm does not run on the CPU, so gloo-on-CPU runs keep per-process statistics. The loss is
normalised per process (as YOLOv6 does) and DDP averages the gradients.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from daik_core.assigners import job_assigner_spec
from daik_core.config import HParams, JobSpec
from daik_core.data.dataset import DotaDataset
from daik_core.data.loader import Batch, EpochLoader, build_dataloader
from daik_core.engine.callbacks import Callback, CallbackList, EvalPredictions, PlotsCallback, TrainInfo
from daik_core.engine.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    checkpoint_meta,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from daik_core.engine.distributed import (
    DistInfo,
    all_reduce_max,
    all_reduce_mean,
    barrier,
    cleanup_distributed,
    dist_env,
    init_distributed,
    resolve_device,
)
from daik_core.engine.ema import ModelEMA
from daik_core.engine.environment import compute_environment
from daik_core.engine.teacher import load_teacher
from daik_core.engine.tracking import check_tracking, tracking_callbacks
from daik_core.errors import DaikError
from daik_core.files import atomic_write_text
from daik_core.inference.evaluate import EvalOutput, PredictSettings, evaluate_model
from daik_core.inference.gallery import build_gallery, write_gallery
from daik_core.losses.detection import DetectionLoss
from daik_core.losses.distillation import DistillationLoss, sad_rank_metric
from daik_core.models.detector import Detector, DetectorOutput
from daik_core.models.info import ModelInfo, model_info
from daik_core.presets import build_detector
from daik_core.structures.boxes import ANGLE_BINS
from daik_core.structures.targets import Targets

__all__ = [
    "EMA_TAU",
    "MAX_NONFINITE_STEPS",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "legacy_loss_changes",
    "lr_at",
    "param_groups",
    "seed_everything",
    "train",
]

#: EMA ramp constant (YOLOv6): ``decay * (1 - exp(-updates / EMA_TAU))``.
EMA_TAU = 2000.0
#: Consecutive steps with a non-finite loss that are skipped before training fails.
MAX_NONFINITE_STEPS = 10

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


# ---------------------------------------------------------------------------------------- pure parts
def lr_at(step: int, *, base_lr: float, lr_final: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based).

    Warm-up: ``base_lr * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (reaching ``base_lr`` at its
    last step). Then cosine from ``base_lr`` at ``step = warmup_steps`` to ``base_lr * lr_final`` at the last
    step ``total_steps - 1`` (and after it).
    """
    warmup_steps = min(max(warmup_steps, 0), total_steps)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - 1 - warmup_steps, 1)
    p = min(max(step - warmup_steps, 0) / span, 1.0)
    return base_lr * (lr_final + (1.0 - lr_final) * 0.5 * (1.0 + math.cos(math.pi * p)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimiser groups: conv / linear weights with ``weight_decay``; biases, normalisation weights
    and every other 0-d / 1-d parameter (e.g. RepVGG's ``alpha``) without."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if name == "bias" or isinstance(module, _NORMS) or p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, hp: HParams) -> torch.optim.Optimizer:
    """AdamW (``betas = (momentum, 0.999)``, as YOLOv6 / Ultralytics) or SGD (Nesterov momentum), over
    :func:`param_groups`."""
    groups = param_groups(model, hp.weight_decay)
    opt: torch.optim.Optimizer
    if hp.optimizer == "adamw":
        # foreach: one multi-tensor kernel per op instead of a Python loop over ~300 tensors (torch's
        # default on CUDA, not on the CPU, where it saves ~8 ms of a ~600 ms n-preset step)
        opt = torch.optim.AdamW(groups, lr=hp.lr, betas=(hp.momentum, 0.999), foreach=True)
    elif hp.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.momentum > 0, foreach=True)
    else:  # pragma: no cover - the spec allows only these
        raise DaikError(f"hparams.optimizer: unknown optimizer {hp.optimizer!r}")
    return opt


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (every device); ``deterministic`` also makes torch use deterministic
    algorithms (an op without one raises) and cuDNN deterministic without benchmarking."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (code that uses the global generator)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        if torch.are_deterministic_algorithms_enabled():  # (the call imports torch._inductor: 3 s)
            torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels


def _per_process_batch(batch: int, world: int) -> int:
    """Each of ``world`` processes takes ``batch // world`` of the global batch."""
    if batch < world:
        raise DaikError(f"hparams.batch: the global batch ({batch}) is smaller than the {world} processes")
    if batch % world:
        warnings.warn(
            f"hparams.batch {batch} is not a multiple of the {world} processes: each takes "
            f"{batch // world} (global batch {batch // world * world})",
            stacklevel=2,
        )
    return batch // world


def _json_float(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


# ------------------------------------------------------------------------------------------- results
@dataclass
class TrainResult:
    """How :meth:`Trainer.fit` ended. ``status``: ``"completed"`` (all epochs, ``results.json`` written) or
    ``"stopped"`` (a callback asked; ``last.pt`` holds the exact point). ``epoch``: completed epochs;
    ``iteration``: batches done in the next epoch (0 unless stopped mid-epoch). ``results``: the content of
    ``results.json`` when completed (with ``status``; for a stopped run only the status and position)."""

    status: Literal["completed", "stopped"]
    epoch: int
    iteration: int
    step: int
    output_dir: Path
    last: Path | None
    best: Path | None
    results: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Progress:
    """Running sums of the current epoch (saved in a mid-epoch checkpoint)."""

    iteration: int = 0
    loss_sums: dict[str, float] = field(default_factory=dict)
    images: int = 0
    seconds: float = 0.0
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "loss_sums": dict(self.loss_sums),
            "images": self.images,
            "seconds": self.seconds,
            "skipped": self.skipped,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> _Progress:
        return _Progress(
            iteration=int(d.get("iteration", 0)),
            loss_sums={str(k): float(v) for k, v in dict(d.get("loss_sums", {})).items()},
            images=int(d.get("images", 0)),
            seconds=float(d.get("seconds", 0.0)),
            skipped=int(d.get("skipped", 0)),
        )


# ------------------------------------------------------------------------------------------ trainer
class Trainer:
    """Trains ``spec`` (see the module docstring).

    ``resume``: ``True`` continues from ``<output>/weights/last.pt``, a path from that checkpoint, ``None``
    / ``False`` starts afresh. ``overwrite``: start afresh even when the output folder already holds a run
    (otherwise that is an error, so that a run is never overwritten by accident). ``callbacks``: see
    :mod:`daik_core.engine.callbacks`. ``plots``: draw the run's pictures when it completes (a
    :class:`~daik_core.engine.callbacks.PlotsCallback`, called before the given callbacks, so that the
    pictures exist when they hear of the end).
    """

    # built by fit()'s setup steps (``_setup_run`` and the ``_build_*`` methods), in this order
    dist: DistInfo
    device: torch.device
    is_main: bool
    hooks: CallbackList  # rank 0: the given callbacks, the spec's trackers and the plots; else none
    batch: int  # per process
    use_amp: bool
    channels_last: bool
    classes: tuple[str, ...]
    teacher: Detector | None
    val_set: DotaDataset | None
    loader: EpochLoader
    iters_per_epoch: int
    total_steps: int
    warmup_steps: int
    model: Detector
    fused_info: ModelInfo
    criterion: DetectionLoss
    distill: DistillationLoss | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None
    net: nn.Module  # the student, or its DDP wrapper

    def __init__(
        self,
        spec: JobSpec,
        callbacks: Iterable[Callback] = (),
        *,
        resume: bool | str | Path | None = None,
        overwrite: bool = False,
        plots: bool = True,
    ) -> None:
        self.spec = spec
        self.callbacks = CallbackList(callbacks)
        self.plots = plots
        self.resume = resume
        self.overwrite = overwrite
        self.output_dir = spec.output_dir()
        self.weights_dir = self.output_dir / "weights"
        self.last_path = self.weights_dir / "last.pt"
        self.best_path = self.weights_dir / "best.pt"
        self.metrics_path = self.output_dir / "metrics.jsonl"
        # the run's position and results so far (a resume restores them)
        self.epoch = 0
        self.step = 0
        self.best_fitness: float | None = None
        self.best_epoch: int | None = None
        self.train_time = 0.0
        self.last_eval: EvalOutput | None = None
        self.last_eval_epoch: int | None = None
        # the compute environments it trained in (daik_core.engine.environment); a resume elsewhere adds one
        self.environments: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------------------ fit
    def fit(self) -> TrainResult:
        """Train; returns how it ended. Restores torch's deterministic-algorithms setting afterwards, and
        leaves the DDP process group when this call joined it."""
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
        try:
            return self._fit()
        except BaseException as err:
            hooks: CallbackList | None = getattr(self, "hooks", None)
            if hooks is not None:
                try:
                    hooks.on_train_error(err)
                except Exception as hook_err:  # the training error is the one to report
                    warnings.warn(f"a callback failed on the training error: {hook_err}", stacklevel=2)
            raise
        finally:
            if torch.are_deterministic_algorithms_enabled() != was_deterministic:
                torch.use_deterministic_algorithms(was_deterministic)
            if owns_group:
                cleanup_distributed()

    def _fit(self) -> TrainResult:
        resume_path = self._setup_run()
        self.teacher = self._build_teacher()
        train_set = self._build_data()
        self.model = self._build_model(resume_path)
        self.criterion, self.distill = self._build_losses()
        self.optimizer, self.scaler, self.ema = self._build_optimizer()
        progress, rng_state = (_Progress(), None) if resume_path is None else self._load_resume(resume_path)
        if all(e.get("id") != self.environment["id"] for e in self.environments):
            self.environments.append(self.environment)
        self.net = self._wrap_ddp()
        self._prepare_output(resume_path)
        barrier()
        if rng_state is not None:
            set_rng_state(rng_state)
        self.hooks.on_train_start(self._train_info(train_set, resume_path))
        return self._run(progress)

    def _run(self, progress: _Progress) -> TrainResult:
        """The epochs from ``progress`` on (a mid-epoch resume's position, else a fresh epoch)."""
        while self.epoch < self.spec.hparams.epochs:
            stopped = self._train_epoch(progress)
            if stopped is not None:
                return self._stop(stopped)
            progress = _Progress()
        return self._finish()

    # -------------------------------------------------------------------------------------- setup
    def _setup_run(self) -> Path | None:
        """The process: checks that need no data, seeds, device, the DDP group, the hooks and the per-process
        batch. Returns the checkpoint to resume from (``None``: a fresh run)."""
        spec, hp = self.spec, self.spec.hparams
        env = dist_env()
        device = resolve_device(hp.device, env.local_rank, env.distributed)
        resume_path = self._resume_path()
        if resume_path is None and not self.overwrite and env.is_main and self.last_path.exists():
            raise DaikError(
                f"{self.output_dir}: already holds a run (weights/last.pt); resume it with --resume, or "
                "start afresh with --overwrite or another output folder"
            )
        check_tracking(spec)  # a configured tracker without its extra: an error before any work
        seed_everything(hp.seed, hp.deterministic)
        self.dist = init_distributed(device)
        self.device = device
        self.is_main = self.dist.is_main
        # rank 0 alone calls the hooks, the tracking ones (MLflow, TensorBoard) of the spec included
        tracking = tracking_callbacks(spec, self.callbacks.callbacks) if self.is_main else []
        self.hooks = CallbackList([*self.callbacks.callbacks, *tracking]) if self.is_main else CallbackList()
        self.batch = _per_process_batch(hp.batch, self.dist.world_size)
        self.use_amp = hp.amp and device.type == "cuda"
        self.channels_last = hp.channels_last and device.type == "cuda"
        self.classes = spec.dataset.class_names()
        self.environment = compute_environment(device, self.dist.world_size)
        return resume_path

    def _build_teacher(self) -> Detector | None:
        """The teacher of a distill job: checked against the student first (cheap, and before the data)."""
        spec = self.spec
        if spec.kind != "distill":
            return None
        assert spec.teacher is not None  # the spec requires one for kind distill
        if spec.teacher.checkpoint is None:
            raise DaikError(
                "teacher.job names a service job; the trainer needs teacher.checkpoint (a file written "
                "by `daik train`, e.g. runs/<name>/weights/best.pt)"
            )
        with torch.random.fork_rng(devices=[]):  # building it must not move the student's RNG
            teacher, _ = load_teacher(
                spec.teacher.checkpoint,
                classes=self.classes,
                reg_max=spec.student.reg_max,
                angle_bins=ANGLE_BINS,
                device=self.device,
                half=self.use_amp,
                imgsz=spec.hparams.imgsz,
            )
        return teacher

    def _build_data(self) -> DotaDataset:
        """The datasets (validated up front, before any training), the plots hook and the training loader
        with the schedule's lengths; returns the training set."""
        spec, hp = self.spec, self.spec.hparams

        def dataset(folder: str | Path, *, train: bool) -> DotaDataset:
            return DotaDataset(
                folder,
                self.classes,
                hp.imgsz,
                augment=spec.augment if train else None,
                split=spec.dataset.split,
                skip_unknown=spec.dataset.skip_unknown,
                train=train,
            )

        train_set = dataset(spec.dataset.train, train=True)
        self.val_set = dataset(spec.dataset.val, train=False) if spec.dataset.val is not None else None
        if self.plots and self.is_main:
            # first: the pictures exist before the other callbacks report the end (the worker's End event)
            self.hooks = CallbackList([PlotsCallback(train_set.all_objects), *self.hooks.callbacks])
        self.loader = build_dataloader(
            train_set,
            self.batch,
            workers=hp.workers,
            shuffle=True,
            seed=hp.seed,
            distributed=self.dist.distributed,
        )
        self.iters_per_epoch = len(self.loader)
        self.total_steps = hp.epochs * self.iters_per_epoch
        self.warmup_steps = round(hp.warmup_epochs * self.iters_per_epoch)
        return train_set

    def _build_model(self, resume_path: Path | None) -> Detector:
        """The student on the device (``student.weights`` copied in on a fresh run); records the fused
        model's parameters and GFLOPs."""
        spec, hp = self.spec, self.spec.hparams
        model = build_detector(spec.student.preset, len(self.classes), reg_max=spec.student.reg_max)
        if spec.student.weights is not None and resume_path is None:
            _init_from_checkpoint(model, Path(spec.student.weights))
        # parameters and GFLOPs are those of the fused (inference) model everywhere: the start line,
        # results.json, `daik info` and the ablation table report the same numbers
        fused = copy.deepcopy(model).eval().fuse()
        self.fused_info = model_info(fused, hp.imgsz)
        del fused
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    def _build_losses(self) -> tuple[DetectionLoss, DistillationLoss | None]:
        """The detection loss (its assigner from :func:`~daik_core.assigners.tal.job_assigner_spec`) and,
        with a teacher, the distillation terms."""
        spec = self.spec
        assigner = job_assigner_spec(spec.assigner, spec.losses.aal)
        criterion = DetectionLoss(len(self.classes), spec.student.reg_max, assigner, spec.loss).to(
            self.device
        )
        if self.teacher is None:
            return criterion, None
        if spec.losses.feat.kind != "none" and self.dist.distributed:
            # the adapters live outside the DDP-wrapped student, so their gradients would not be synced
            raise DaikError("losses.feat: feature distillation under DDP is not supported yet")
        distill = DistillationLoss(
            spec.losses,
            student_channels=self.model.config.head_channels,
            teacher_channels=self.teacher.config.head_channels,
            loss_spec=spec.loss,
        ).to(self.device)
        return criterion, distill

    def _build_optimizer(self) -> tuple[torch.optim.Optimizer, torch.amp.GradScaler, ModelEMA | None]:
        """The optimiser over the student (and the feature adapters, which train with it), the AMP scaler and
        the EMA (rank 0). The learning-rate schedule is :func:`lr_at` of the step."""
        hp = self.spec.hparams
        trained: nn.Module = self.model if self.distill is None else nn.ModuleList([self.model, self.distill])
        optimizer = build_optimizer(trained, hp)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_amp)
        ema = ModelEMA(self.model, hp.ema_decay, EMA_TAU) if hp.ema and self.is_main else None
        return optimizer, scaler, ema

    def _wrap_ddp(self) -> nn.Module:
        """The module the loop runs: the student, or under DDP its DistributedDataParallel wrapper (with
        SyncBatchNorm on CUDA)."""
        net: nn.Module = self.model
        if self.dist.distributed:
            if self.device.type == "cuda":
                net = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        return net

    def _prepare_output(self, resume_path: Path | None) -> None:
        """Rank 0: the output folders, ``spec.yaml``, the metrics kept from a resumed run, and no stale files
        of a previous run when starting afresh."""
        if not self.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.output_dir / "spec.yaml", _spec_yaml(self.spec))
        self._truncate_metrics(keep_through=self.epoch if resume_path is not None else 0)
        if resume_path is None:  # --overwrite: nothing of the previous run may pass for this one
            for stale in (self.best_path, self.last_path, self.output_dir / "results.json"):
                stale.unlink(missing_ok=True)

    def _train_info(self, train_set: DotaDataset, resume_path: Path | None) -> TrainInfo:
        hp, world = self.spec.hparams, self.dist.world_size
        return TrainInfo(
            name=self.spec.name,
            output_dir=self.output_dir,
            device=str(self.device),
            world_size=world,
            epochs=hp.epochs,
            start_epoch=self.epoch,
            iterations_per_epoch=self.iters_per_epoch,
            batch=self.batch * world,
            imgsz=hp.imgsz,
            train_images=len(train_set),
            val_images=len(self.val_set) if self.val_set is not None else 0,
            params=self.fused_info["params"],
            gflops=self.fused_info["gflops"],
            resumed_from=resume_path,
            classes=tuple(self.classes),
            start_step=self.step,
        )

    # ---------------------------------------------------------------------------------------- epoch
    def _train_epoch(self, progress: _Progress) -> _Progress | None:
        """One epoch from ``progress`` on; returns the progress when stopped, else ``None``."""
        epoch = self.epoch  # 0-based inside, 1-based outside
        self.loader.set_epoch(epoch)
        self.net.train()
        self.hooks.on_epoch_start(epoch + 1, self.iters_per_epoch)
        world = self.dist.world_size
        t_start = time.perf_counter() - progress.seconds
        nonfinite_run = 0
        lr = self._lr(self.step)
        for i, batch in enumerate(self.loader):
            if i < progress.iteration:
                continue  # resumed mid-epoch: these batches were done before the stop
            if self._poll_stop():
                progress.seconds = time.perf_counter() - t_start
                return progress
            lr = self._lr(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            total, losses = self._forward(batch)
            finite = all(math.isfinite(v) for v in losses.values())
            if self.dist.distributed:  # agree before backward: DDP's gradient all-reduce needs every rank
                flag = torch.tensor([0.0 if finite else 1.0], device=self._coll_device())
                finite = float(all_reduce_max(flag).item()) == 0.0
            if finite:
                nonfinite_run = 0
                self.scaler.scale(total).backward()
                self._optimizer_step()
                for k, v in losses.items():
                    progress.loss_sums[k] = progress.loss_sums.get(k, 0.0) + v
            else:
                self.optimizer.zero_grad(set_to_none=True)
                progress.skipped += 1
                nonfinite_run += 1
                if nonfinite_run >= MAX_NONFINITE_STEPS:
                    terms = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
                    raise DaikError(
                        f"training diverged: the loss was not finite for {nonfinite_run} steps in a row "
                        f"(epoch {epoch + 1}, step {self.step}: {terms}); lower hparams.lr or check the data"
                    )
            self.step += 1
            progress.iteration = i + 1
            progress.images += batch.images.shape[0] * world
            elapsed = time.perf_counter() - t_start
            logs = {k: v for k, v in losses.items() if k != "loss"}
            logs["loss"] = losses["loss"]
            logs["lr"] = lr
            logs["images_per_s"] = progress.images / max(elapsed, 1e-9)
            self.hooks.on_batch_end(epoch + 1, i + 1, logs)
        progress.seconds = time.perf_counter() - t_start
        self._end_epoch(progress, lr)
        return None

    def _forward(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Forward and loss of one batch: the total to back-propagate (the sum of the loss terms) and the
        terms and ``loss`` as floats."""
        images = batch.images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = batch.targets.to(self.device, non_blocking=True)
        with torch.autocast(device_type=self.device.type, enabled=self.use_amp):
            outputs = self.net(images)
        if self.teacher is None:
            losses, _ = self.criterion(outputs, targets)  # in float32, outside autocast
        else:
            assert self.distill is not None
            losses = self._distill_losses(images, targets, outputs)
        total = torch.stack(list(losses.values())).sum()
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["loss"] = float(total.detach())
        return total, values

    def _distill_losses(self, images: Tensor, targets: Targets, outputs: DetectorOutput) -> dict[str, Tensor]:
        """Detection loss (with SAD's teacher-ranked positives when on) composed with the KD terms."""
        assert self.teacher is not None and self.distill is not None
        spec = self.spec.losses
        with torch.no_grad():
            t_param = next(self.teacher.parameters())
            t_out = self.teacher(images.to(t_param.dtype))
        rank = sad_rank_metric(self.criterion.assigner, t_out, targets) if spec.sad.enabled else None
        losses, assign = self.criterion(outputs, targets, rank_metric=rank)
        kd = self.distill(
            outputs,
            t_out,
            assign,
            self.epoch,
            self.spec.hparams.epochs,
            targets=targets,
            assigner=self.criterion.assigner,
        )
        return losses | kd

    def _optimizer_step(self) -> None:
        hp = self.spec.hparams
        if hp.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), hp.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)

    def _lr(self, step: int) -> float:
        hp = self.spec.hparams
        return lr_at(
            step,
            base_lr=hp.lr,
            lr_final=hp.lr_final,
            warmup_steps=self.warmup_steps,
            total_steps=self.total_steps,
        )

    def _coll_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _poll_stop(self) -> bool:
        stop = self.callbacks.should_stop()
        if self.dist.distributed:
            flag = torch.tensor([1.0 if stop else 0.0], device=self._coll_device())
            stop = float(all_reduce_max(flag).item()) > 0.0
        return stop

    def _epoch_means(self, progress: _Progress) -> dict[str, float]:
        n = max(progress.iteration - progress.skipped, 1)
        keys = sorted(progress.loss_sums)
        sums = torch.tensor([progress.loss_sums[k] for k in keys], dtype=torch.float64)
        if self.dist.distributed and keys:
            sums = all_reduce_mean(sums.to(self._coll_device())).cpu()
        return {k: float(s) / n for k, s in zip(keys, sums.tolist(), strict=True)}

    def _end_epoch(self, progress: _Progress, lr: float) -> None:
        hp = self.spec.hparams
        t0 = time.perf_counter()
        means = self._epoch_means(progress)
        self.epoch += 1
        epoch = self.epoch
        metrics: dict[str, Any] = {"epoch": epoch, "step": self.step}
        metrics.update({k: v for k, v in means.items() if k.startswith("loss_")})
        metrics["loss"] = means.get("loss", float("nan"))
        metrics["lr"] = lr
        metrics["images_per_s"] = progress.images / max(progress.seconds, 1e-9)
        metrics["epoch_time_s"] = progress.seconds
        if progress.skipped:
            metrics["skipped_steps"] = progress.skipped
        is_best = False
        evaluate = self.val_set is not None and (epoch % hp.eval_interval == 0 or epoch == hp.epochs)
        if self.is_main:
            if evaluate:
                out = self._evaluate()
                res = out.result
                metrics["map50"] = _json_float(res.map)
                metrics["map50_95"] = _json_float(res.map_50_95)
                metrics["ap50"] = dict(res.per_class)
                metrics["ap50_95"] = dict(res.per_class_50_95 or {})
                metrics["eval_time_s"] = out.seconds
                fitness = res.map if not math.isnan(res.map) else 0.0
                is_best = self.best_fitness is None or fitness > self.best_fitness
                if is_best:
                    self.best_fitness, self.best_epoch = fitness, epoch
                metrics["is_best"] = is_best
                self.last_eval, self.last_eval_epoch = out, epoch
                self.hooks.on_eval(epoch, res)
                out_images = self.val_set.images if self.val_set is not None else []
                self.hooks.on_predictions(
                    epoch,
                    EvalPredictions(
                        out.detections,
                        out.ground_truth,
                        {rec.image_id: rec.path for rec in out_images},
                    ),
                )
            elif self.val_set is None:
                is_best = True  # no validation: best.pt follows last.pt
                self.best_epoch = epoch
            self.train_time += progress.seconds + (time.perf_counter() - t0)
            self._append_metrics(metrics)
            self.hooks.on_epoch_end(epoch, metrics)
            ckpt = self._checkpoint(_Progress())
            save_checkpoint(self.last_path, ckpt)
            self.hooks.on_checkpoint(self.last_path, epoch, False)
            if is_best:
                save_checkpoint(self.best_path, ckpt)
                self.hooks.on_checkpoint(self.best_path, epoch, True)
        barrier()

    def _evaluate(self) -> EvalOutput:
        hp = self.spec.hparams
        assert self.val_set is not None
        model = self.ema.module if self.ema is not None else self.model
        settings = PredictSettings(
            batch_size=self.batch,
            device=self.device,
            conf_thr=hp.conf_thr,
            nms_iou=hp.nms_iou,
            max_det=hp.max_det,
            amp=self.use_amp,
            channels_last=self.channels_last,
            workers=hp.workers,
        )
        return evaluate_model(model, self.val_set, settings)

    # -------------------------------------------------------------------------------------- the end
    def _stop(self, progress: _Progress) -> TrainResult:
        """Write last.pt at the current point (rank 0) and report a stopped run."""
        if self.dist.distributed and progress.loss_sums:
            keys = sorted(progress.loss_sums)
            sums = torch.tensor([progress.loss_sums[k] for k in keys], dtype=torch.float64)
            sums = all_reduce_mean(sums.to(self._coll_device())).cpu()
            progress.loss_sums = dict(zip(keys, sums.tolist(), strict=True))
        results: dict[str, Any] = {"status": "stopped", "epoch": self.epoch, "iteration": progress.iteration}
        if self.is_main:  # progress.seconds travels in the checkpoint; train_time gets it at the epoch end
            save_checkpoint(self.last_path, self._checkpoint(progress))
            self.hooks.on_checkpoint(self.last_path, self.epoch, False)
            results.update(step=self.step, weights={"last": str(self.last_path)})
            self.hooks.on_train_end(results)
        barrier()
        return TrainResult(
            status="stopped",
            epoch=self.epoch,
            iteration=progress.iteration,
            step=self.step,
            output_dir=self.output_dir,
            last=self.last_path,
            best=self.best_path if self.best_path.exists() else None,
            results=results,
        )

    def _finish(self) -> TrainResult:
        hp = self.spec.hparams
        results: dict[str, Any] = {"status": "completed"}
        if self.is_main:
            res = self.last_eval.result if self.last_eval is not None else None
            results.update(
                {
                    "name": self.spec.name,
                    "epochs": self.epoch,
                    "step": self.step,
                    "metric": res.metric if res is not None else None,
                    "map50": _json_float(res.map) if res is not None else None,
                    "map50_95": _json_float(res.map_50_95) if res is not None else None,
                    "ap50": dict(res.per_class) if res is not None else None,
                    "ap50_95": dict(res.per_class_50_95 or {}) if res is not None else None,
                    "eval_epoch": self.last_eval_epoch,
                    "best_epoch": self.best_epoch,
                    "best_map50": self.best_fitness,
                    "params": self.fused_info["params"],
                    "gflops": self.fused_info["gflops"],
                    "imgsz": hp.imgsz,
                    "train_time_s": self.train_time,
                    "environments": self.environments,
                    "weights": {"last": str(self.last_path), "best": str(self.best_path)},
                }
            )
            atomic_write_text(self.output_dir / "results.json", json.dumps(results, indent=2) + "\n")
            if self.last_eval is not None and self.val_set is not None:
                # what the dashboard shows of the final evaluation (it cannot run the model itself)
                gallery = build_gallery(self.val_set.images, self.val_set.root, self.last_eval.detections)
                write_gallery(self.output_dir, gallery)
            self.hooks.on_train_end(results)
        barrier()
        return TrainResult(
            status="completed",
            epoch=self.epoch,
            iteration=0,
            step=self.step,
            output_dir=self.output_dir,
            last=self.last_path,
            best=self.best_path,
            results=results,
        )

    # --------------------------------------------------------------------------------- checkpoints
    def _checkpoint(self, progress: _Progress) -> dict[str, Any]:
        spec = self.spec
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "model": _cpu_state(self.model.state_dict()),
            "ema": None
            if self.ema is None
            else {"state": _cpu_state(self.ema.module.state_dict()), "updates": self.ema.updates},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {
                "kind": "warmup_cosine",
                "step": self.step,
                "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps,
            },
            "scaler": self.scaler.state_dict(),
            "distill": None if self.distill is None else _cpu_state(self.distill.state_dict()),
            "rng": get_rng_state(),
            "epoch": self.epoch,
            "iteration": progress.iteration,
            "step": self.step,
            "progress": progress.to_dict() if progress.iteration else {},
            "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch,
            "train_time_s": self.train_time,
            "environments": self.environments,
            "spec": spec.model_dump(mode="json"),
            "model_info": {
                "preset": spec.student.preset,
                "num_classes": len(self.classes),
                "classes": list(self.classes),
                "reg_max": spec.student.reg_max,
                "imgsz": spec.hparams.imgsz,
            },
        }

    def _resume_path(self) -> Path | None:
        if self.resume is None or self.resume is False:
            return None
        if self.resume is True:
            path = self.last_path
            if not path.is_file():
                raise DaikError(f"{path}: no checkpoint to resume from (train without --resume first)")
            return path
        return Path(self.resume)

    def _load_resume(self, path: Path) -> tuple[_Progress, dict[str, Any] | None]:
        try:
            ckpt = load_checkpoint(path)
        except DaikError as err:
            # --resume (not a named file): an unreadable last.pt falls back to best.pt, an earlier point of
            # the same run (a full checkpoint too); the metrics past it are truncated as on any resume
            fallback = self.best_path
            if self.resume is not True or path == fallback or not fallback.is_file():
                raise
            warnings.warn(
                f"{err}; resuming from {fallback} (an earlier point of the run) instead", stacklevel=2
            )
            path, ckpt = fallback, load_checkpoint(fallback)
        meta = checkpoint_meta(ckpt, path)
        spec = self.spec
        mine = (spec.student.preset, tuple(self.classes), spec.student.reg_max)
        theirs = (meta.preset, meta.classes, meta.reg_max)
        if mine != theirs:
            raise DaikError(
                f"{path}: cannot resume: the checkpoint's model (preset {meta.preset}, {meta.num_classes} "
                f"classes, reg_max {meta.reg_max}) differs from the spec's (preset {mine[0]}, "
                f"{len(mine[1])} classes, reg_max {mine[2]})"
            )
        for change in legacy_loss_changes(meta.spec, spec):
            warnings.warn(f"{path}: {change}", stacklevel=2)
        epoch, iteration = int(ckpt["epoch"]), int(ckpt.get("iteration", 0))
        if epoch >= spec.hparams.epochs:
            raise DaikError(
                f"{path}: the run already trained {epoch} epochs (hparams.epochs = {spec.hparams.epochs}); "
                "raise --epochs to train longer"
            )
        try:
            self.model.load_state_dict(ckpt["model"])
            if self.distill is not None and ckpt.get("distill") is not None:
                self.distill.load_state_dict(ckpt["distill"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
            if self.ema is not None:
                if ckpt.get("ema"):
                    self.ema.load_state_dict(ckpt["ema"])
                else:  # the run had no EMA: start one from the weights
                    self.ema = ModelEMA(self.model, self.spec.hparams.ema_decay, EMA_TAU)
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DaikError(f"{path}: cannot resume from this checkpoint: {first}") from None
        self.epoch, self.step = epoch, int(ckpt["step"])
        self.best_fitness = ckpt.get("best_fitness")
        self.best_epoch = ckpt.get("best_epoch")
        self.train_time = float(ckpt.get("train_time_s", 0.0))
        self.environments = [e for e in ckpt.get("environments") or [] if isinstance(e, dict)]
        progress = _Progress.from_dict(ckpt.get("progress") or {}) if iteration else _Progress()
        progress.iteration = iteration
        return progress, ckpt.get("rng")

    # ----------------------------------------------------------------------------------------- files
    def _append_metrics(self, metrics: Mapping[str, Any]) -> None:
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(metrics, allow_nan=False, default=_json_default) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _truncate_metrics(self, keep_through: int) -> None:
        """Keep the lines of epochs ``<= keep_through`` (a fresh run keeps none)."""
        if not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                epoch = int(json.loads(line)["epoch"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line
            if epoch <= keep_through:
                kept.append(line)
        atomic_write_text(self.metrics_path, "".join(line + "\n" for line in kept))


def legacy_loss_changes(stored: Mapping[str, Any], spec: JobSpec) -> list[str]:
    """What a run resumed under ``spec`` would train differently from how its checkpoint was trained, where
    the checkpoint's spec (``stored``) predates a change of a loss's meaning: the angle loss was the mean
    over the 180 bins before ``loss.angle_reduction`` existed (now summed), and class KD over all anchors
    was a mean over the anchors before ``cls_kd.fg_thr`` existed (now summed and divided by the positives)."""
    out = []
    loss = stored.get("loss") if isinstance(stored.get("loss"), Mapping) else None
    if loss is not None and "angle_reduction" not in loss and spec.loss.angle_reduction == "sum":
        out.append(
            "this run was trained with the angle loss averaged over the 180 bins (before "
            "loss.angle_reduction); it continues with the sum, 180x stronger: set loss.angle_reduction: mean "
            "in the spec to continue it as it was"
        )
    losses: Mapping[str, Any] = stored["losses"] if isinstance(stored.get("losses"), Mapping) else {}
    ck = losses["cls_kd"] if isinstance(losses.get("cls_kd"), Mapping) else None
    if ck and ck.get("enabled") and ck.get("scope", "all") == "all" and "fg_thr" not in ck:
        out.append(
            "this run was trained with class KD averaged over every anchor (before losses.cls_kd.fg_thr); "
            "over all anchors it is now summed and divided by the number of positives, a larger term"
        )
    return out


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _cpu_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


def _spec_yaml(spec: JobSpec) -> str:
    import yaml

    return str(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))


def _init_from_checkpoint(model: nn.Module, path: Path) -> None:
    """``student.weights``: copy the tensors of a checkpoint (its EMA weights when it has) whose names and
    shapes match; a checkpoint that matches nothing is an error."""
    ckpt = load_checkpoint(path)
    ema = ckpt.get("ema")
    state = ema["state"] if isinstance(ema, dict) and "state" in ema else ckpt["model"]
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise DaikError(f"student.weights: {path}: no tensor fits the student model")
    own.update(matched)
    model.load_state_dict(own)


def train(
    spec: JobSpec,
    callbacks: Iterable[Callback] = (),
    *,
    resume: bool | str | Path | None = None,
    overwrite: bool = False,
    plots: bool = True,
) -> TrainResult:
    """``Trainer(spec, callbacks, resume=..., overwrite=..., plots=...).fit()``."""
    return Trainer(spec, callbacks, resume=resume, overwrite=overwrite, plots=plots).fit()
