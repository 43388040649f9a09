"""The CUDA paths of the trainer, checked on a GPU machine in one short run (CI has no GPU).

    python bench/cuda_check.py --out /tmp/cuda-check          # ~2 min on one H100/H200

1. Step speed of the n and s presets at imgsz 640, batch 32: fp32 vs AMP, contiguous vs channels_last
   (forward + loss + backward + AdamW step on random images with random boxes); images/s and the ratio.
2. ``daik train`` on CUDA with AMP and channels_last on a small synthetic set: losses finite and falling,
   ``results.json`` written; then stopped after epoch 1 and resumed (the GradScaler's state travels in the
   checkpoint): the resumed run finishes and its mAP is close to the uninterrupted one (CUDA kernels are
   not bit-deterministic, so "close", not "equal").
3. DDP over NCCL through ``torchrun`` (one process per GPU; one GPU here: world size 1).

Prints one JSON summary line at the end and writes it to ``OUT/cuda_check.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from daik_core.config import load_spec
from daik_core.data.synth import generate_dataset
from daik_core.engine import StopFlag, Trainer
from daik_core.losses.detection import DetectionLoss
from daik_core.presets import build_detector
from daik_core.structures.targets import Targets

CLASSES = (
    "plane,small-vehicle,large-vehicle,ship,tennis-court,basketball-court,storage-tank,harbor,helicopter"
)


class _StopAfterEpoch(StopFlag):
    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        if epoch >= self.epochs:
            self.request("cuda_check")


def step_speed(preset: str, amp: bool, channels_last: bool, imgsz: int = 640, batch: int = 32) -> float:
    """Training images/s of one preset on random data (forward, loss, backward, AdamW step)."""
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = build_detector(preset, 9).to(dev).train()
    crit = DetectionLoss(9, 16).to(dev)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = torch.randn(batch, 3, imgsz, imgsz, device=dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    m = 30
    wh = torch.rand(batch, m, 2, device=dev) * 60 + 8
    boxes = torch.cat(
        [
            torch.rand(batch, m, 2, device=dev) * imgsz,
            wh.sort(-1, descending=True).values,
            torch.rand(batch, m, 1, device=dev) * 3.1,
        ],
        -1,
    )
    targets = Targets(
        boxes, torch.randint(0, 9, (batch, m), device=dev), torch.ones(batch, m, dtype=torch.bool, device=dev)
    )

    def step() -> None:
        with torch.autocast("cuda", enabled=amp):
            out = model(x)
        losses, _ = crit(out, targets)
        scaler.scale(torch.stack(list(losses.values())).sum()).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    n = 20
    t = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    return batch * n / (time.perf_counter() - t)


def write_spec(path: Path, data: Path, out: Path, epochs: int, device: str, **hp: object) -> Path:
    spec = {
        "name": out.name,
        "kind": "train",
        "dataset": {"train": str(data / "train"), "val": str(data / "val"), "classes": CLASSES},
        "student": {"preset": "n"},
        "hparams": {
            "epochs": epochs,
            "batch": 16,
            "imgsz": 256,
            "lr": 0.002,
            "warmup_epochs": 1,
            "eval_interval": epochs,
            "workers": 2,
            "seed": 0,
            "device": device,
            **hp,
        },
        "output": str(out),
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def daik(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daik_core.cli", *args], text=True, capture_output=True, env=env, check=False
    )


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/out/cuda-check"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--images", type=int, default=96, help="synthetic training images")
    ap.add_argument("--dry-run-cpu", action="store_true", help="check the script itself on a CPU")
    args = ap.parse_args()
    device = "cpu" if args.dry_run_cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("cuda_check: no CUDA device", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    summary: dict[str, object] = {"device": name, "torch": torch.__version__}

    speed: dict[str, float] = {}
    for preset in ("n", "s") if device == "cuda" else ():
        for amp in (False, True):
            for cl in (False, True):
                key = f"{preset} {'amp' if amp else 'fp32'} {'channels_last' if cl else 'contiguous'}"
                speed[key] = round(step_speed(preset, amp, cl), 1)
                print(f"speed {key}: {speed[key]} img/s", flush=True)
    summary["images_per_s_640_b32"] = speed
    if speed:
        summary["amp_channels_last_speedup_n"] = round(
            speed["n amp channels_last"] / speed["n fp32 contiguous"], 2
        )

    data = out / "data"
    generate_dataset(data / "train", images=args.images, size=256, seed=0, difficulty="easy", progress=False)
    generate_dataset(data / "val", images=24, size=256, seed=1, difficulty="easy", progress=False)

    full = out / "full"
    r = daik("train", str(write_spec(out / "full.yaml", data, full, args.epochs, device)), "--overwrite")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = read_metrics(full)
    losses = [row["loss"] for row in rows]
    assert all(map(lambda v: v == v and abs(v) < 1e6, losses)), losses
    results = json.loads((full / "results.json").read_text())
    summary["train_amp_channels_last"] = {
        "loss_by_epoch": [round(v, 4) for v in losses],
        "map50": results["map50"],
        "images_per_s": rows[-1]["images_per_s"],
    }
    assert losses[-1] < losses[0], losses

    # stopped after epoch 1 through the stop protocol (last.pt at the stop point), then resumed
    part = out / "part"
    spec = load_spec(write_spec(out / "part.yaml", data, part, args.epochs, device))
    stopped = Trainer(spec, [_StopAfterEpoch(1)], overwrite=True).fit()
    resumed_run = Trainer(spec, resume=True).fit()
    resumed = json.loads((part / "results.json").read_text())
    summary["resume"] = {
        "stopped_status": str(getattr(stopped, "status", stopped)),
        "map50_full": results["map50"],
        "map50_resumed": resumed["map50"],
        "epochs": len(read_metrics(part)),
        "status": str(getattr(resumed_run, "status", "")),
    }
    assert len(read_metrics(part)) == args.epochs

    ddp = out / "ddp"
    spec = write_spec(out / "ddp.yaml", data, ddp, 2, device)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=1",
        "-m",
        "daik_core.cli",
        "train",
        str(spec),
        "--overwrite",
    ]
    r = subprocess.run(cmd, text=True, capture_output=True, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary["ddp_nccl_world1"] = {
        "epochs": len(read_metrics(ddp)),
        "map50": json.loads((ddp / "results.json").read_text())["map50"],
    }

    line = json.dumps(summary)
    (out / "cuda_check.json").write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
