"""Benchmark: Ultralytics' built-in distillation (YOLOv8s-OBB teacher -> YOLOv8n-OBB student, feature
imitation on the neck) on the same data and schedule as DAIK's distillation recipe, scored by DAIK's DOTA
evaluator; printed next to DAIK's ablation table when one is given.

Runs in the peer environment (../shared/PEERS.md; never a DAIK dependency) through `peer_ultralytics.py`:

1. the teacher: `yolov8s-obb.yaml` from scratch for `--teacher-epochs` (configs/synth-kd-teacher.yaml: 24);
2. the plain student: `yolov8n-obb.yaml` for `--epochs` (configs/synth-kd.yaml: 10);
3. the distilled student: the same with `distill_model=<teacher last.pt>` (Ultralytics' default weight
   `dis=6.0`).

Each run is skipped when its `summary.json` exists (delete the folder to run it again). One seed: each
Ultralytics run costs as much CPU as a DAIK one.

    YOLO_CONFIG_DIR=/work/peer-cfg .venv/bin/python bench/bench_distill_vs_ultralytics.py \\
        --peer-python /work/peer-venv/bin/python --data data/synth-kd \\
        [--daik-table runs/synth-kd-ablate/ablation.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from daik_core.eval.dota import evaluate_dota_dirs

HERE = Path(__file__).resolve().parent


def run_peer(
    peer_python: str,
    out: Path,
    data: Path,
    classes: list[str],
    model: str,
    epochs: int,
    args: argparse.Namespace,
    distill_model: str | None = None,
) -> dict[str, Any]:
    summary = out / "summary.json"
    if not summary.is_file():
        env = dict(os.environ, YOLO_OFFLINE="1")
        env.setdefault("YOLO_CONFIG_DIR", str(out.parent / "yolo-cfg"))
        cmd = [
            peer_python,
            str(HERE / "peer_ultralytics.py"),
            "--train", str(data / "train"),
            "--val", str(data / "val"),
            "--classes", ",".join(classes),
            "--out", str(out),
            "--model", model,
            "--epochs", str(epochs),
            "--imgsz", str(args.imgsz),
            "--batch", str(args.batch),
            "--workers", str(args.workers),
            "--seed", str(args.seed),
        ]  # fmt: skip
        if distill_model is not None:
            cmd += ["--distill-model", distill_model]
        subprocess.run(cmd, check=True, env=env)
    return dict(json.loads(summary.read_text()))


def score(data: Path, task1_dir: str, classes: list[str]) -> dict[str, float | None]:
    voc = evaluate_dota_dirs(data / "val" / "labelTxt", Path(task1_dir), classes, metric="voc07")
    area = evaluate_dota_dirs(
        data / "val" / "labelTxt", Path(task1_dir), classes, metric="area", map_50_95=False
    )
    return {"map50": voc.map, "map50_all": area.map, "map50_95": voc.map_50_95}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-python", required=True, help="python of the Ultralytics environment")
    ap.add_argument("--data", type=Path, default=Path("data/synth-kd"), help="folder with train/ and val/")
    ap.add_argument("--out", type=Path, default=Path("bench/out/distill-vs-ultralytics"))
    ap.add_argument("--teacher-epochs", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--daik-table", type=Path, default=None, help="ablation.json of `daik ablate` to compare")
    args = ap.parse_args(argv)

    classes = (args.data / "train" / "classes.txt").read_text().split()
    args.out.mkdir(parents=True, exist_ok=True)
    teacher = run_peer(
        args.peer_python,
        args.out / "teacher-s",
        args.data,
        classes,
        "yolov8s-obb.yaml",
        args.teacher_epochs,
        args,
    )
    plain = run_peer(
        args.peer_python, args.out / "student-n", args.data, classes, "yolov8n-obb.yaml", args.epochs, args
    )
    distilled = run_peer(
        args.peer_python,
        args.out / "student-n-distill",
        args.data,
        classes,
        "yolov8n-obb.yaml",
        args.epochs,
        args,
        distill_model=teacher["weights"],
    )
    rows = []
    for name, s in (
        ("YOLOv8s-OBB teacher", teacher),
        ("YOLOv8n-OBB", plain),
        ("YOLOv8n-OBB + built-in distill", distilled),
    ):
        rows.append(
            {
                "name": name,
                "params": s["params"],
                "train_seconds": s["train_seconds"],
                **score(args.data, s["task1_dir"], classes),
            }
        )
    t, p, d = (r["map50"] for r in rows)
    gap = (d - p) / (t - p) if t is not None and p is not None and d is not None and t != p else None
    print(
        f"\nUltralytics on {args.data}: imgsz {args.imgsz}, batch {args.batch}, "
        f"student {args.epochs} epochs, "
        f"teacher {args.teacher_epochs} epochs, seed {args.seed}; scored by DAIK's DOTA evaluator"
    )
    print(
        f"{'model':34s} {'params':>8s} {'train s':>8s} {'mAP50 voc07':>12s} {'all-point':>10s} "
        f"{'mAP50:95':>9s}"
    )
    for r in rows:
        print(
            f"{r['name']:34s} {r['params'] / 1e6:7.2f}M {r['train_seconds']:8.0f} {r['map50']:12.4f} "
            f"{r['map50_all']:10.4f} {r['map50_95'] or float('nan'):9.4f}"
        )
    print(
        f"built-in distillation: {d - p:+.4f} mAP50, "
        f"gap closed {'-' if gap is None else f'{100 * gap:.0f} %'}"
    )
    if args.daik_table is not None and args.daik_table.is_file():
        table = json.loads(args.daik_table.read_text())
        by = {r["config"]: r for r in table["rows"]}
        print("\nDAIK (daik ablate, mean over seeds):")
        for name in ("teacher", "baseline", "DAIK", "FitNet", "CWD", "logit KD"):
            if name in by:
                r = by[name]
                gc = r.get("gap_closed")
                print(
                    f"  {name:12s} mAP50 {r['map50']['mean']:.4f} (n={r['map50']['n']})"
                    + ("" if gc is None else f", gap closed {100 * gc:.0f} %")
                )
    (args.out / "summary.json").write_text(json.dumps({"rows": rows, "gap_closed": gap}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
