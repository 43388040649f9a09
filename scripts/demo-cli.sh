#!/usr/bin/env bash
# The README's second command, the command line alone (no service): sets up from nothing, generates a
# small synthetic aerial dataset, trains the n preset on it with progress bars, and prints its DOTA mAP.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
D=.venv/bin/daik
[ -d data/demo/train/labelTxt ] || $D synth data/demo/train --images 200 --size 256 --seed 0 --difficulty easy
[ -d data/demo/val/labelTxt ] || $D synth data/demo/val --images 40 --size 256 --seed 1 --difficulty easy
$D train configs/demo-n.yaml --overwrite
$D eval --weights runs/demo-n/weights/best.pt --data data/demo/val
echo "weights: runs/demo-n/weights/best.pt   metrics: runs/demo-n/metrics.jsonl"
