"""The ``daik`` command line.

Each command parses its arguments here and calls one library function. Errors caused by input
(:class:`daik_core.errors.DaikError`) are printed as one line naming the file, line and problem, and the
command exits with status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from daik_core.errors import DaikError

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

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_dota_dirs(
            Path(args.ann_dir),
            Path(args.det_dir),
            classes=resolve_classes(args.classes),
            iou_thr=args.iou_thr,
            metric=args.metric,
        )
    for w in caught:  # one line each, like the errors
        print(f"daik: warning: {w.message}", file=sys.stderr)
    print(result.format_table())
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
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
    if args.fused:
        model.fuse()
    info = model_info(model, args.imgsz)
    kind = "fused (inference)" if args.fused else "unfused (training)"
    print(
        f"detector {args.preset}, {kind}, {args.num_classes} classes, reg_max {args.reg_max}, "
        f"imgsz {args.imgsz}: params {info['params']:,} ({info['params'] / 1e6:.2f} M), "
        f"GFLOPs {info['gflops']:.2f} (2 x MACs)"
    )
    return 0


# --------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daik", description="DAIK: distillation for oriented object detection."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    p = sub.add_parser("merge", help="merge patch detections (Task1 files) back to full images")
    p.add_argument("src", help="folder of Task1_<class>.txt files whose image ids are patch names")
    p.add_argument("dst", help="output folder of merged Task1_<class>.txt files")
    p.add_argument("--iou-thr", type=float, default=0.1, help="class-aware polygon NMS threshold (0.1)")
    p.set_defaults(handler=_cmd_merge)

    p = sub.add_parser("eval", help="evaluate detections")
    eval_sub = p.add_subparsers(dest="eval_command", required=True, metavar="FORMAT")
    e = eval_sub.add_parser("dota", help="DOTA Task1 mAP of Task1_<class>.txt files against labelTxt")
    e.add_argument("--ann-dir", required=True, help="folder of DOTA labelTxt annotation files")
    e.add_argument("--det-dir", required=True, help="folder of Task1_<class>.txt detection files")
    e.add_argument("--iou-thr", type=float, default=0.5, help="IoU threshold (default 0.5)")
    e.add_argument(
        "--metric", choices=("voc07", "area"), default="voc07", help="11-point VOC07 or all-point AP"
    )
    e.add_argument("--classes", default="dota1.0", help="dota1.0 | dota1.5 | dota2.0 | a,b,c")
    e.add_argument("--json", default=None, help="write mAP, per-class AP and counts to this file")
    e.set_defaults(handler=_cmd_eval_dota)

    p = sub.add_parser("info", help="parameters and GFLOPs of a detector preset")
    p.add_argument("--preset", choices=("n", "s", "m", "l"), default="n", help="model size (default n)")
    p.add_argument("--imgsz", type=int, default=1024, help="square input side, a multiple of 32 (1024)")
    p.add_argument("--num-classes", type=int, default=15, help="number of classes (default 15, DOTA 1.0)")
    p.add_argument("--reg-max", type=int, default=16, help="DFL reg_max (default 16)")
    p.add_argument("--fused", action="store_true", help="the re-parameterised inference model")
    p.set_defaults(handler=_cmd_info)
    return parser


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
