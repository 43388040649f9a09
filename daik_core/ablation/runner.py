"""``daik ablate``: train every configuration of a grid for every seed under one schedule, evaluate each
final model, and write the ablation table.

Layout under the output folder ``OUT``::

    OUT/runs/<config>/seed<k>/   the trainer's output folder (metrics.jsonl, weights/) + spec.json
    OUT/runs/<config>/seed<k>/record.json   the evaluation of its final model (a RunRecord)
    OUT/runs/teacher/record.json            the teacher checkpoint's evaluation
    OUT/ablation.json | .csv | .md          the table (daik_core.ablation.table)

Every run trains the base spec's schedule with the configuration's toggles (see
:mod:`daik_core.ablation.grid`) and the seed; the trainer runs without the validation set (no evaluation
during training, so no run is picked by its validation score) and the **final** EMA model
(``weights/last.pt``) is evaluated once on the validation set, with the VOC07 and all-point metrics from
the same detections. The command is resumable: a run whose ``record.json`` carries the hash of the same
spec is reused, a run stopped part-way (Ctrl-C, SIGTERM) continues from its ``last.pt``, and a changed spec
trains again.

Cost columns: parameters and GFLOPs of the fused model at the spec's image size, and its CPU latency: the
median of 20 timed forward passes of one image (fused network, no NMS) after 3 warm-ups, with
``latency_threads`` intra-op threads.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from daik_core.ablation.grid import Cell, cell_spec, config_hash, slug
from daik_core.ablation.table import Row, RunRecord, summarize, table_csv, table_json, table_markdown
from daik_core.config import JobSpec, parse_spec
from daik_core.data.dataset import DotaDataset
from daik_core.engine.callbacks import Callback
from daik_core.engine.checkpoint import load_detector
from daik_core.engine.evaluate import dataset_ground_truth, detections_to_task1, predict_dataset
from daik_core.engine.trainer import Trainer, resolve_device
from daik_core.errors import DaikError
from daik_core.eval.dota import DotaEvalWarning, evaluate_dota
from daik_core.files import atomic_write_text
from daik_core.models import Detector, model_info

__all__ = ["AblationResult", "evaluate_final", "model_cost", "run_ablation", "write_table"]

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


def evaluate_final(weights: Path, spec: JobSpec, device: torch.device) -> dict[str, Any]:
    """The DOTA evaluation of ``weights`` (its EMA model) on ``spec``'s validation set with the spec's
    conf / NMS / max_det: mAP50 (VOC07), mAP50 (all-point), mAP50:95 and per-class AP50."""
    if spec.dataset.val is None:
        raise DaikError("ablate: the spec needs dataset.val (every configuration is scored on it)")
    model, meta = load_detector(weights, map_location="cpu")
    hp = spec.hparams
    dataset = DotaDataset(
        spec.dataset.val,
        meta.classes,
        hp.imgsz,
        augment=None,
        split=spec.dataset.split,
        skip_unknown=spec.dataset.skip_unknown,
        train=False,
    )
    per_image = predict_dataset(
        model.to(device),
        dataset,
        batch_size=hp.batch,
        device=device,
        conf_thr=hp.conf_thr,
        nms_iou=hp.nms_iou,
        max_det=hp.max_det,
        amp=device.type == "cuda",
    )
    detections = detections_to_task1(per_image, dataset.classes)
    gt = dataset_ground_truth(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DotaEvalWarning)
        voc = evaluate_dota(gt, detections, dataset.classes, metric="voc07")
        area = evaluate_dota(gt, detections, dataset.classes, metric="area", map_50_95=False)
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


def _teacher_seed(checkpoint: Path) -> int:
    _, meta = load_detector(checkpoint)
    hp = meta.spec.get("hparams") if isinstance(meta.spec, dict) else None
    seed = hp.get("seed") if isinstance(hp, dict) else None
    return int(seed) if isinstance(seed, int) else 0


def write_table(out: Path, records: Sequence[RunRecord], order: Sequence[str], **meta: Any) -> list[Row]:
    """Summarise ``records`` and write ``ablation.json``, ``ablation.csv`` and ``ablation.md`` in ``out``."""
    rows = summarize(records, order)
    atomic_write_text(out / "ablation.json", json.dumps(table_json(rows, **meta), indent=2) + "\n")
    atomic_write_text(out / "ablation.csv", table_csv(rows))
    atomic_write_text(out / "ablation.md", table_markdown(rows))
    return rows


def collect_records(out: Path, cells: Sequence[Cell]) -> list[RunRecord]:
    """Every ``record.json`` under ``OUT/runs`` of the given configurations."""
    records = []
    for cell in cells:
        folder = out / "runs" / slug(cell.name)
        for path in sorted(folder.glob("record.json")) + sorted(folder.glob("seed*/record.json")):
            rec = _read_record(path)
            if rec is not None and rec.config == cell.name:
                records.append(rec)
    return records


def run_ablation(
    spec: JobSpec,
    cells: Sequence[Cell],
    seeds: Sequence[int],
    out: Path,
    *,
    teacher: Path | None = None,
    callbacks: Callable[[], list[Callback]] = list,
    latency_threads: int = 1,
    log: TextIO | None = None,
) -> AblationResult:
    """Train and evaluate every (configuration, seed) of ``cells`` x ``seeds`` not done yet, then write the
    table. ``teacher``: the teacher checkpoint (default: the spec's ``teacher.checkpoint``).
    ``callbacks``: a factory of the trainer callbacks of each run (progress, stop flag); a run that
    stops ends the ablation with status ``stopped`` (the same command resumes it)."""
    log = log if log is not None else sys.stderr
    if not seeds:
        raise DaikError("ablate: no seeds")
    if spec.dataset.val is None:
        raise DaikError("ablate: the spec needs dataset.val (every configuration is scored on it)")
    teacher_path = teacher
    if teacher_path is None and spec.teacher is not None and spec.teacher.checkpoint is not None:
        teacher_path = Path(spec.teacher.checkpoint)
    if teacher_path is not None and not teacher_path.is_file():
        raise DaikError(f"ablate: teacher checkpoint {teacher_path} does not exist")
    # every spec first: a bad configuration fails before hours of training
    plan: list[tuple[Cell, int, JobSpec | None, Path]] = []
    for cell in cells:
        if cell.teacher:
            if teacher_path is None:
                raise DaikError(
                    "ablate: the grid has the teacher row: give teacher.checkpoint in the spec or --teacher"
                )
            plan.append((cell, -1, None, out / "runs" / slug(cell.name)))
            continue
        for seed in seeds:
            run_dir = out / "runs" / slug(cell.name) / f"seed{seed}"
            tspec = str(teacher_path) if teacher_path is not None else None
            plan.append((cell, seed, cell_spec(spec, cell, seed, str(run_dir), tspec), run_dir))
    device = resolve_device(spec.hparams.device)
    costs: dict[tuple[str, int, int, int], dict[str, Any]] = {}
    order = [c.name for c in cells]
    total = len(plan)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    run_seconds: list[float] = []  # of the runs trained by this call: the estimate of the time left
    for k, (cell, seed, run_spec, run_dir) in enumerate(plan, 1):
        t_run = time.perf_counter()
        label = f"[{k}/{total}] {cell.name}" + ("" if run_spec is None else f" seed {seed}")
        record_path = run_dir / "record.json"
        if run_spec is None:  # the teacher: evaluate its checkpoint
            assert teacher_path is not None
            digest = f"teacher:{teacher_path.resolve()}:{teacher_path.stat().st_mtime_ns}"
            old = _read_record(record_path)
            if old is not None and old.extra.get("hash") == digest:
                print(f"ablate {label}: done before (mAP50 {old.map50})", file=log)
                continue
            print(f"ablate {label}: evaluating {teacher_path}", file=log)
            weights, seed, train_time = teacher_path, _teacher_seed(teacher_path), None
        else:
            digest = config_hash(run_spec)
            old = _read_record(record_path)
            if old is not None and old.extra.get("hash") == digest:
                print(f"ablate {label}: done before (mAP50 {old.map50})", file=log)
                continue
            spec_file = run_dir / "spec.json"
            last = run_dir / "weights" / "last.pt"
            resume = False
            if last.is_file() and spec_file.is_file():
                try:
                    resume = json.loads(spec_file.read_text()).get("hash") == digest
                except ValueError:
                    resume = False
            run_dir.mkdir(parents=True, exist_ok=True)
            if not resume:
                atomic_write_text(
                    spec_file,
                    json.dumps({"hash": digest, "spec": run_spec.model_dump(mode="json")}, indent=2),
                )
            print(f"ablate {label}: {'resuming' if resume else 'training'} -> {run_dir}", file=log)
            train_data = run_spec.model_dump(mode="json")
            train_data["dataset"]["val"] = None  # no evaluation during training: the final model is scored
            result = Trainer(
                parse_spec(train_data, source=f"configuration {cell.name!r}"),
                callbacks(),
                resume=True if resume else None,
                overwrite=not resume,
            ).fit()
            if result.status != "completed":
                print(f"ablate {label}: stopped; run the same command again to continue", file=log)
                records = collect_records(out, cells)
                rows = write_table(out, records, order, spec=spec.name, seeds=list(seeds))
                return AblationResult("stopped", records, rows, out)
            weights, train_time = last, result.results.get("train_time_s")
        scores = evaluate_final(weights, spec, device)
        model, meta = load_detector(weights)
        key = (meta.preset, meta.num_classes, meta.reg_max, spec.hparams.imgsz)
        if key not in costs:
            costs[key] = model_cost(model, spec.hparams.imgsz, latency_threads)
        cost = costs[key]
        record = RunRecord(
            config=cell.name,
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
                "preset": meta.preset,
                "weights": str(weights),
                "epoch": scores["epoch"],
                "train_time_s": train_time,
                "latency_threads": latency_threads,
            },
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record_path, json.dumps(record.to_dict(), indent=2) + "\n")
        m50, mall = record.map50, record.map50_all
        elapsed = time.perf_counter() - t_start
        if run_spec is not None:
            run_seconds.append(time.perf_counter() - t_run)
        left = sum(1 for _, _, rs, d in plan[k:] if rs is not None and not _done(d / "record.json", rs))
        eta = f", ~{statistics.fmean(run_seconds) * left / 60:.0f} min left" if left and run_seconds else ""
        print(
            f"ablate {label}: mAP50 {_fmt(m50)} (all-point {_fmt(mall)}), mAP50:95 {_fmt(record.map50_95)}"
            f" [{elapsed / 60:.1f} min so far{eta}]",
            file=log,
        )
    records = collect_records(out, cells)
    rows = write_table(out, records, order, spec=spec.name, seeds=list(seeds))
    return AblationResult("completed", records, rows, out)


def _done(record_path: Path, spec: JobSpec) -> bool:
    old = _read_record(record_path)
    return old is not None and old.extra.get("hash") == config_hash(spec)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"
