"""Device, dtype and thread choices for running models, and where a split model's inputs go.

CUDA when present (bf16 where supported, else fp16), otherwise CPU in fp32: bf16 matmuls
are several times slower than fp32 on CPUs without AVX-512/AMX. On CPU, torch threads are
capped at the cores this process may use; oversubscription costs 2-4x on small machines.

A model larger than one GPU is loaded with transformers' ``device_map`` (``"auto"``, or a
mapping of module names to devices), which places its modules on several devices and lets
accelerate's hooks move each module's inputs to it, and may offload some weights to the
CPU or disk (their parameters are then on the ``meta`` device until a forward streams them
in). So a model's first parameter no longer says where the inputs go: ``input_device`` asks
the input embeddings' hook, and ``index_device`` keeps index tensors on the CPU, which
indexes a tensor on any device.

    dev = input_device(model)          # where input_ids, masks and positions go
"""

from __future__ import annotations

import json
import os

import torch

from compsafe.errors import CompsafeError

DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given ("cpu", "cuda", "cuda:1", "mps"), else CUDA if available, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    """``requested`` by name, else bf16/fp16 on CUDA and fp32 elsewhere."""
    if requested and requested != "auto":
        if requested not in DTYPES:
            raise ValueError(f"unknown dtype {requested!r}; known: {', '.join(DTYPES)}")
        return DTYPES[requested]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def fast_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls beat fp32: CUDA with bf16 support, or a CPU with AMX or
    AVX512-BF16 (measured here: 2.8 vs 0.32 TFLOP/s on a 2-core AMX Xeon); elsewhere bf16
    is emulated and 6-8x slower than fp32 (DESIGN.md)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:  # not Linux: no cheap way to ask; stay with fp32
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def available_cores() -> int:
    """Cores this process may run on (respects affinity masks and cgroup-pinned CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def configure_cpu_threads() -> int:
    """Set torch's intra-op threads to the available cores (unless the user set OMP threads)."""
    n = int(os.environ.get("OMP_NUM_THREADS", 0)) or available_cores()
    torch.set_num_threads(n)
    return n


def parse_device_map(value) -> str | dict[str, str | int] | None:
    """A ``device_map`` as given on the command line or in a sweep config: None, one of
    ``DEVICE_MAP_STRATEGIES``, a mapping of module names to devices (``"cuda:0"``, ``0``,
    ``"cpu"``, ``"disk"``), or that mapping as a JSON object string."""
    if value is None or isinstance(value, dict):
        mapping = value
    elif not isinstance(value, str):
        raise CompsafeError(f"device_map: expected a strategy ({', '.join(DEVICE_MAP_STRATEGIES)})"
                            f" or a mapping of module names to devices, got {value!r}")
    elif value.lstrip().startswith("{"):
        try:
            mapping = json.loads(value)
        except json.JSONDecodeError as e:
            raise CompsafeError(f"device_map: not a JSON object: {e}: {value!r}") from None
    elif value in DEVICE_MAP_STRATEGIES:
        return value
    else:
        raise CompsafeError(f"device_map: unknown strategy {value!r}; known: "
                            f"{', '.join(DEVICE_MAP_STRATEGIES)}, or a JSON object of module "
                            "names to devices")
    if mapping is None:
        return None
    for name, dev in mapping.items():
        if not isinstance(name, str) or isinstance(dev, bool) or not isinstance(dev, (str, int)):
            raise CompsafeError(f"device_map: {name!r}: expected a device name or GPU index, "
                                f"got {dev!r}")
        if isinstance(dev, str) and dev != "disk":
            try:
                torch.device(dev)
            except RuntimeError:
                raise CompsafeError(f"device_map: {name!r}: unknown device {dev!r}") from None
    return dict(mapping)


def _as_device(dev) -> torch.device:
    return torch.device("cuda", dev) if isinstance(dev, int) else torch.device(dev)


def input_device(model) -> torch.device:
    """Where ``model``'s inputs go: its input embeddings' device.

    Under a ``device_map`` the embeddings carry accelerate's hook, whose execution device is
    where they run even when their weights are offloaded (on ``meta``); else the model's own
    hook (its main device); else the embedding weights' device (a model on one device), or
    for a module without embeddings (a wrapper), its first parameter's.
    """
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    for module in (emb, model):
        dev = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
        if dev is not None:
            return _as_device(dev)
    return emb.weight.device if emb is not None else next(model.parameters()).device


def is_split(model) -> bool:
    """Whether ``model`` was dispatched over more than one device (CPU/disk offload counts)."""
    return len(set(map(str, (getattr(model, "hf_device_map", None) or {}).values()))) > 1


def index_device(model) -> torch.device:
    """Where index tensors such as ``logits_to_keep`` go: the input device, or the CPU for a
    split model, whose last hidden states may sit on another GPU than its inputs (a CPU
    index tensor indexes a tensor on any device; a CUDA one only tensors on its own GPU)."""
    return torch.device("cpu") if is_split(model) else input_device(model)
