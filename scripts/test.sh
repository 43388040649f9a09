#!/usr/bin/env bash
# Sets up DAIK from nothing (virtual environment, install) and runs every check: lint, types, import
# boundaries and the test suite. The README's test command and CI's .ci/run both call exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh dev,export,service,worker,mlflow,tensorboard
VPY=.venv/bin/python

# The services the tests need (PostgreSQL, Redis); started only when down.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi
if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi

echo "== ruff" && .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy" && .venv/bin/mypy
echo "== import boundaries" && .venv/bin/lint-imports
echo "== complexity" && "$VPY" scripts/check_complexity.py
echo "== pytest" && "$VPY" -m pytest -q "$@"
