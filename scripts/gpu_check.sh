#!/usr/bin/env bash
# The GPU check of issue 18 (benchmarks/gpu_check.py) as one command, under 8 minutes.
#
#   bash scripts/gpu_check.sh prepare   # here, once: copies lm-evaluation-harness's code
#                                       # (not its task files; ~1 MB) into .gpu_carry/, so
#                                       # its HF backend is the throughput baseline there
#   bash scripts/gpu_check.sh           # on the GPU machine: the device tool's command,
#                                       # with carry [".gpu_carry"] and timeout_s 480
#
# It writes gpu_check.json and gpu_check.log to $OUT (the device tool's folder that comes
# back), else runs/gpu_check. Without .gpu_carry the check still runs, and its lm-eval row
# says that compsafe's plain path stood in.
set -euo pipefail
cd "$(dirname "$0")/.."
carry=${GPU_CARRY:-.gpu_carry}
case $carry in /*) ;; *) carry=$PWD/$carry ;; esac
if [ "${1:-}" = prepare ]; then
  py=${PYTHON:-.venv/bin/python}
  src=$("$py" -c 'import lm_eval, os; print(os.path.dirname(lm_eval.__file__))')
  rm -rf "$carry" && mkdir -p "$carry"
  # The package without its task files, and its metadata: lm_eval/__init__.py reads its own
  # version from it at import.
  (cd "$(dirname "$src")" && tar cf - --exclude=lm_eval/tasks --exclude=__pycache__ \
     lm_eval lm_eval-*.dist-info) | tar xf - -C "$carry"
  du -sh "$carry"
  exit 0
fi
out=${OUT:-runs/gpu_check}
mkdir -p "$out"
export PYTHONPATH="$PWD/src:$carry${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"${PYTHON:-python3}" benchmarks/gpu_check.py --budget-s 420 --out "$out/gpu_check.json" \
  2>&1 | tee "$out/gpu_check.log"
