"""``daik ablate``: train every configuration of a grid for every seed under one schedule, score each final
model on a validation set, and write the ablation table.

Three steps: :func:`plan_runs` (every spec first, so a bad configuration fails before hours of training),
:func:`train_run` (one run, resumable) and :func:`score_run` (one evaluation); :func:`run_ablation` drives
them and :func:`write_table` writes the table.

Layout under the output folder ``OUT``::

    OUT/runs/<config>/seed<k>/   the trainer's output folder (metrics.jsonl, weights/) + spec.json
    OUT/runs/<config>/seed<k>/record-<split>.json   the scores of its final model on one validation split
    OUT/runs/teacher/record-<split>.json            the teacher checkpoint's scores on that split
    OUT/ablation.json | .csv | .md                  the table of the split scored last

Every run trains the base spec's schedule with the configuration's toggles (see
:mod:`daik_core.ablation.grid`) and the seed; the trainer runs without the validation set (no evaluation
during training, so no run is picked by its validation score) and the **final** EMA model
(``weights/last.pt``) is scored once, with the VOC07 and all-point metrics from the same detections.

Splits: the runs are scored on the spec's ``dataset.val`` or on another folder (``val=``, ``daik ablate
--val``); the scores of each split are kept apart (``<split>`` names the folder), so one set of runs can be
tuned on a tuning split and reported on an untouched one without training twice (the validation folder is
not part of what a run trains).

The command is resumable: a run whose scores carry the hash of the same training spec is reused, a run
trained before is only scored on a new split, a run stopped part-way (Ctrl-C, SIGTERM) continues from its
``last.pt``, and a changed spec trains again.

MLflow (when the spec's ``hparams.mlflow`` or ``DAIK_MLFLOW_TRACKING_URI`` is set;
:mod:`daik_core.engine.tracking`): the ablation is a parent run (found again by its output folder, so a
resumed ablation goes on in it), each run trained a child run with its final scores (``final/map50`` ...),
and the table's files are the parent's artifacts.

Cost columns: parameters and GFLOPs of the fused model at the spec's image size, and its CPU latency: the
median of 20 timed forward passes of one image (fused network, no NMS) after 3 warm-ups, with
``latency_threads`` intra-op threads. The table's JSON also records the schedule of the students and of
the teacher (:func:`ablation_meta`); a teacher trained under another schedule is warned about, since the
teacher-student gap then mixes capacity with training time.

Compute environments: each record keeps the environments its run trained in (the trainer's
``results.json``, :mod:`daik_core.engine.environment`), the table's JSON lists them (``environments``),
and a table whose runs come from more than one is warned about
(:func:`~daik_core.ablation.table.environment_warning`): runs are bit-repeatable only within one
environment, so a grid split across machines (``--only-seeds``) pairs runs whose differences also carry
the machines' floating-point noise. Before training, a machine whose environment is not that of any run
already trained in ``OUT`` is warned about (:func:`foreign_environment_warning`), so a run that will not
pair with the finished ones is known before it costs hours.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from daik_core.ablation.grid import TEACHER, Cell, cell_spec, config_hash, slug
from daik_core.ablation.table import (
    Row,
    RunRecord,
    describe_environment,
    environment_warning,
    summarize,
    table_csv,
    table_json,
    table_markdown,
    training_environments,
)
from daik_core.config import JobSpec
from daik_core.data.dataset import DotaDataset
from daik_core.engine.callbacks import Callback
from daik_core.engine.checkpoint import load_detector
from daik_core.engine.distributed import resolve_device
from daik_core.engine.environment import compute_environment
from daik_core.engine.tracking import MlflowBatch
from daik_core.engine.trainer import Trainer, TrainResult
from daik_core.errors import DaikError
from daik_core.eval.dota import DotaEvalWarning, evaluate_dota
from daik_core.files import atomic_write_text
from daik_core.inference.evaluate import PredictSettings, evaluate_model
from daik_core.models import Detector, model_info

__all__ = [
    "AblationResult",
    "PlannedRun",
    "ablation_meta",
    "collect_records",
    "evaluate_final",
    "foreign_environment_warning",
    "model_cost",
    "plan_runs",
    "run_ablation",
    "score_run",
    "split_tag",
    "train_run",
    "training_hash",
    "write_table",
]

LATENCY_WARMUP = 3
LATENCY_RUNS = 20


@dataclass
class AblationResult:
    status: str  # "completed" | "stopped"
    records: list[RunRecord]
    rows: list[Row]
    out: Path


def model_cost(model: Detector, imgsz: int, threads: int = 1) -> dict[str, Any]:
    """Parameters and GFLOPs of the fused ``model`` and its CPU latency in ms (see the module docstring);
    ``model`` is fused in place and left on the CPU."""
    model = model.cpu().eval().fuse()
    info = model_info(model, imgsz)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
        times = []
        with torch.inference_mode():
            for i in range(LATENCY_WARMUP + LATENCY_RUNS):
                t0 = time.perf_counter()
                model(x)
                if i >= LATENCY_WARMUP:
                    times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return {
        "params": info["params"],
        "gflops": info["gflops"],
        "latency_ms": 1000.0 * statistics.median(times),
    }


def evaluate_final(
    weights: Path, spec: JobSpec, device: torch.device, *, val: str | Path | None = None
) -> dict[str, Any]:
    """The DOTA evaluation of ``weights`` (its EMA model) on ``val`` (default: ``spec``'s validation set)
    with the spec's conf / NMS / max_det: mAP50 (VOC07), mAP50 (all-point), mAP50:95 and per-class AP50."""
    folder = val if val is not None else spec.dataset.val
    if folder is None:
        raise DaikError("ablate: the spec needs dataset.val (every configuration is scored on it)")
    model, meta = load_detector(weights, map_location="cpu")
    hp = spec.hparams
    dataset = DotaDataset(
        folder,
        meta.classes,
        hp.imgsz,
        augment=None,
        split=spec.dataset.split,
        skip_unknown=spec.dataset.skip_unknown,
        train=False,
    )
    settings = PredictSettings(
        batch_size=hp.batch,
        device=device,
        conf_thr=hp.conf_thr,
        nms_iou=hp.nms_iou,
        max_det=hp.max_det,
        amp=device.type == "cuda",
    )
    out = evaluate_model(model.to(device), dataset, settings, metric="voc07")
    voc = out.result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DotaEvalWarning)  # every detection is on an annotated image
        area = evaluate_dota(
            out.ground_truth, out.detections, dataset.classes, metric="area", map_50_95=False
        )
    return {
        "map50": voc.map,
        "map50_all": area.map,
        "map50_95": voc.map_50_95,
        "ap50": dict(voc.per_class),
        "epoch": meta.epoch,
    }


def _read_record(path: Path) -> RunRecord | None:
    try:
        return RunRecord.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def split_tag(val: str | Path) -> str:
    """The name of a validation split in file names: the folder's name and a hash of its absolute path
    (``data/val`` -> ``val-1a2b3c4d``)."""
    path = Path(val).resolve()
    return f"{slug(path.name)}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def training_hash(spec: JobSpec) -> str:
    """What a run trains: :func:`~daik_core.ablation.grid.config_hash` of the spec without its validation
    folder (ablation runs train without one and are scored afterwards)."""
    return config_hash(spec.with_overrides({"dataset": {"val": None}}, source="ablation run"))


@dataclass(frozen=True)
class PlannedRun:
    """One (configuration, seed) of an ablation: ``spec`` is ``None`` for the teacher row (its checkpoint
    is scored, nothing is trained)."""

    cell: Cell
    seed: int
    spec: JobSpec | None
    folder: Path

    @property
    def label(self) -> str:
        return self.cell.name + ("" if self.spec is None else f" seed {self.seed}")

    def record_path(self, val: str | Path) -> Path:
        return self.folder / f"record-{split_tag(val)}.json"


def plan_runs(
    spec: JobSpec, cells: Sequence[Cell], seeds: Sequence[int], out: Path, teacher: Path | None
) -> list[PlannedRun]:
    """Every (configuration, seed) of ``cells`` x ``seeds``, its spec built (and validated) up front."""
    if not seeds:
        raise DaikError("ablate: no seeds")
    plan: list[PlannedRun] = []
    for cell in cells:
        if cell.teacher:
            if teacher is None:
                raise DaikError(
                    "ablate: the grid has the teacher row: give teacher.checkpoint in the spec or --teacher"
                )
            plan.append(PlannedRun(cell, -1, None, out / "runs" / slug(cell.name)))
            continue
        for seed in seeds:
            folder = out / "runs" / slug(cell.name) / f"seed{seed}"
            tspec = str(teacher) if teacher is not None else None
            plan.append(PlannedRun(cell, seed, cell_spec(spec, cell, seed, str(folder), tspec), folder))
    return plan


def _run_digest(run: PlannedRun, teacher: Path | None) -> str:
    if run.spec is None:
        assert teacher is not None
        return f"teacher:{teacher.resolve()}:{teacher.stat().st_mtime_ns}"
    return training_hash(run.spec)


def train_run(run: PlannedRun, callbacks: list[Callback], log: TextIO) -> TrainResult | None:
    """Train ``run`` (or continue it from its ``last.pt`` when it was stopped under the same spec); ``None``
    when its weights are already complete."""
    assert run.spec is not None
    digest = training_hash(run.spec)
    spec_file = run.folder / "spec.json"
    last = run.folder / "weights" / "last.pt"
    same = False
    if spec_file.is_file():
        try:
            same = json.loads(spec_file.read_text()).get("hash") == digest
        except ValueError:
            same = False
    if same and (run.folder / "results.json").is_file() and last.is_file():
        return None  # trained to the end before; only scoring is left
    resume = same and last.is_file()
    run.folder.mkdir(parents=True, exist_ok=True)
    if not resume:
        atomic_write_text(
            spec_file, json.dumps({"hash": digest, "spec": run.spec.model_dump(mode="json")}, indent=2)
        )
    print(f"ablate {run.label}: {'resuming' if resume else 'training'} -> {run.folder}", file=log)
    # no evaluation during training: the final model is scored
    train_spec = run.spec.with_overrides(
        {"dataset": {"val": None}}, source=f"configuration {run.cell.name!r}"
    )
    return Trainer(
        train_spec,
        callbacks,
        resume=True if resume else None,
        overwrite=not resume,
    ).fit()


def score_run(
    run: PlannedRun,
    weights: Path,
    spec: JobSpec,
    val: Path,
    device: torch.device,
    *,
    digest: str,
    costs: dict[tuple[str, int, int, int], dict[str, Any]],
    latency_threads: int,
) -> RunRecord:
    """Score ``weights`` on ``val`` (:func:`evaluate_final`) and write the run's record of that split;
    ``costs`` caches the cost columns per architecture."""
    scores = evaluate_final(weights, spec, device, val=val)
    model, meta = load_detector(weights)
    key = (meta.preset, meta.num_classes, meta.reg_max, spec.hparams.imgsz)
    if key not in costs:
        costs[key] = model_cost(model, spec.hparams.imgsz, latency_threads)
    cost = costs[key]
    seed = run.seed if run.spec is not None else _teacher_seed(weights)
    trained = _trained(run)
    record = RunRecord(
        config=run.cell.name,
        seed=seed,
        map50=scores["map50"],
        map50_all=scores["map50_all"],
        map50_95=scores["map50_95"],
        ap50=scores["ap50"],
        params=cost["params"],
        gflops=cost["gflops"],
        latency_ms=cost["latency_ms"],
        extra={
            "hash": digest,
            "val": str(val),
            "preset": meta.preset,
            "weights": str(weights),
            "epoch": scores["epoch"],
            "train_time_s": trained.get("train_time_s"),
            "latency_threads": latency_threads,
            "environments": trained.get("environments") or [],
        },
    )
    run.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.record_path(val), json.dumps(record.to_dict(), indent=2) + "\n")
    return record


def _trained(run: PlannedRun) -> dict[str, Any]:
    """The run's ``results.json`` (``{}`` for the teacher row, or when missing or unreadable)."""
    results = run.folder / "results.json"
    if run.spec is None or not results.is_file():
        return {}
    try:
        data = json.loads(results.read_text())
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _teacher_seed(checkpoint: Path) -> int:
    _, meta = load_detector(checkpoint)
    hp = meta.spec.get("hparams") if isinstance(meta.spec, dict) else None
    seed = hp.get("seed") if isinstance(hp, dict) else None
    return int(seed) if isinstance(seed, int) else 0


#: The hyperparameters that make a schedule: equal for teacher and students in a fair comparison.
SCHEDULE_KEYS = ("epochs", "batch", "imgsz")


def _schedule(hparams: Mapping[str, Any]) -> dict[str, Any]:
    keys = (*SCHEDULE_KEYS, "lr", "lr_final", "optimizer", "warmup_epochs", "ema", "weight_decay")
    return {k: hparams.get(k) for k in keys}


def ablation_meta(
    spec: JobSpec, val: Path, teacher: Path | None, log: TextIO | None = None
) -> dict[str, Any]:
    """The top-level fields of the table's JSON (beside ``seeds``, which :func:`write_table` takes from the
    rows): the spec's name, the training and validation folders, the teacher checkpoint, and the schedules
    (``student_hparams`` from the spec, ``teacher_hparams`` and ``teacher_train`` from the teacher
    checkpoint's own spec); ``equal_schedule`` tells whether teacher and students share epochs, batch and
    image size. A teacher trained under another schedule or on other images is warned about on ``log``."""
    meta: dict[str, Any] = {
        "spec": spec.name,
        "train": spec.dataset.train,
        "val": str(val),
        "student_preset": spec.student.preset,
        "student_hparams": _schedule(spec.hparams.model_dump(mode="json")),
        "teacher": None if teacher is None else str(teacher),
        "teacher_preset": None,
        "teacher_hparams": None,
        "teacher_train": None,
        "equal_schedule": None,
    }
    if teacher is None or not teacher.is_file():
        return meta
    _, tmeta = load_detector(teacher)
    tspec: dict[str, Any] = tmeta.spec if isinstance(tmeta.spec, dict) else {}
    thp: dict[str, Any] = tspec["hparams"] if isinstance(tspec.get("hparams"), dict) else {}
    tdata: dict[str, Any] = tspec["dataset"] if isinstance(tspec.get("dataset"), dict) else {}
    meta["teacher_preset"] = tmeta.preset
    meta["teacher_hparams"] = _schedule(thp)
    meta["teacher_train"] = tdata.get("train")
    student = meta["student_hparams"]
    differ = [k for k in SCHEDULE_KEYS if thp.get(k) != student[k]]
    meta["equal_schedule"] = not differ
    if log is not None and differ:
        detail = ", ".join(f"{k} {thp.get(k)} vs {student[k]}" for k in differ)
        print(
            f"ablate: warning: the teacher was trained under another schedule than the students ({detail}); "
            "the teacher-student gap then mixes capacity with training time",
            file=log,
        )
    teacher_train = tdata.get("train")
    if log is not None and teacher_train is not None and not _same_folder(teacher_train, spec.dataset.train):
        print(
            f"ablate: warning: the teacher was trained on {tdata.get('train')}, the students on "
            f"{spec.dataset.train}",
            file=log,
        )
    return meta


def _same_folder(a: str, b: str) -> bool:
    return a == b or Path(a).resolve() == Path(b).resolve()


def write_table(
    out: Path, records: Sequence[RunRecord], order: Sequence[str], log: TextIO | None = None, **meta: Any
) -> list[Row]:
    """Summarise ``records`` and write ``ablation.json``, ``ablation.csv``, ``ablation.md`` and the bar chart
    ``ablation.png`` (mAP50 per configuration with 95 % intervals; a chart that cannot be drawn is a warning)
    in ``out``; ``meta`` becomes the JSON's top-level fields, with ``seeds``: the seeds the student rows
    hold (a table gathers every finished run, also those of other calls' ``--only-seeds``). When the runs
    mix compute environments, an ``ablate: warning:`` line goes to ``log``."""
    rows = summarize(records, order)
    envs = training_environments(records)
    warning = environment_warning(records)
    if warning is not None and log is not None:
        print(f"ablate: warning: {warning}", file=log)
    held = sorted({s for row in rows if row.config != TEACHER for s in row.seeds})
    table = table_json(rows, **{**meta, "seeds": held}, environments=list(envs.values()))
    atomic_write_text(out / "ablation.json", json.dumps(table, indent=2) + "\n")
    atomic_write_text(out / "ablation.csv", table_csv(rows))
    atomic_write_text(out / "ablation.md", table_markdown(rows))
    try:
        from daik_core.plots import plot_ablation

        split = Path(str(meta["val"])).name if meta.get("val") else "the validation split"
        plot_ablation(rows, out / "ablation.png", f"{out.name}: mAP50 on {split}")
    except Exception as err:  # the table is what matters
        warnings.warn(f"ablation.png: cannot draw: {type(err).__name__}: {err}", stacklevel=2)
    return rows


def collect_records(out: Path, cells: Sequence[Cell], val: str | Path) -> list[RunRecord]:
    """Every record of split ``val`` under ``OUT/runs`` of the given configurations."""
    name = f"record-{split_tag(val)}.json"
    records = []
    for cell in cells:
        folder = out / "runs" / slug(cell.name)
        for path in sorted(folder.glob(name)) + sorted(folder.glob(f"seed*/{name}")):
            rec = _read_record(path)
            if rec is not None and rec.config == cell.name:
                records.append(rec)
    return records


def scoring_split(spec: JobSpec, val: Path | None) -> Path:
    """The validation folder the runs are scored on: ``val``, or the spec's ``dataset.val``."""
    if val is not None:
        if not val.is_dir():
            raise DaikError(f"ablate: --val {val}: folder does not exist")
        return val
    if spec.dataset.val is None:
        raise DaikError("ablate: the spec needs dataset.val (every configuration is scored on it), or --val")
    return Path(spec.dataset.val)


def run_ablation(
    spec: JobSpec,
    cells: Sequence[Cell],
    seeds: Sequence[int],
    out: Path,
    *,
    teacher: Path | None = None,
    val: Path | None = None,
    callbacks: Callable[[], list[Callback]] = list,
    latency_threads: int = 1,
    log: TextIO | None = None,
) -> AblationResult:
    """Train and score every (configuration, seed) of ``cells`` x ``seeds`` not done yet, then write the
    table of split ``val`` (default: the spec's ``dataset.val``). ``teacher``: the teacher checkpoint
    (default: the spec's ``teacher.checkpoint``). ``callbacks``: a factory of the trainer callbacks of each
    run (progress, stop flag); a run that stops ends the ablation with status ``stopped`` (the same command
    resumes it)."""
    log = log if log is not None else sys.stderr
    split = scoring_split(spec, val)
    teacher_path = teacher
    if teacher_path is None and spec.teacher is not None and spec.teacher.checkpoint is not None:
        teacher_path = Path(spec.teacher.checkpoint)
    if teacher_path is not None and not teacher_path.is_file():
        raise DaikError(f"ablate: teacher checkpoint {teacher_path} does not exist")
    plan = plan_runs(spec, cells, seeds, out, teacher_path)
    meta = ablation_meta(spec, split, teacher_path, log)
    device = resolve_device(spec.hparams.device)
    if any(r.spec is not None and not _trained(r) for r in plan):
        warning = foreign_environment_warning(out, compute_environment(device))
        if warning is not None:
            print(f"ablate: warning: {warning}", file=log)
    out.mkdir(parents=True, exist_ok=True)
    # MLflow (when configured): one parent run for the ablation, a child run per trained run
    batch = MlflowBatch.for_ablation(spec, out)
    try:
        result = _run_plan(
            plan, spec, cells, out, split, teacher_path, meta, device, callbacks, latency_threads, log, batch
        )
    except BaseException:
        if batch is not None:
            batch.finish("failed")
        raise
    if batch is not None:
        batch.finish(result.status, [out / f"ablation.{ext}" for ext in ("md", "json", "csv")])
    return result


def _run_plan(
    plan: Sequence[PlannedRun],
    spec: JobSpec,
    cells: Sequence[Cell],
    out: Path,
    split: Path,
    teacher_path: Path | None,
    meta: Mapping[str, Any],
    device: torch.device,
    callbacks: Callable[[], list[Callback]],
    latency_threads: int,
    log: TextIO,
    batch: MlflowBatch | None,
) -> AblationResult:
    costs: dict[tuple[str, int, int, int], dict[str, Any]] = {}
    order = [c.name for c in cells]
    t_start = time.perf_counter()
    run_seconds: list[float] = []  # of the runs trained by this call: the estimate of the time left
    for k, run in enumerate(plan, 1):
        t_run = time.perf_counter()
        label = f"[{k}/{len(plan)}] {run.label}"
        digest = _run_digest(run, teacher_path)
        child: Callback | None = None  # this run's MLflow child run
        old = _read_record(run.record_path(split))
        if old is not None and old.extra.get("hash") == digest:
            print(f"ablate {label}: done before (mAP50 {old.map50})", file=log)
            continue
        if run.spec is None:
            assert teacher_path is not None
            print(f"ablate {label}: evaluating {teacher_path}", file=log)
            weights = teacher_path
        else:
            if batch is not None:
                child = batch.child(
                    run.spec, {"daik.batch_config": run.cell.name, "daik.seed": str(run.seed)}
                )
            result = train_run(run, [*callbacks(), *([child] if child is not None else [])], log)
            if result is not None and result.status != "completed":
                print(f"ablate {label}: stopped; run the same command again to continue", file=log)
                records = collect_records(out, cells, split)
                rows = write_table(out, records, order, log, **meta)
                return AblationResult("stopped", records, rows, out)
            if result is not None:
                run_seconds.append(time.perf_counter() - t_run)
            weights = run.folder / "weights" / "last.pt"
        record = score_run(
            run,
            weights,
            spec,
            split,
            device,
            digest=digest,
            costs=costs,
            latency_threads=latency_threads,
        )
        if batch is not None and run.spec is not None:
            scores = {"map50": record.map50, "map50_all": record.map50_all, "map50_95": record.map50_95}
            batch.log_scores(child, scores, run.spec.hparams.epochs)
        left = sum(1 for r in plan[k:] if r.spec is not None and not _done(r, split))
        eta = f", ~{statistics.fmean(run_seconds) * left / 60:.0f} min left" if left and run_seconds else ""
        elapsed = time.perf_counter() - t_start
        print(
            f"ablate {label}: mAP50 {_fmt(record.map50)} (all-point {_fmt(record.map50_all)}), mAP50:95 "
            f"{_fmt(record.map50_95)} [{elapsed / 60:.1f} min so far{eta}]",
            file=log,
        )
    records = collect_records(out, cells, split)
    rows = write_table(out, records, order, log, **meta)
    return AblationResult("completed", records, rows, out)


def _run_environments(folder: Path) -> list[Any]:
    """The compute environments a trained run's folder records: its ``results.json``, or, where only the
    scores are left (records restored from a committed table, weights deleted), a ``record-*.json``."""
    try:
        envs = json.loads((folder / "results.json").read_text()).get("environments")
    except (OSError, ValueError, AttributeError):
        envs = None
    if envs:
        return list(envs)
    for path in sorted(folder.glob("record-*.json")):
        rec = _read_record(path)
        if rec is not None and rec.extra.get("environments"):
            return list(rec.extra["environments"])
    return []


def foreign_environment_warning(out: Path, here: Mapping[str, Any]) -> str | None:
    """A warning, before anything trains, when the runs already trained under ``out`` come from another
    compute environment than ``here`` (:func:`~daik_core.engine.environment.compute_environment` of this
    process): the runs trained now will not be bit-comparable with them. ``None`` when ``out`` holds no
    trained run, or one of them was trained here."""
    found: dict[str, tuple[dict[str, Any], int]] = {}
    for folder in sorted(p for p in (out / "runs").glob("*/seed*") if p.is_dir()):
        for env in _run_environments(folder):
            if isinstance(env, dict) and isinstance(env.get("id"), str):
                entry = found.get(env["id"])
                found[env["id"]] = (env, 1 if entry is None else entry[1] + 1)
    if not found or here.get("id") in found:
        return None
    theirs = "; ".join(f"{k} ({describe_environment(e)}): {n} run(s)" for k, (e, n) in found.items())
    return (
        f"this process's compute environment {here.get('id')} ({describe_environment(here)}) is not that "
        f"of the runs already trained in {out} ({theirs}): the runs trained now will not be "
        "bit-comparable with them, and a paired difference will carry that noise too"
    )


def _done(run: PlannedRun, val: Path) -> bool:
    assert run.spec is not None
    old = _read_record(run.record_path(val))
    return old is not None and old.extra.get("hash") == training_hash(run.spec)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"
