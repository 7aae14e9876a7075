#!/usr/bin/env bash
# The data-path benchmarks (issue 13) in one bounded run, each figure next to raw COPY and MLflow:
#   flock /tmp/psl-heavy.lock bash bench/data_path.sh > docs/results/<date>-data-path.txt
# ROWS scales the growth benchmark (default 50M points across 5,000 runs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ROWS=${ROWS:-50000000}
for bench in "bench_series.py --explain" bench_ingest.py "bench_compare.py --explain" "bench_runs_list.py --explain" \
             "bench_growth.py --rows $ROWS"; do
  echo "=== bench/$bench"
  # shellcheck disable=SC2086
  timeout 1800 $PY bench/$bench 2>&1 | grep -v -e "UserWarning: No directory at" -e "mw_instance = middleware"
  echo
done
