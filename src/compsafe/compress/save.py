"""Writing a compressed model: a plain Hugging Face directory plus ``compression.json``.

The directory (safetensors weights, config, tokenizer) loads with
``AutoModelForCausalLM.from_pretrained`` and ``compsafe eval --model DIR``. It is written
to a temporary sibling and renamed into place, so an interrupted run never leaves a
half-written model that a later evaluation would trust. A tied ``lm_head`` stays tied:
``save_pretrained`` stores the shared tensor once and the config keeps
``tie_word_embeddings``.

    save_model_dir(model, tokenizer, info, Path("models/wanda-50"))
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from compsafe.compress.lineage import INFO_FILE
from compsafe.errors import CompsafeError
from compsafe.tmpdirs import temp_sibling

AWQ_SCALES_FILE = "awq_scales.safetensors"


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Fail early (before any model loads) if ``out_dir`` exists and may not be replaced."""
    if out_dir.exists() and not overwrite:
        raise CompsafeError(f"output directory already exists: {out_dir} "
                            "(remove it, choose another --out, or pass --overwrite)")


@contextmanager
def hf_progress_bars(enabled: bool):
    """transformers' own bars ("Loading weights", "Writing model shards") on or off."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if before and not enabled:
            hf_logging.enable_progress_bar()


def save_model_dir(model, tokenizer, info: dict, out_dir: Path, overwrite: bool = False,
                   extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Save model, tokenizer, ``compression.json`` (and AWQ scales) atomically at ``out_dir``."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)
    tmp = temp_sibling(out_dir)  # also removes the leftovers of a killed earlier save
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if extra_tensors:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in extra_tensors.items()},
                      str(tmp / AWQ_SCALES_FILE))
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=False) + "\n")
        _publish_modes(tmp)
        if out_dir.exists():  # overwrite: only now, with the replacement complete
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _publish_modes(folder: Path) -> None:
    """Ordinary permissions (umask applied): mkdtemp makes the folder private (0700)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.rglob("*"):
        f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA's allocator statistics, and on Linux the RSS high-water mark."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:  # "5" resets VmHWM to the current RSS (Linux >= 4.0); ru_maxrss is not reset
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _vm_hwm() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def peak_memory(device: torch.device) -> dict:
    """CUDA max allocated on a GPU run, else the process's max RSS (``getrusage``, which
    includes loading and saving); ``since_reset_bytes`` is the RSS high-water mark since
    the last ``reset_peak_memory`` where Linux reports it (the compression phase alone)."""
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "bytes": int(torch.cuda.max_memory_allocated(device))}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024  # Linux: KiB, macOS: bytes
    return {"kind": "process_max_rss", "bytes": int(rss_bytes), "since_reset_bytes": _vm_hwm()}


def versions() -> dict:
    import transformers

    from compsafe import __version__

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "compsafe": __version__, "python": sys.version.split()[0]}
