"""Content fingerprints of a model: its weights as loaded plus its tokenizer.

``fingerprint_tensors`` is the one definition: sha256 over the state dict in name order
(name, dtype, shape, raw bytes), then the vocabulary and the chat template. It is part of
every run key, so results of a dense model can never be served for a compressed one.

``checkpoint_fingerprint`` computes the same value for a safetensors checkpoint loaded in
float32 *without loading the model*: it reads one tensor at a time, so fingerprinting a
70B checkpoint costs one tensor of memory instead of 280 GB. ``compress --method llm_int8``
needs the dense model's fingerprint (to pair the result with its dense runs) but never
the dense model itself. Where the checkpoint's names do not map one to one onto the
model's state dict (renamed legacy keys, persistent buffers that are not saved), it
returns None and the caller loads the model instead.

    fp = checkpoint_fingerprint("models/llama", tokenizer) or HFModel.load(...).fingerprint()
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from itertools import groupby
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"


def fingerprint_tensors(named: Iterable[tuple[str, torch.Tensor]], tokenizer) -> str:
    """The fingerprint of (name, tensor) pairs *in name order* and ``tokenizer``.

    The pairs are consumed one at a time, so a generator that reads each tensor from disk
    keeps only one in memory.
    """
    h = hashlib.sha256()
    for name, tensor in named:
        t = tensor.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    vocab = sorted(tokenizer.get_vocab().items())
    h.update(repr(vocab).encode())
    h.update(repr(getattr(tokenizer, "chat_template", None)).encode())
    return h.hexdigest()[:20]


def model_state(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``model``'s state dict in name order, with the tensors that a ``device_map`` offloaded
    (accelerate keeps them on ``meta`` and streams them in per forward) read back.

    Offloaded tensors are onloaded one hooked module at a time (``align_module_device``):
    a block's names are consecutive in name order, so each block is read once and only one
    is in memory. The values equal those of the same model loaded on one device, so its
    fingerprint does too.
    """
    state = model.state_dict()
    if not any(t.device.type == "meta" for t in state.values()):
        yield from sorted(state.items())
        return
    from accelerate.utils import align_module_device, has_offloaded_params

    hooked = {name: mod for name, mod in model.named_modules() if has_offloaded_params(mod)}

    def owner(name: str) -> str | None:
        if state[name].device.type != "meta":
            return None
        parts = name.split(".")
        for i in range(len(parts) - 1, -1, -1):
            prefix = ".".join(parts[:i])
            if prefix in hooked:
                return prefix
        raise RuntimeError(f"{name} is on the meta device but no offload hook holds it")

    for prefix, names in groupby(sorted(state), key=owner):
        if prefix is None:
            yield from ((n, state[n]) for n in names)
            continue
        module = hooked[prefix]
        with align_module_device(module, "cpu"):
            onloaded = module.state_dict()
            for n in names:
                yield n, onloaded[n[len(prefix) + 1:] if prefix else n]


def _weight_files(model_dir: Path) -> dict[str, Path] | None:
    """Checkpoint tensor name -> the safetensors file holding it, or None if not safetensors."""
    if (model_dir / _INDEX).is_file():
        weight_map = json.loads((model_dir / _INDEX).read_text())["weight_map"]
        return {name: model_dir / file for name, file in weight_map.items()}
    if (model_dir / _SINGLE).is_file():
        from safetensors import safe_open

        with safe_open(model_dir / _SINGLE, "pt") as f:
            return dict.fromkeys(f.keys(), model_dir / _SINGLE)
    return None


def _alias_groups(model: torch.nn.Module) -> dict[str, list[str]]:
    """Every state-dict name -> all names sharing its tensor (tied weights), on a meta model."""
    by_tensor: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_tensor.setdefault(id(p), []).append(name)
    groups = {}
    for names in by_tensor.values():
        for n in names:
            groups[n] = names
    return groups


class _Mismatch(Exception):
    """The checkpoint does not match the model's state dict one to one."""


def _expected_state(config) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """The float32 model's state dict as meta tensors (names, shapes, dtypes; no memory),
    and its tied-weight groups."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.state_dict(), _alias_groups(model)


def checkpoint_fingerprint(source: str | Path, tokenizer) -> str | None:
    """``HFModel.load(source, dtype="float32").fingerprint()``, one tensor at a time.

    ``source`` is a model directory or a hub id (its cached snapshot, ``local_checkpoint_dir``).
    None when no local checkpoint is at hand, it is not in safetensors, it is quantized, or
    its names do not account for every entry of the model's state dict.
    """
    from safetensors import safe_open
    from transformers import AutoConfig

    model_dir = local_checkpoint_dir(str(source))
    if model_dir is None or not (model_dir / "config.json").is_file():
        return None
    files = _weight_files(model_dir)
    if files is None:
        return None
    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
        if getattr(config, "quantization_config", None) is not None:
            return None
        expected, aliases = _expected_state(config)
    except (OSError, ValueError, RuntimeError, TypeError, NotImplementedError, KeyError) as e:
        log.info("%s: cannot build the model skeleton (%s); fingerprinting the loaded model",
                 model_dir, e)
        return None
    where: dict[str, str] = {}  # state-dict name -> checkpoint name holding its tensor
    for name in expected:
        stored = next((a for a in aliases.get(name, [name]) if a in files), None)
        if stored is None:
            log.info("%s: %s is not in the checkpoint; fingerprinting the loaded model",
                     model_dir, name)
            return None
        where[name] = stored

    def tensors():
        handles = {}  # one open file per shard, read lazily
        for name in sorted(expected):
            path = files[where[name]]
            if path not in handles:
                handles[path] = safe_open(path, "pt")
            t = handles[path].get_tensor(where[name])
            want = expected[name]
            if tuple(t.shape) != tuple(want.shape):
                raise _Mismatch(f"{name}: checkpoint shape {tuple(t.shape)}, model "
                                f"{tuple(want.shape)}")
            # from_pretrained(dtype=float32) casts floating tensors and keeps the rest.
            yield name, t.to(want.dtype) if t.is_floating_point() else t

    try:
        return fingerprint_tensors(tensors(), tokenizer)
    except _Mismatch as e:
        log.info("%s: %s; fingerprinting the loaded model", model_dir, e)
        return None


def local_checkpoint_dir(source: str) -> Path | None:
    """``source`` itself if it is a directory; for a hub id, its snapshot in the Hugging Face
    cache (config, tokenizer and safetensors files only, the ones ``from_pretrained``
    fetches anyway); None when neither is at hand."""
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors",
                                                              "*.model", "*.txt"]))
    except Exception as e:  # offline, gated, missing: the caller loads the model instead
        log.info("no local snapshot of %s (%s)", source, e)
        return None
