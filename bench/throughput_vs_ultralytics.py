"""Training throughput of DAIK's n preset against YOLOv8n-OBB, robust to a busy machine: short runs of
each, alternated (A B, B A, A B, ...), and the median of the per-round ratios.

    python bench/throughput_vs_ultralytics.py --peer-python /path/to/peer-venv/bin/python \
        --train data/synth/train --rounds 3

Each round trains each model for ``--epochs`` epochs on the same images (no validation, no prediction) with
the same image size, batch and loader workers, and reads the images/s of the last epoch's training loop
from each trainer's own records (DAIK: ``metrics.jsonl``; Ultralytics: epoch start/end callbacks); the
first epoch pays for start-up (loader processes, allocator warm-up) and is not counted. Load from
other processes hits both models of a round alike, so the ratio is what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CLASSES = (
    "plane,small-vehicle,large-vehicle,ship,tennis-court,basketball-court,storage-tank,harbor,helicopter"
)


def ours(train: Path, out: Path, args: argparse.Namespace) -> float:
    spec = {
        "name": "throughput",
        "dataset": {"train": str(train), "classes": CLASSES},
        "student": {"preset": "n"},
        "hparams": {"epochs": args.epochs, "batch": args.batch, "imgsz": args.imgsz, "workers": args.workers,
                    "warmup_epochs": 1, "seed": 0, "device": "cpu"},
        "output": str(out),
    }  # fmt: skip
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    subprocess.run(
        [sys.executable, "-m", "daik_core.cli", "train", str(path), "-q", "--overwrite"], check=True
    )
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return float(rows[-1]["images_per_s"])


def peer(train: Path, out: Path, args: argparse.Namespace) -> float:
    env = dict(os.environ, YOLO_OFFLINE="1")
    env.setdefault("YOLO_CONFIG_DIR", str(out.parent / "yolo-cfg"))
    cmd = [args.peer_python, str(HERE / "peer_ultralytics.py"), "--train", str(train), "--val", str(train),
           "--classes", CLASSES, "--out", str(out), "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
           "--batch", str(args.batch), "--workers", str(args.workers), "--no-predict"]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return float(json.loads((out / "summary.json").read_text())["last_epoch_images_per_s"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-python", required=True)
    ap.add_argument("--train", type=Path, default=Path("data/synth/train"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2, help="the last epoch is timed (the first warms up)")
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("daik", "peer") if r % 2 == 0 else ("peer", "daik")
            speed = {}
            for who in order:
                out = Path(tmp) / f"{who}-{r}"
                speed[who] = ours(args.train, out, args) if who == "daik" else peer(args.train, out, args)
            ratios.append(speed["daik"] / speed["peer"])
            print(f"round {r + 1} ({' then '.join(order)}): DAIK n {speed['daik']:.2f} img/s, "
                  f"YOLOv8n-OBB {speed['peer']:.2f} img/s, ratio {ratios[-1]:.2f}", flush=True)  # fmt: skip
    print(f"DAIK n / YOLOv8n-OBB training throughput: median {statistics.median(ratios):.2f}x "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}); imgsz {args.imgsz}, batch {args.batch}, "
          f"{args.workers} loader worker(s), CPU")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
