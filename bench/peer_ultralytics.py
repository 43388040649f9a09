"""Train and run Ultralytics YOLOv8-OBB on a DOTA-format dataset; runs INSIDE the peer environment.

Never imported by DAIK and never a dependency: `bench/bench_vs_ultralytics.py` calls it with the peer
environment's Python (see ../shared/PEERS.md for how that environment is built, offline). It:

1. converts DOTA folders (images/, labelTxt/) to Ultralytics' OBB layout (class x1 y1 ... x4 y4, corners
   normalised to [0, 1]), images linked, not copied;
2. trains `yolov8n-obb.yaml` (or `--model`) from scratch (no weights are downloaded) with validation off,
   so that the training time is training only; `--distill-model T.pt` turns on Ultralytics' built-in
   distillation from the teacher T (feature imitation on the neck, weight `--dis`, default 6.0);
3. predicts on the val images with conf=0.001 and writes DOTA Task1 files (scored by DAIK's evaluator,
   not by Ultralytics' own validator);
4. writes `summary.json`: training seconds, images seen, images/s, parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def convert(src: Path, dst: Path, classes: list[str]) -> int:
    import cv2

    (dst / "images").mkdir(parents=True, exist_ok=True)
    (dst / "labels").mkdir(parents=True, exist_ok=True)
    index = {c: i for i, c in enumerate(classes)}
    n = 0
    for img in sorted((src / "images").iterdir()):
        if img.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        h, w = cv2.imread(str(img)).shape[:2]
        link = dst / "images" / img.name
        if not link.exists():
            os.symlink(img.resolve(), link)
        lines = []
        label = src / "labelTxt" / f"{img.stem}.txt"
        for raw in label.read_text().splitlines():
            tok = raw.split()
            if len(tok) < 9 or tok[8] not in index:
                continue
            xy = [float(v) for v in tok[:8]]
            norm = [min(max(v / (w if i % 2 == 0 else h), 0.0), 1.0) for i, v in enumerate(xy)]
            lines.append(f"{index[tok[8]]} " + " ".join(f"{v:.6f}" for v in norm))
        (dst / "labels" / f"{img.stem}.txt").write_text("".join(line + "\n" for line in lines))
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--classes", required=True, help="comma-separated class names")
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="yolov8n-obb.yaml")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-predict", action="store_true", help="train only (throughput runs)")
    ap.add_argument(
        "--distill-model",
        default=None,
        help="teacher weights (.pt): Ultralytics' built-in distillation (feature imitation on the neck)",
    )
    ap.add_argument("--dis", type=float, default=6.0, help="its distillation loss weight (default 6.0)")
    args = ap.parse_args()

    out = Path(args.out).resolve()
    classes = args.classes.split(",")
    data_root = out / "yolo-data"
    n_train = convert(Path(args.train), data_root / "train", classes)
    convert(Path(args.val), data_root / "val", classes)
    data_yaml = out / "data.yaml"
    names = "\n".join(f"  {i}: {c}" for i, c in enumerate(classes))
    data_yaml.write_text(f"path: {data_root}\ntrain: train/images\nval: val/images\nnames:\n{names}\n")

    from ultralytics import YOLO

    model = YOLO(args.model, task="obb")
    # images/s as DAIK's metrics.jsonl defines it: images of an epoch over the seconds of its training loop
    # (no setup, no validation), averaged over epochs
    epoch_seconds: list[float] = []
    epoch_start: list[float] = []
    model.add_callback("on_train_epoch_start", lambda trainer: epoch_start.append(time.perf_counter()))
    model.add_callback(
        "on_train_epoch_end", lambda trainer: epoch_seconds.append(time.perf_counter() - epoch_start[-1])
    )
    extra = {"distill_model": args.distill_model, "dis": args.dis} if args.distill_model else {}
    t0 = time.perf_counter()
    model.train(
        **extra,
        data=str(data_yaml),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        workers=args.workers,
        device="cpu",
        pretrained=False,
        val=False,
        plots=False,
        seed=args.seed,
        project=str(out),
        name="train",
        exist_ok=True,
        amp=False,
        verbose=False,
    )
    train_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.model.parameters())

    det_dir = out / "task1"
    det_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[str]] = {c: [] for c in classes}
    val_images = (
        []
        if args.no_predict
        else sorted(p for p in (Path(args.val) / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    )
    t1 = time.perf_counter()
    for img in val_images:
        res = model.predict(str(img), imgsz=args.imgsz, conf=0.001, device="cpu", verbose=False)[0]
        if res.obb is None:
            continue
        polys = res.obb.xyxyxyxy.reshape(-1, 8).tolist()
        for poly, conf, cls in zip(polys, res.obb.conf.tolist(), res.obb.cls.tolist(), strict=True):
            coords = " ".join(f"{v:.2f}" for v in poly)
            rows[classes[int(cls)]].append(f"{img.stem} {conf:.6f} {coords}")
    predict_s = time.perf_counter() - t1
    for c, lines in rows.items():
        (det_dir / f"Task1_{c}.txt").write_text("".join(line + "\n" for line in lines))
    summary = {
        "model": args.model,
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "train_images": n_train,
        "train_seconds": train_s,
        "train_images_per_s": n_train * args.epochs / train_s,
        "epoch_images_per_s": sum(n_train / t for t in epoch_seconds) / max(len(epoch_seconds), 1),
        "last_epoch_images_per_s": n_train / epoch_seconds[-1] if epoch_seconds else None,
        "predict_seconds": predict_s,
        "params": params,
        "task1_dir": str(det_dir),
        "weights": str(out / "train" / "weights" / "last.pt"),
        "distill_model": args.distill_model,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
