#!/usr/bin/env bash
# Creates .venv (if missing) and installs a CPU build of torch and the project with the given extras.
# Usage: bash scripts/setup.sh [EXTRAS]   (default: dev,export)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${1:-dev,export}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip
# A CPU build of torch first (it satisfies the project's open torch>=2.3 range, so nothing larger is pulled).
"$VPY" -m pip install -q "torch==${DAIK_TORCH_VERSION:-2.13.0}"
"$VPY" -m pip install -q -e ".[${EXTRAS}]"
