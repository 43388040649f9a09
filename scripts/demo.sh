#!/usr/bin/env bash
# The README's main command: the job service from nothing. Sets up .venv (service and worker extras),
# starts `daik up` in the background on the embedded defaults (SQLite + SQLAlchemy broker under
# DAIK_HOME=./.daik-demo, no server needed), generates a small synthetic aerial dataset in its data root,
# then scripts/demo.py registers it, submits a teacher (preset s) and a student (preset n) job, shows both
# progresses live and prints their mAP50. The service keeps running afterwards; demo.py prints its URL,
# the admin token and how to stop it. A second run reuses the running service and the data.
set -euo pipefail
cd "$(dirname "$0")/.."
STARTED_AT=$(date +%s)
bash scripts/setup.sh service,worker

export DAIK_HOME="$PWD/.daik-demo"
PORT=${DAIK_DEMO_PORT:-8765}
TRAIN_IMAGES=${DAIK_DEMO_TRAIN_IMAGES:-120}
VAL_IMAGES=${DAIK_DEMO_VAL_IMAGES:-30}
SIZE=${DAIK_DEMO_SIZE:-256}
D=.venv/bin/daik
mkdir -p "$DAIK_HOME"

# the service, unless the one of a previous run is still up (its own session: a Ctrl-C here leaves it be)
if [ -f "$DAIK_HOME/up.pid" ] && kill -0 "$(cat "$DAIK_HOME/up.pid")" 2>/dev/null; then
  echo "reusing the running service (pid $(cat "$DAIK_HOME/up.pid"))"
else
  setsid "$D" up --host 127.0.0.1 --port "$PORT" --workers 2 </dev/null >"$DAIK_HOME/up.log" 2>&1 &
  echo $! >"$DAIK_HOME/up.pid"
  echo "daik up started (pid $!, log $DAIK_HOME/up.log)"
fi

DATA="$DAIK_HOME/data/demo"
[ -d "$DATA/train/labelTxt" ] || $D synth "$DATA/train" --images "$TRAIN_IMAGES" --size "$SIZE" --seed 0 --difficulty easy
[ -d "$DATA/val/labelTxt" ] || $D synth "$DATA/val" --images "$VAL_IMAGES" --size "$SIZE" --seed 1 --difficulty easy

exec .venv/bin/python scripts/demo.py --url "http://127.0.0.1:$PORT" --home "$DAIK_HOME" --imgsz "$SIZE" \
  --started-at "$STARTED_AT" "$@"
