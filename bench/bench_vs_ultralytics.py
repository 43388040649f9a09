"""DAIK's n preset against Ultralytics YOLOv8n-OBB: same synthetic data, image size, epochs and batch,
both scored with DAIK's DOTA evaluator (VOC07 mAP50, the DOTA devkit's protocol).

Ultralytics runs in its own environment (never a dependency; ../shared/PEERS.md tells how to build it
offline); pass its Python with ``--peer-python``. Both trainings run one after the other in this process's
machine, so their images/s are measured under the same conditions; the ratio is what to read.

    .venv/bin/python bench/bench_vs_ultralytics.py --peer-python /path/to/peer-venv/bin/python \
        --spec configs/synth-n.yaml --out bench/out/vs-ultralytics

Stages are skipped when their outputs exist (``--fresh`` redoes everything), so a long run can be resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from daik_core.config import load_spec, resolve_spec_paths
from daik_core.data.synth import generate_dataset
from daik_core.eval.dota import evaluate_dota_dirs

HERE = Path(__file__).resolve().parent


def ensure_synth(folder: Path, images: int, size: int, seed: int, difficulty: str) -> None:
    if (folder / "labelTxt").is_dir() and len(list((folder / "labelTxt").glob("*.txt"))) == images:
        return
    generate_dataset(folder, images=images, size=size, seed=seed, difficulty=difficulty, progress=False)


def run_ours(spec_path: Path, out: Path, train: Path, val: Path, args: argparse.Namespace) -> dict:
    data = resolve_spec_paths(yaml.safe_load(spec_path.read_text()), spec_path.absolute().parent)
    data["dataset"]["train"] = str(train)
    data["dataset"]["val"] = str(val)
    data["output"] = str(out / "daik")
    hp = data.setdefault("hparams", {})
    for key in ("epochs", "imgsz", "batch", "workers", "seed"):
        if getattr(args, key) is not None:
            hp[key] = getattr(args, key)
    spec_file = out / "daik-spec.yaml"
    spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
    spec = load_spec(spec_file)
    results_path = spec.output_dir() / "results.json"
    if not results_path.is_file():
        subprocess.run([sys.executable, "-m", "daik_core.cli", "train", str(spec_file)], check=True)
    results = json.loads(results_path.read_text())
    lines = [json.loads(x) for x in (spec.output_dir() / "metrics.jsonl").read_text().splitlines() if x]
    ips = [m["images_per_s"] for m in lines if m.get("images_per_s")]
    return {
        "name": f"DAIK {spec.student.preset}",
        "params": results["params"],
        "images_per_s": sum(ips) / len(ips) if ips else float("nan"),
        "epochs": spec.hparams.epochs,
        "imgsz": spec.hparams.imgsz,
        "batch": spec.hparams.batch,
        "classes": list(spec.dataset.class_names()),
        "weights": results["weights"]["last"],
    }


def run_peer(peer_python: str, out: Path, train: Path, val: Path, ours: dict, workers: int) -> dict:
    peer_out = out / "ultralytics"
    summary = peer_out / "summary.json"
    if not summary.is_file():
        env = dict(os.environ, YOLO_OFFLINE="1")
        env.setdefault("YOLO_CONFIG_DIR", str(out / "yolo-cfg"))
        cmd = [
            peer_python,
            str(HERE / "peer_ultralytics.py"),
            "--train",
            str(train),
            "--val",
            str(val),
            "--classes",
            ",".join(ours["classes"]),
            "--out",
            str(peer_out),
            "--epochs",
            str(ours["epochs"]),
            "--imgsz",
            str(ours["imgsz"]),
            "--batch",
            str(ours["batch"]),
            "--workers",
            str(workers),
        ]
        subprocess.run(cmd, check=True, env=env)
    s = json.loads(summary.read_text())
    return {
        "name": "Ultralytics YOLOv8n-OBB",
        "params": s["params"],
        "images_per_s": s.get("epoch_images_per_s", s["train_images_per_s"]),
        "task1_dir": s["task1_dir"],
    }


def predict_ours(weights: str, val: Path, out: Path, imgsz: int) -> Path:
    det = out / "daik-task1"
    if not det.is_dir():
        cmd = [
            sys.executable,
            "-m",
            "daik_core.cli",
            "predict",
            "--weights",
            weights,
            "--source",
            str(val / "images"),
            "--out",
            str(out / "daik-predict"),
            "--imgsz",
            str(imgsz),
            "--conf",
            "0.001",  # every detection counts for AP, as for the peer
        ]
        subprocess.run(cmd, check=True)
        found = sorted((out / "daik-predict").rglob("Task1_*.txt"))
        if not found:
            raise SystemExit("daik predict wrote no Task1 files")
        found[0].parent.rename(det)
    return det


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-python", required=True, help="python of the Ultralytics environment")
    ap.add_argument("--spec", type=Path, default=Path("configs/synth-n.yaml"))
    ap.add_argument("--out", type=Path, default=Path("bench/out/vs-ultralytics"))
    ap.add_argument("--train-images", type=int, default=400)
    ap.add_argument("--val-images", type=int, default=50)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--difficulty", default="medium")
    ap.add_argument("--epochs", type=int, default=None, help="override the spec's")
    ap.add_argument("--imgsz", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()

    out = args.out.resolve()
    if args.fresh and out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = out / "data" / "train", out / "data" / "val"
    ensure_synth(train, args.train_images, args.size, 0, args.difficulty)
    ensure_synth(val, args.val_images, args.size, 1, args.difficulty)

    ours = run_ours(args.spec, out, train, val, args)
    peer = run_peer(args.peer_python, out, train, val, ours, args.workers or 2)
    ours["task1_dir"] = str(predict_ours(ours["weights"], val, out, ours["imgsz"]))

    rows = []
    for r in (ours, peer):
        voc = evaluate_dota_dirs(val / "labelTxt", Path(r["task1_dir"]), ours["classes"], metric="voc07")
        area = evaluate_dota_dirs(
            val / "labelTxt", Path(r["task1_dir"]), ours["classes"], metric="area", map_50_95=False
        )
        rows.append((r, voc, area))
    print(
        f"\nsynthetic {args.difficulty}: {args.train_images} train / {args.val_images} val images of "
        f"{args.size} px; imgsz {ours['imgsz']}, {ours['epochs']} epochs, batch {ours['batch']}; CPU"
    )
    print(
        f"{'model':28s} {'params':>9s} {'train img/s':>12s} {'mAP50 voc07':>12s} {'mAP50 all-pt':>13s} "
        f"{'mAP50:95':>9s}"
    )
    for r, voc, area in rows:
        print(
            f"{r['name']:28s} {r['params'] / 1e6:8.2f}M {r['images_per_s']:12.2f} {voc.map:12.4f} "
            f"{area.map:13.4f} {voc.map_50_95 or float('nan'):9.4f}"
        )
    (o, ov, _), (p, pv, _) = rows
    print(
        f"DAIK / Ultralytics: mAP50 {ov.map / max(pv.map, 1e-9):.2f}x, "
        f"training throughput {o['images_per_s'] / p['images_per_s']:.2f}x"
    )
    summary = {
        "daik": {**o, "map50": ov.map, "map50_95": ov.map_50_95},
        "ultralytics": {**p, "map50": pv.map, "map50_95": pv.map_50_95},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
