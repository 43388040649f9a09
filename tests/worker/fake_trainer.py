"""A scripted stand-in for ``daik train`` (the worker only sees its event file, its log and its exit code).

It writes typed events (:mod:`daik_core.events`): ``start``, then per epoch ``progress`` / ``eval`` /
``epoch`` / ``checkpoint`` (real files under ``<output>/weights``), then ``end`` and exits 0. Options make it
misbehave: ``--hang`` sleeps after the first epoch until signalled (writing nothing); ``--on-term`` ``obey``
checkpoints, writes ``end`` stopped and exits 143, or ``ignore`` ignores SIGTERM; ``--child`` starts a
grandchild that ignores SIGTERM (a stuck loader worker) and writes its pid to ``<output>/child.pid``;
``--fail CODE --message TEXT`` prints TEXT to stderr and exits CODE after the first epoch, having reported
it as a ``failure`` event of ``--failure`` ``error`` or ``oom`` (``none``: it reports nothing, as a trainer
that dies before it can); ``--eat-memory`` allocates memory after the first epoch until the kernel kills
it; ``--gate FILE`` waits before its last epoch until FILE exists; ``--sleep S`` spends S seconds per
epoch; ``--record-env`` writes the environment it was given to ``<output>/trainer_env.json`` (what a worker
passes to its trainers). Checkpoints hold ``epoch=N step=M`` (``best.pt``: ``best epoch=N``, 100 bytes),
and ``--resume [PATH]`` goes on after that epoch of PATH (default ``<output>/weights/last.pt``), as the real
trainer does. A completed run with ``--val`` (the spec's ``dataset.val``) writes ``gallery.json`` of its
first images, as the real trainer does. Like the real trainer it appends a line per epoch to
``<output>/metrics.jsonl`` and, when the run completes, writes ``results.json`` and its plots (tiny images
under the real names: ``results.png``, ``labels.png``; with ``--val`` also ``pr_curve.png``,
``confusion_matrix.png`` and ``val_pred_0.jpg``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from daik_core.events import Checkpoint, End, Epoch, Eval, Event, EventWriter, Failure, Progress, Start

# a 1x1 PNG: what the trainer's plots are, in miniature
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def _parse() -> argparse.Namespace:
    """Two call forms: the tests' own (``--events E --output O [behaviour]``) and the worker's real trainer
    command line (``train SPEC --events E -q [--resume | --overwrite]``, as ``DAIK_TRAINER_COMMAND``), whose
    output folder comes from SPEC and whose behaviour options from the environment variable
    ``DAIK_FAKE_TRAINER``."""
    p = argparse.ArgumentParser()
    p.add_argument("--events", required=True)
    p.add_argument("--output", default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--sleep", type=float, default=0.0, help="seconds per epoch")
    p.add_argument("--hang", action="store_true")
    p.add_argument("--on-term", choices=("obey", "ignore"), default="obey")
    p.add_argument("--child", action="store_true")
    p.add_argument("--fail", type=int, default=None)
    p.add_argument("--message", default="")
    p.add_argument("--failure", choices=("error", "oom", "none"), default="error")
    p.add_argument("--eat-memory", action="store_true")
    p.add_argument("--gate", default=None)
    p.add_argument("--map50", type=float, default=0.5)
    p.add_argument("--record-env", action="store_true")
    p.add_argument("-q", action="store_true")
    p.add_argument("--resume", nargs="?", const="", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--val", default=None, help="the validation folder: gallery.json lists its first images")
    argv = sys.argv[1:]
    if argv and argv[0] == "train":
        spec = yaml.safe_load(Path(argv[1]).read_text())
        argv = [*argv[2:], "--output", spec["output"], *shlex.split(os.environ.get("DAIK_FAKE_TRAINER", ""))]
        if (spec.get("dataset") or {}).get("val"):
            argv += ["--val", spec["dataset"]["val"]]
    args = p.parse_args(argv)
    if args.output is None:
        p.error("--output is required")
    return args


def main() -> int:
    args = _parse()
    out = Path(args.output)
    weights = out / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    writer = EventWriter(args.events)
    if args.record_env:
        (out / "trainer_env.json").write_text(json.dumps(dict(os.environ)))

    def emit(event: Event) -> None:
        writer.write(event)

    step = 0
    state = {"epoch": 0}
    first = 1
    if args.resume is not None:  # the checkpoint holds "epoch=N step=M": go on after epoch N
        path = Path(args.resume) if args.resume else weights / "last.pt"
        saved = dict(kv.split("=") for kv in path.read_text().split() if "=" in kv)
        state["epoch"], step = int(saved["epoch"]), int(saved["step"])
        first = state["epoch"] + 1

    def checkpoint_bytes() -> bytes:
        return f"epoch={state['epoch']} step={state['epoch'] * args.iters}".encode()

    def on_term(signum: int, frame: Any) -> None:
        (weights / "last.pt").write_bytes(checkpoint_bytes() + b" stopped=1")
        emit(Checkpoint(epoch=state["epoch"], step=step, path=str(weights / "last.pt"), is_best=False))
        emit(End(status="stopped", results={"status": "stopped", "epoch": state["epoch"]}))
        print("daik: SIGTERM: stopping", file=sys.stderr, flush=True)
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term if args.on_term == "obey" else signal.SIG_IGN)
    if args.child:
        code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
        child = subprocess.Popen([sys.executable, "-c", code])
        (out / "child.pid").write_text(str(child.pid))

    print("fake trainer: start", flush=True)
    emit(Start(epochs=args.epochs, iters_per_epoch=args.iters, epoch=state["epoch"], step=step))
    for epoch in range(first, args.epochs + 1):
        if args.gate is not None and epoch == args.epochs:
            while not Path(args.gate).exists():
                time.sleep(0.05)
        time.sleep(args.sleep)
        for it in range(1, args.iters + 1):
            step += 1
            emit(
                Progress(
                    epoch=epoch,
                    iteration=it,
                    iters_per_epoch=args.iters,
                    step=step,
                    loss=1.0 / step,
                    images_per_s=10.0,
                )
            )
        m50 = args.map50 * epoch / args.epochs
        emit(
            Eval(
                epoch=epoch,
                step=step,
                map50=m50,
                map50_95=m50 / 2,
                ap50={"a": m50, "b": None},
                ap50_95={"a": m50 / 2, "b": None},
            )
        )
        metrics = {
            "loss_cls": 1.0 / epoch,
            "loss_box": 2.0 / epoch,
            "loss": 3.0 / epoch,
            "lr": 0.01,
            "images_per_s": 10.0,
        }
        emit(Epoch(epoch=epoch, step=step, metrics=metrics))
        with (out / "metrics.jsonl").open("a") as f:
            f.write(json.dumps({"epoch": epoch, "step": step, **metrics, "map50": m50}) + "\n")
        state["epoch"] = epoch
        (weights / "last.pt").write_bytes(checkpoint_bytes())
        emit(Checkpoint(epoch=epoch, step=step, path=str(weights / "last.pt"), is_best=False))
        (weights / "best.pt").write_bytes(f"best epoch={epoch}".encode().ljust(100, b"."))
        emit(Checkpoint(epoch=epoch, step=step, path=str(weights / "best.pt"), is_best=True))
        if args.fail is not None:
            if args.failure != "none":
                emit(Failure(kind=args.failure, message=args.message))
            print(args.message, file=sys.stderr, flush=True)
            return args.fail
        if args.eat_memory:
            print("fake trainer: eating memory", flush=True)
            Path("/proc/self/oom_score_adj").write_text(
                "1000"
            )  # the OOM killer's first choice, not the worker
            hoard = []
            while True:
                hoard.append(b"\x01" * (32 * 2**20))  # written: every page is touched
        if args.hang:
            print("fake trainer: hanging", flush=True)
            while True:
                time.sleep(0.05)
    results = {
        "status": "completed",
        "epochs": args.epochs,
        "step": step,
        "map50": args.map50,
        "map50_95": args.map50 / 2,
        "ap50": {"a": args.map50, "b": None},
    }
    if args.val is not None:  # as the real trainer's final evaluation does (daik_core.inference.gallery)
        _write_gallery(out, Path(args.val))
    (out / "results.json").write_text(json.dumps(results))
    # the plots of a completed run (daik_core.engine.callbacks.PlotsCallback), in miniature
    (out / "results.png").write_bytes(PNG_1X1)
    (out / "labels.png").write_bytes(PNG_1X1)
    if args.val is not None:
        (out / "pr_curve.png").write_bytes(PNG_1X1)
        (out / "confusion_matrix.png").write_bytes(PNG_1X1)
        Image.new("RGB", (8, 8), (90, 120, 90)).save(out / "val_pred_0.jpg", format="JPEG")
    emit(End(status="completed", results=results))
    return 0


def _write_gallery(out: Path, val: Path) -> None:
    """``gallery.json`` of the first 8 images of ``val`` (sorted), one box each, in the real file's shape."""
    images = (
        sorted(p for p in (val / "images").iterdir() if p.is_file())[:8] if (val / "images").is_dir() else []
    )
    entries = [
        {
            "image": f"images/{p.name}",
            "width": 128,
            "height": 128,
            "boxes": [{"class": "a", "score": 0.9, "poly": [10, 10, 60, 10, 60, 40, 10, 40]}],
        }
        for p in images
    ]
    gallery = {"version": 1, "score_threshold": 0.25, "classes": ["a", "b"], "images": entries}
    (out / "gallery.json").write_text(json.dumps(gallery))


if __name__ == "__main__":
    sys.exit(main())
