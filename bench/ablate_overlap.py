"""Which overlap u should the task-aligned assigner use? Train the same recipe with each choice and seed.

    python bench/ablate_overlap.py --spec configs/synth-n.yaml --seeds 0 1 --parallel 6 \
        --device cuda --out bench/out/overlap

Each run is a plain ``daik train`` of the spec with ``assigner.overlap`` set (``probiou``,
``rotated_iou``, ``hbb_iou``) and ``hparams.seed`` set; ``--parallel`` runs that many at once (on a GPU
machine with many cores; on a 2-core CPU use 1). Prints a Markdown table of mAP50 (VOC07), mAP50:95 and
training images/s, mean and standard deviation over seeds, and writes it to ``OUT/overlap.md`` and the raw
numbers to ``OUT/overlap.json``. A finished run (its ``results.json`` exists) is not run again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from daik_core.config import resolve_spec_paths

OVERLAPS = ("probiou", "rotated_iou", "hbb_iou")


def run_one(spec: dict[str, Any], out: Path, overlap: str, seed: int, device: str | None) -> dict[str, Any]:
    run_dir = out / f"{overlap}-s{seed}"
    results = run_dir / "results.json"
    if not results.is_file():
        data = json.loads(json.dumps(spec))
        data["name"] = f"overlap-{overlap}-s{seed}"
        data.setdefault("assigner", {})["overlap"] = overlap
        data.setdefault("hparams", {})["seed"] = seed
        if device is not None:
            data["hparams"]["device"] = device
        data["output"] = str(run_dir)
        out.mkdir(parents=True, exist_ok=True)
        spec_file = out / f"{overlap}-s{seed}.yaml"
        spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "daik_core.cli", "train", str(spec_file), "--overwrite", "-q"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{spec_file}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        print(f"{overlap} seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    r = json.loads(results.read_text())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    ips = [row["images_per_s"] for row in rows if row.get("images_per_s")]
    return {
        "overlap": overlap,
        "seed": seed,
        "map50": r["map50"],
        "map50_95": r["map50_95"],
        "images_per_s": sum(ips) / len(ips) if ips else float("nan"),
    }


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", type=Path, default=Path("configs/synth-n.yaml"))
    ap.add_argument("--out", type=Path, default=Path("bench/out/overlap"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--overlaps", nargs="+", default=list(OVERLAPS), choices=OVERLAPS)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--device", default=None, help="override hparams.device")
    ap.add_argument("--epochs", type=int, default=None, help="override hparams.epochs")
    ap.add_argument("--workers", type=int, default=None, help="override hparams.workers")
    args = ap.parse_args()
    # the per-run specs are written elsewhere: their paths resolved against this spec's folder first
    spec = resolve_spec_paths(yaml.safe_load(args.spec.read_text()), args.spec.absolute().parent)
    for key in ("epochs", "workers"):
        if getattr(args, key) is not None:
            spec.setdefault("hparams", {})[key] = getattr(args, key)
    jobs = [(o, s) for o in args.overlaps for s in args.seeds]
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        runs = list(pool.map(lambda job: run_one(spec, args.out, job[0], job[1], args.device), jobs))
    lines = [
        f"Assigner overlap ablation: {args.spec}, seeds {args.seeds}, device {args.device or 'spec'}",
        "",
        "| overlap | mAP50 (VOC07) | mAP50:95 | train images/s |",
        "|---|---|---|---|",
    ]
    for o in args.overlaps:
        mine = [r for r in runs if r["overlap"] == o]
        lines.append(
            f"| {o} | {_ms([r['map50'] for r in mine])} | {_ms([r['map50_95'] for r in mine])} | "
            f"{statistics.mean(r['images_per_s'] for r in mine):.1f} |"
        )
    table = "\n".join(lines)
    (args.out / "overlap.md").write_text(table + "\n")
    (args.out / "overlap.json").write_text(json.dumps(runs, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
