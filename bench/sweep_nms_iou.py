"""mAP of one checkpoint under different per-image NMS IoU thresholds (how ``DEFAULT_NMS_IOU`` was chosen).

    python bench/sweep_nms_iou.py --weights runs/synth-n/weights/best.pt --data data/synth/val

Runs ``daik eval --weights W --data D --iou X`` for each X (score threshold 0.001, as in training) and
prints mAP50 (VOC07, the DOTA devkit's) and mAP50:95 per threshold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--ious", type=float, nargs="+", default=[0.1, 0.3, 0.45, 0.6, 0.7])
    args = ap.parse_args()
    print(f"{'nms iou':>8} {'mAP50 voc07':>12} {'mAP50:95':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for iou in args.ious:
            out = Path(tmp) / f"eval-{iou}.json"
            cmd = [sys.executable, "-m", "daik_core.cli", "eval", "--weights", args.weights]
            cmd += ["--data", args.data, "--iou", str(iou), "--json", str(out), "-q"]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            r = json.loads(out.read_text())
            m5095 = r.get("mAP50_95")
            print(f"{iou:8.2f} {r['mAP']:12.4f} {m5095 if m5095 is None else round(m5095, 4)!s:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
