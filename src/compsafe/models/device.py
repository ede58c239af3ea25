"""Device, dtype and thread choices for running models.

CUDA when present (bf16 where supported, else fp16), otherwise CPU in fp32: bf16 matmuls
are several times slower than fp32 on CPUs without AVX-512/AMX. On CPU, torch threads are
capped at the cores this process may use; oversubscription costs 2-4x on small machines.
"""

from __future__ import annotations

import os

import torch

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
