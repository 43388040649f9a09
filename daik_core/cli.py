"""The ``daik`` command line.

Each command parses its arguments here and calls one library function. Errors caused by input
(:class:`daik_core.errors.DaikError`) are printed as one line naming the file, line and problem, and the
command exits with status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daik_core.errors import DaikError

if TYPE_CHECKING:
    from daik_core.ablation.grid import Cell
    from daik_core.ablation.table import Row
    from daik_core.config import JobSpec
    from daik_core.engine.callbacks import StopFlag

Handler = Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------------------------- data
def _cmd_synth(args: argparse.Namespace) -> int:
    from daik_core.data.synth import generate_dataset

    summary = generate_dataset(
        Path(args.out),
        images=args.images,
        size=args.size,
        seed=args.seed,
        difficulty=args.difficulty,
        progress=not args.quiet,
        workers=args.workers,
    )
    print(summary.describe())
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from daik_core.data.classes import resolve_classes
    from daik_core.data.split import split_dataset

    classes = resolve_classes(args.classes) if args.classes else None
    summary = split_dataset(
        Path(args.src),
        Path(args.dst),
        size=args.size,
        gap=args.gap,
        rates=tuple(args.rates),
        classes=classes,
        skip_unknown=args.skip_unknown,
        complex_clips=args.complex_clips,
        keep_empty=not args.drop_empty,
        labels=not args.images_only,
        missing_labels="empty" if args.allow_missing_labels else "error",
        progress=not args.quiet,
        workers=args.workers,
    )
    print(summary.describe())
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from daik_core.data.merge import merge_task1_dir

    summary = merge_task1_dir(Path(args.src), Path(args.dst), iou_thr=args.iou_thr)
    print(summary.describe())
    return 0


# --------------------------------------------------------------------------------------------- eval
def _cmd_eval_dota(args: argparse.Namespace) -> int:
    import warnings

    from daik_core.data.classes import resolve_classes
    from daik_core.eval.dota import evaluate_dota_dirs

    classes = resolve_classes(args.classes)
    _check_task1_files(Path(args.det_dir), classes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_dota_dirs(
            Path(args.ann_dir),
            Path(args.det_dir),
            classes=classes,
            iou_thr=args.iou_thr,
            metric=args.metric,
        )
    for w in caught:  # one line each, like the errors
        print(f"daik: warning: {w.message}", file=sys.stderr)
    print(result.format_table())
    print(result.format_best_f1())
    if args.plots:
        from daik_core.data.dota import read_label_dir_arrays, read_task1_dir
        from daik_core.plots import write_eval_plots

        gt = read_label_dir_arrays(Path(args.ann_dir))
        dets = read_task1_dir(Path(args.det_dir), classes)
        written = write_eval_plots(Path(args.plots), result, gt, dets, classes, conf=args.plot_conf)
        print(f"-> {', '.join(str(p) for p in written)}")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return 0


def _check_task1_files(det_dir: Path, classes: Sequence[str]) -> None:
    """A detection folder without a ``Task1_<class>.txt`` of any class is a mistake (the wrong folder, or
    the wrong ``--classes``), not a model that detected nothing: that would write empty files."""
    from daik_core.data.dota import task1_path

    if not det_dir.is_dir() or any(task1_path(det_dir, c).is_file() for c in classes):
        return  # a missing folder is reported by the evaluator
    others = sorted(p.name for p in det_dir.glob("Task1_*.txt") if p.is_file())
    found = f"; it holds {', '.join(others[:3])}{', ...' if len(others) > 3 else ''} (see --classes)"
    raise DaikError(
        f"{det_dir}: no Task1_<class>.txt detection file for any of the {len(classes)} classes "
        f"({', '.join(classes[:3])}, ...){found if others else ''}"
    )


def _cmd_eval_model(args: argparse.Namespace) -> int:
    if args.model_weights is None or args.model_data is None:
        raise DaikError(
            "eval: give --weights W --data DIR (evaluate a checkpoint) or a FORMAT "
            "(daik eval dota --ann-dir ... --det-dir ...)"
        )
    from daik_core.inference.evaluate import evaluate_checkpoint
    from daik_core.inference.options import InferenceOptions

    options = InferenceOptions(
        imgsz=args.model_imgsz,
        conf=args.model_conf,
        iou=args.model_iou,
        max_det=args.model_max_det,
        split_size=args.model_split_size,
        gap=args.model_gap,
        merge_iou=args.model_merge_iou,
        batch=args.model_batch,
        device=args.model_device,
    )
    out = evaluate_checkpoint(
        Path(args.model_weights),
        Path(args.model_data),
        options,
        iou_thr=args.model_iou_thr,
        metric=args.model_metric,
        skip_unknown=args.model_skip_unknown,
        workers=args.model_workers,
        progress=not args.model_quiet,
    )
    print(out.result.format_table())
    print(out.result.format_best_f1())
    if args.model_plots:
        from daik_core.plots import write_eval_plots

        written = write_eval_plots(
            Path(args.model_plots),
            out.result,
            out.ground_truth,
            out.detections,
            tuple(out.result.per_class),
            conf=args.model_plot_conf,
        )
        print(f"-> {', '.join(str(p) for p in written)}")
    if args.model_json:
        report = {"weights": str(args.model_weights), "data": str(args.model_data), **out.result.to_dict()}
        path = Path(args.model_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
    if args.model_save_dir:
        from daik_core.data.dota import write_task1_dir

        write_task1_dir(Path(args.model_save_dir), out.detections)
    return 0


# --------------------------------------------------------------------------------------------- train
@contextlib.contextmanager
def _stop_on_signals(stop: StopFlag) -> Iterator[None]:
    """SIGINT / SIGTERM ask ``stop`` to end the run at the next step (the trainer then writes last.pt); a
    second signal quits at once. The previous handlers are restored afterwards."""
    import signal
    import threading
    from types import FrameType

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.requested:  # a second signal: give up at once
            raise KeyboardInterrupt
        stop.request(signum)
        print(
            f"daik: {signal.Signals(signum).name}: stopping; weights/last.pt will hold this point "
            "(send it again to quit at once)",
            file=sys.stderr,
        )

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _report_failure(events: str | None, err: Exception) -> None:
    """Training raised: a typed :class:`~daik_core.events.Failure` for the job worker (``--events``; every
    rank writes its own), and under torchrun the rank's torchelastic error file (``TORCHELASTIC_ERROR_FILE``,
    which torchrun reads to name the root cause of a failed run)."""
    import os

    import torch

    from daik_core.events import EventWriter, Failure

    oom = isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError))
    text = str(err) if isinstance(err, DaikError) else f"{type(err).__name__}: {err}"
    message = (text.strip().splitlines() or [type(err).__name__])[0][:1000]
    if events is not None:
        with EventWriter(events) as writer:
            rank = int(os.environ.get("RANK", "0") or 0)
            writer.write(Failure(kind="oom" if oom else "error", message=message, rank=rank))
    if os.environ.get("TORCHELASTIC_ERROR_FILE"):
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(err)


def _cmd_train(args: argparse.Namespace) -> int:
    import os

    from daik_core.config import load_spec, spec_overrides
    from daik_core.engine.callbacks import Callback, JsonlEvents, ProgressCallback, StopFlag
    from daik_core.engine.trainer import Trainer

    overrides = {
        key: value
        for key, value in (
            ("epochs", args.epochs),
            ("batch", args.batch),
            ("imgsz", args.imgsz),
            ("device", args.device),
            ("workers", args.workers),
        )
        if value is not None
    }
    spec = load_spec(args.spec).with_overrides(
        spec_overrides(overrides, args.output), source=f"{args.spec} with the command-line overrides"
    )

    stop = StopFlag()
    main_rank = os.environ.get("RANK", "0") == "0"
    callbacks: list[Callback] = [ProgressCallback(disable=args.quiet or not main_rank), stop]
    if args.events is not None:
        callbacks.append(JsonlEvents(args.events))
    try:
        with _stop_on_signals(stop):
            trainer = Trainer(
                spec,
                callbacks,
                resume=args.resume,
                overwrite=args.overwrite,
            )
            result = trainer.fit()
    except Exception as err:
        _report_failure(args.events, err)
        raise
    if result.status == "stopped":
        if main_rank:
            print(
                f"stopped at epoch {result.epoch} + {result.iteration} iterations -> {result.last}; "
                f"continue with: daik train {args.spec} --resume",
                file=sys.stderr,
            )
        return 128 + stop.reason if isinstance(stop.reason, int) else 1
    if main_rank:
        r = result.results
        m50, m5095 = r.get("map50"), r.get("map50_95")
        maps = (
            f"mAP50 {m50:.4f}, mAP50:95 {m5095:.4f} (epoch {r.get('eval_epoch')}), "
            if isinstance(m50, float) and isinstance(m5095, float)
            else ""
        )
        print(
            f"trained {result.epoch} epochs: {maps}best epoch {r.get('best_epoch')}, "
            f"{r.get('train_time_s', 0.0):.0f} s -> {result.output_dir} (weights/best.pt, results.json)"
        )
    return 0


def _ablate_cells(args: argparse.Namespace) -> list[Cell]:
    """The configurations of ``daik ablate``: ``--grid`` (a named grid or a YAML/JSON file), ``--only``."""
    from daik_core.ablation.grid import parse_grid, select_cells

    if args.grid.endswith((".json", ".yaml", ".yml")):
        import yaml

        try:
            grid_value = yaml.safe_load(Path(args.grid).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise DaikError(f"{args.grid}: cannot read the grid: {err}") from None
        cells = parse_grid(grid_value)
    else:
        cells = parse_grid(args.grid)
    return select_cells(cells, args.only) if args.only else cells


def _ablate_seeds(args: argparse.Namespace, first: int) -> list[int]:
    """The seeds of ``daik ablate``: ``--seeds`` from the spec's seed ``first``, ``--only-seeds`` of them."""
    if args.seeds < 1:
        raise DaikError(f"--seeds must be >= 1, got {args.seeds}")
    seeds = [first + i for i in range(args.seeds)]
    if not args.only_seeds:
        return seeds
    given = ",".join(args.only_seeds)  # the option may be repeated
    try:
        wanted_seeds = [int(x) for x in given.split(",") if x.strip()]
    except ValueError:
        raise DaikError(f"--only-seeds: a comma-separated list of seeds, got {given!r}") from None
    outside = [x for x in wanted_seeds if x not in seeds]
    if outside or not wanted_seeds:
        raise DaikError(
            f"--only-seeds: {given!r} is not part of --seeds {args.seeds} "
            f"(seeds {', '.join(map(str, seeds))})"
        )
    return wanted_seeds


def _ablate_teacher(args: argparse.Namespace, spec: JobSpec) -> Path | None:
    """The teacher checkpoint of ``daik ablate``: ``--teacher``, else the spec's ``teacher.checkpoint``."""
    if args.teacher:
        return Path(args.teacher)
    if spec.teacher is not None and spec.teacher.checkpoint is not None:
        return Path(spec.teacher.checkpoint)
    return None


def _print_ablation(
    args: argparse.Namespace, rows: list[Row], out: Path, cells: list[Cell], split: Path
) -> None:
    """The table of ``daik ablate`` (and ``--versus``) on stdout, and where the files are."""
    from daik_core.ablation.runner import collect_records
    from daik_core.ablation.table import table_markdown, versus

    print(table_markdown(rows, per_class=False), end="")
    if args.versus:
        try:
            lines = versus(collect_records(out, cells, split), args.versus, [c.name for c in cells])
        except ValueError as err:
            raise DaikError(f"--versus: {err}") from None
        print("\n".join(lines))
    print(
        f"-> {out / 'ablation.md'}, {out / 'ablation.csv'}, {out / 'ablation.json'}, {out / 'ablation.png'}"
    )


def _cmd_ablate(args: argparse.Namespace) -> int:
    from daik_core.ablation.runner import (
        ablation_meta,
        collect_records,
        run_ablation,
        scoring_split,
        write_table,
    )
    from daik_core.config import load_spec, spec_overrides
    from daik_core.engine.callbacks import Callback, ProgressCallback, StopFlag

    # --teacher replaces the spec's teacher, and --table-only reads finished runs only: no need for those
    spec = load_spec(args.spec, check_paths=args.teacher is None and not args.table_only)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("device", args.device)) if v is not None}
    spec = spec.with_overrides(
        spec_overrides(overrides), source=f"{args.spec} with the command-line overrides"
    )
    cells = _ablate_cells(args)
    seeds = _ablate_seeds(args, spec.hparams.seed)
    out = Path(args.out) if args.out else spec.output_dir().with_name(spec.output_dir().name + "-ablate")
    split = scoring_split(spec, Path(args.val) if args.val else None)
    teacher = _ablate_teacher(args, spec)
    if args.table_only:
        records = collect_records(out, cells, split)
        if not records:
            raise DaikError(f"ablate --table-only: no finished run in {out} scored on {split}")
        meta = ablation_meta(spec, split, teacher if teacher and teacher.is_file() else None)
        rows = write_table(out, records, [c.name for c in cells], sys.stderr, **meta)
    else:
        stop = StopFlag()

        def callbacks() -> list[Callback]:
            return [ProgressCallback(disable=args.quiet), stop]

        with _stop_on_signals(stop):
            result = run_ablation(
                spec,
                cells,
                seeds,
                out,
                teacher=teacher,
                val=split,
                callbacks=callbacks,
                latency_threads=args.latency_threads,
            )
        rows = result.rows
        if result.status == "stopped":
            return 128 + stop.reason if isinstance(stop.reason, int) else 1
    _print_ablation(args, rows, out, cells, split)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from daik_core.inference.options import InferenceOptions
    from daik_core.inference.predict import predict

    options = InferenceOptions(
        imgsz=args.imgsz,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        split_size=args.split_size,
        gap=args.gap,
        merge_iou=args.merge_iou,
        batch=args.batch,
        device=args.device,
    )
    summary = predict(
        Path(args.weights),
        Path(args.source),
        Path(args.out),
        options,
        draw=not args.no_draw,
        progress=not args.quiet,
    )
    print(summary.describe())
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from daik_core.inference.export import export_onnx

    result = export_onnx(
        Path(args.weights),
        Path(args.out) if args.out else None,
        imgsz=args.imgsz,
        opset=args.opset,
        end2end=args.end2end,
    )
    print(result.describe())
    return 0


# --------------------------------------------------------------------------------------------- models
def _cmd_info(args: argparse.Namespace) -> int:
    from daik_core.models import model_info
    from daik_core.presets import build_detector

    if args.imgsz < 32 or args.imgsz % 32:
        raise DaikError(f"--imgsz must be a positive multiple of 32, got {args.imgsz}")
    if args.num_classes < 1:
        raise DaikError(f"--num-classes must be >= 1, got {args.num_classes}")
    if args.reg_max < 1:
        raise DaikError(f"--reg-max must be >= 1, got {args.reg_max}")
    model = build_detector(args.preset, args.num_classes, reg_max=args.reg_max).eval()
    if not args.unfused:
        model.fuse()
    info = model_info(model, args.imgsz)
    kind = "unfused (the training model, RepVGG branches apart)" if args.unfused else "fused"
    print(
        f"detector {args.preset}, {args.num_classes} classes, reg_max {args.reg_max}, imgsz {args.imgsz}: "
        f"{info['params']:,} params ({info['params'] / 1e6:.2f} M), {info['gflops']:.2f} GFLOPs "
        f"(2 x MACs), {kind}"
    )
    return 0


# --------------------------------------------------------------------------------------------- parser
def _add_window_args(p: argparse.ArgumentParser, dest_prefix: str = "") -> None:
    """The options ``daik eval --weights`` and ``daik predict`` share: how images become windows and
    windows become detections (``dest_prefix`` keeps ``eval``'s apart from its ``dota`` sub-command)."""

    def add(flag: str, **kw: Any) -> None:
        p.add_argument(flag, dest=dest_prefix + flag.lstrip("-").replace("-", "_"), **kw)

    add("--imgsz", metavar="N", type=int, default=None, help="input size (default: the training size)")
    add("--batch", metavar="N", type=int, default=8, help="windows per batch (default 8)")
    add(
        "--iou",
        metavar="X",
        type=float,
        default=None,
        help="class-aware rotated NMS IoU per window (default: the training's hparams.nms_iou)",
    )
    add(
        "--split-size",
        metavar="N",
        type=int,
        default=None,
        help="tile images larger than this (default: the training data's tiling; 0: no tiling)",
    )
    add("--gap", metavar="N", type=int, default=None, help="tile overlap (default: the training's, or 200)")
    add(
        "--merge-iou",
        metavar="X",
        type=float,
        default=0.1,
        help="class-aware NMS when merging the tiles of an image (default 0.1)",
    )
    add("--device", metavar="D", default="auto", help="auto | cpu | cuda[:N] (default auto)")


def _add_synth(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``daik synth``."""
    p = sub.add_parser("synth", help="generate a synthetic DOTA-format dataset (images/ and labelTxt/)")
    p.add_argument("out", help="output folder")
    p.add_argument("--images", type=int, default=100, help="number of images (default 100)")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same dataset (default 0)")
    p.add_argument(
        "--difficulty",
        choices=("easy", "medium", "hard"),
        default="medium",
        help="scene difficulty (default medium)",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU, up to 8)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_synth)


def _add_split(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``daik split``."""
    p = sub.add_parser("split", help="tile large DOTA images into patches like the DOTA devkit")
    p.add_argument("src", help="DOTA folder with images/ and labelTxt/")
    p.add_argument("dst", help="output folder (images/ and labelTxt/ of the patches)")
    p.add_argument("--size", type=int, default=1024, help="patch side (default 1024)")
    p.add_argument("--gap", type=int, default=200, help="overlap between patches (default 200)")
    p.add_argument("--rates", type=float, nargs="+", default=[1.0], help="scale rates (default 1.0)")
    p.add_argument("--classes", default=None, help="dota1.0 | dota1.5 | dota2.0 | a,b,c (default: any)")
    p.add_argument("--skip-unknown", action="store_true", help="drop objects of classes not in --classes")
    p.add_argument(
        "--complex-clips",
        choices=("keep", "drop"),
        default="keep",
        help="cut objects whose clipped part has 3 or >5 corners: keep as a quad (default) or drop (devkit)",
    )
    p.add_argument("--drop-empty", action="store_true", help="do not write patches without objects")
    p.add_argument("--images-only", action="store_true", help="split images only (no labelTxt): a test set")
    p.add_argument(
        "--allow-missing-labels", action="store_true", help="an image without a label file has no objects"
    )
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_split)


def _add_merge(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``daik merge``."""
    p = sub.add_parser("merge", help="merge patch detections (Task1 files) back to full images")
    p.add_argument("src", help="folder of Task1_<class>.txt files whose image ids are patch names")
    p.add_argument("dst", help="output folder of merged Task1_<class>.txt files")
    p.add_argument("--iou-thr", type=float, default=0.1, help="class-aware polygon NMS threshold (0.1)")
    p.set_defaults(handler=_cmd_merge)


def _add_eval(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``daik eval``."""
    p = sub.add_parser(
        "eval",
        help="DOTA mAP of a checkpoint on a DOTA folder (--weights, --data) or of detection files (dota)",
        description="daik eval --weights W --data DIR: evaluate a checkpoint on a DOTA folder (images/, "
        "labelTxt/); daik eval dota --ann-dir A --det-dir D: evaluate Task1 detection files.",
    )
    _add_eval_model_args(p)
    p.set_defaults(handler=_cmd_eval_model)
    _add_eval_dota(p.add_subparsers(dest="eval_command", required=False, metavar="FORMAT"))


def _add_eval_model_args(p: argparse.ArgumentParser) -> None:
    """The options of ``daik eval --weights W --data DIR`` (a checkpoint on a dataset): ``model_*``, apart
    from those of its ``dota`` sub-command."""
    p.add_argument(
        "--weights", dest="model_weights", metavar="W", default=None, help="checkpoint (best.pt, last.pt)"
    )
    p.add_argument(
        "--data",
        dest="model_data",
        metavar="DIR",
        default=None,
        help="DOTA folder (images/, labelTxt/), YOLO-OBB folder (images/, labels/) or data YAML (val split)",
    )
    _add_window_args(p, dest_prefix="model_")
    p.add_argument(
        "--conf",
        dest="model_conf",
        metavar="X",
        type=float,
        default=None,
        help="score threshold (training's)",
    )
    p.add_argument(
        "--max-det", dest="model_max_det", metavar="N", type=int, default=None, help="boxes per window"
    )
    p.add_argument(
        "--iou-thr", dest="model_iou_thr", metavar="X", type=float, default=0.5, help="AP IoU threshold (0.5)"
    )
    p.add_argument(
        "--metric",
        dest="model_metric",
        choices=("voc07", "area"),
        default="voc07",
        help="11-point VOC07 (default) or all-point AP",
    )
    p.add_argument(
        "--skip-unknown",
        dest="model_skip_unknown",
        action="store_true",
        help="ignore objects of classes the model does not know",
    )
    p.add_argument(
        "--workers", dest="model_workers", metavar="N", type=int, default=0, help="loader processes (0)"
    )
    p.add_argument(
        "--json", dest="model_json", metavar="FILE", default=None, help="write mAP, per-class AP, counts here"
    )
    p.add_argument(
        "--save-dir", dest="model_save_dir", metavar="DIR", default=None, help="write the Task1 files here"
    )
    p.add_argument(
        "--plots",
        dest="model_plots",
        metavar="DIR",
        default=None,
        help="write pr_curve.png and confusion_matrix.png here",
    )
    p.add_argument(
        "--plot-conf",
        dest="model_plot_conf",
        metavar="X",
        type=float,
        default=0.25,
        help="confidence threshold of the confusion matrix (0.25)",
    )
    p.add_argument("-q", "--quiet", dest="model_quiet", action="store_true", help="no progress bar")


def _add_eval_dota(eval_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``daik eval dota``: Task1 detection files against labelTxt."""
    e = eval_sub.add_parser("dota", help="DOTA Task1 mAP of Task1_<class>.txt files against labelTxt")
    e.add_argument("--ann-dir", required=True, help="folder of DOTA labelTxt annotation files")
    e.add_argument("--det-dir", required=True, help="folder of Task1_<class>.txt detection files")
    e.add_argument("--iou-thr", type=float, default=0.5, help="IoU threshold (default 0.5)")
    e.add_argument(
        "--metric", choices=("voc07", "area"), default="voc07", help="11-point VOC07 or all-point AP"
    )
    e.add_argument("--classes", default="dota1.0", help="dota1.0 | dota1.5 | dota2.0 | a,b,c")
    e.add_argument("--json", default=None, help="write mAP, per-class AP and counts to this file")
    e.add_argument(
        "--plots", default=None, metavar="DIR", help="write pr_curve.png, confusion_matrix.png here"
    )
    e.add_argument(
        "--plot-conf",
        type=float,
        default=0.25,
        metavar="X",
        help="confidence threshold of the confusion matrix (0.25)",
    )
    e.set_defaults(handler=_cmd_eval_dota)


def _add_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``daik train``."""
    p = sub.add_parser("train", help="train a detector from a job spec (YAML or JSON)")
    p.add_argument("spec", help="job spec file (see daik_core/config.py and configs/)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="continue a stopped run from <output>/weights/last.pt, or from PATH",
    )
    p.add_argument("--overwrite", action="store_true", help="start afresh in an output folder with a run")
    p.add_argument("--epochs", type=int, default=None, help="override hparams.epochs")
    p.add_argument("--batch", type=int, default=None, help="override hparams.batch (global batch)")
    p.add_argument("--imgsz", type=int, default=None, help="override hparams.imgsz")
    p.add_argument("--device", default=None, help="override hparams.device: auto | cpu | cuda[:N]")
    p.add_argument("--workers", type=int, default=None, help="override hparams.workers")
    p.add_argument("--output", default=None, help="override the output folder")
    p.add_argument(
        "--events",
        default=None,
        metavar="FILE",
        help="append the run's events (start, progress, epoch, eval, checkpoint, end) to FILE as JSON lines",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.set_defaults(handler=_cmd_train)


def _add_ablate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``daik ablate``."""
    p = sub.add_parser(
        "ablate",
        help="train every configuration of a distillation grid for several seeds; write the ablation table",
    )
    p.add_argument("spec", help="the base job spec: data, student, schedule and the options of each term")
    p.add_argument(
        "--grid",
        default="paper",
        help="paper (every component alone, full DAIK, logit KD, FitNet, CWD, teacher) | kd (the fair "
        "comparison: KD base = LD + class KD, each DAIK component on it, DAIK, KD base + CWD, CWD, logit KD, "
        "FitNet, teacher) | daik (baseline, DAIK, teacher) | a YAML/JSON file: a list of {name, losses} or "
        "{product: {term.option: [values]}}",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration: hparams.seed + 0..N-1 (3)")
    p.add_argument(
        "--teacher", default=None, help="teacher checkpoint (default: the spec's teacher.checkpoint)"
    )
    p.add_argument("--out", default=None, help="output folder (default: the spec's output + '-ablate')")
    p.add_argument(
        "--val",
        default=None,
        help="score the runs on this DOTA folder instead of the spec's dataset.val (e.g. a tuning split); "
        "each split's scores are kept apart, the runs are trained once",
    )
    p.add_argument(
        "--only",
        action="append",
        default=None,
        help="configuration names, comma-separated or the option repeated: run only these",
    )
    p.add_argument(
        "--only-seeds",
        action="append",
        default=None,
        help="seeds of --seeds, comma-separated or the option repeated: run only these (e.g. to run part "
        "of a grid elsewhere)",
    )
    p.add_argument("--epochs", type=int, default=None, help="override hparams.epochs")
    p.add_argument("--device", default=None, help="override hparams.device: auto | cpu | cuda[:N]")
    p.add_argument("--latency-threads", type=int, default=1, help="CPU threads of the latency column (1)")
    p.add_argument("--table-only", action="store_true", help="only rebuild the table from the finished runs")
    p.add_argument(
        "--versus",
        default=None,
        metavar="NAME",
        help="also print NAME's mAP50 minus each other configuration's, paired by seed, with a 95%% interval",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no training progress bars")
    p.set_defaults(handler=_cmd_ablate)


def _add_predict(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``daik predict``."""
    p = sub.add_parser("predict", help="detect objects in images with a checkpoint or an exported ONNX model")
    p.add_argument(
        "--weights", required=True, help="checkpoint (best.pt), or an ONNX model of daik export (onnxruntime)"
    )
    p.add_argument("--source", required=True, help="an image or a folder of images")
    p.add_argument("--out", default="runs/predict", help="output folder (task1/, vis/; runs/predict)")
    _add_window_args(p)
    p.add_argument("--conf", type=float, default=0.25, help="score threshold (default 0.25)")
    p.add_argument("--max-det", type=int, default=1000, help="boxes per window (default 1000)")
    p.add_argument("--no-draw", action="store_true", help="write the Task1 files only")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_predict)


def _add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``daik export``."""
    p = sub.add_parser("export", help="export a checkpoint's fused model (ONNX), checked against torch")
    p.add_argument("--weights", required=True, help="checkpoint (best.pt)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    p.add_argument("--imgsz", type=int, default=None, help="check size (default: the training size)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--out", default=None, help="output file (default: the weights with .onnx)")
    p.add_argument(
        "--end2end",
        action="store_true",
        help="decoding, score threshold and exact rotated NMS inside the graph (one window of --imgsz); "
        "default: the head's raw outputs",
    )
    p.set_defaults(handler=_cmd_export)


def _add_info(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``daik info``."""
    p = sub.add_parser(
        "info", help="parameters and GFLOPs of a detector preset (fused, as trained models report them)"
    )
    p.add_argument("--preset", choices=("n", "s", "m", "l"), default="n", help="model size (default n)")
    p.add_argument("--imgsz", type=int, default=1024, help="square input side, a multiple of 32 (1024)")
    p.add_argument("--num-classes", type=int, default=15, help="number of classes (default 15, DOTA 1.0)")
    p.add_argument("--reg-max", type=int, default=16, help="DFL reg_max (default 16)")
    p.add_argument(
        "--unfused",
        action="store_true",
        help="the training model (RepVGG branches apart) instead of the fused inference model that "
        "training, results.json and the ablation table report",
    )
    p.add_argument("--fused", action="store_true", help=argparse.SUPPRESS)  # the default; kept for scripts
    p.set_defaults(handler=_cmd_info)


def build_parser() -> argparse.ArgumentParser:
    from daik_core import __version__

    parser = argparse.ArgumentParser(
        prog="daik", description="DAIK: distillation for oriented object detection."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_synth,
        _add_split,
        _add_merge,
        _add_eval,
        _add_train,
        _add_ablate,
        _add_predict,
        _add_export,
        _add_info,
    ):
        add(sub)
    add_plugin_commands(sub)
    return parser


PLUGIN_GROUP = "daik.commands"


def add_plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands of the other packages of the distribution (``daik api``, ``daik worker``, ...), found by the
    entry point group ``daik.commands``: each entry is a ``register(subparsers) -> None`` that adds its
    parsers with a ``handler``. The library itself never imports the service or the worker."""
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        register = ep.load()
        register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except DaikError as err:
        print(f"daik: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("daik: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
