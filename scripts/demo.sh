#!/usr/bin/env bash
# The main job on the embedded default: did compressing SmolLM2-135M-Instruct (Wanda 50% and
# GPTQ 4-bit) make it less safe, for whom, and how sure are we? Sets up .venv (its log goes
# to .venv-setup.log), imports the data, and runs `compsafe study`: compress, evaluate BBQ
# (all 11 categories), RealToxicityPrompts (scored offline), the AAVE/SAE dialect gap and
# WikiText-2 on all three models, build the paired report, print the verdict.
# SCALE=N multiplies every item limit; OUT=DIR moves the results; other arguments go to
# `compsafe study` (e.g. --compress magnitude-50,sparsegpt-2:4). A re-run resumes.
# Data: imported from ../shared/data (or $COMPSAFE_MIRROR) when present, else downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
DATASETS=(--dataset bbq --dataset realtoxicityprompts --dataset aave_corpora
          --dataset aave_sae_pairs --dataset twitteraae --dataset wikitext2)
MIRROR="${COMPSAFE_MIRROR:-../shared/data}"
if [ -d "$MIRROR" ]; then
  compsafe -q data pull --from "$MIRROR" "${DATASETS[@]}"
else
  compsafe -q data pull "${DATASETS[@]}"
fi
exec compsafe study --scale "${SCALE:-1}" --out "${OUT:-runs/study}" "$@"
