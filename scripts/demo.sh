#!/usr/bin/env bash
# The main job on the embedded default: set up, import the data, evaluate representational
# harm (BBQ: 100 per category row, UnQover: 100 per class; LIMIT=N changes it) of
# SmolLM2-135M-Instruct, print metrics with 95% CIs, write runs/.
# Data: imported from ../shared/data (or $COMPSAFE_MIRROR) when present, else downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
MIRROR="${COMPSAFE_MIRROR:-../shared/data}"
if [ -d "$MIRROR" ]; then
  compsafe data pull --from "$MIRROR" --dataset bbq --dataset unqover
else
  compsafe data pull --dataset bbq --dataset unqover
fi
compsafe eval --model default --tasks bbq,unqover --limit "${LIMIT:-100}" --out "${OUT:-runs/}" "$@"
