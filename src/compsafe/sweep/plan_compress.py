"""How long ``compress_model`` will take, from a few of the model's own blocks.

``compress/layers.py`` compresses one decoder block at a time, and the blocks of a
decoder are alike: its time is the calibration capture, then per block a calibrated
forward pass, the method's maths and (for every block but the last) a second forward
pass. So ``compression_seconds`` runs the real ``compress_sequential`` on the model with
its block list replaced by copies of its first three blocks, and notes when each block's
turn starts and ends (the loop moves a block to the device first and back last); then

    total = before the first block + (L - 1) x the second block's turn + the last turn
            + after it,

the second block because the first also pays one-off costs (kernel set-up). GBLM's
gradient pass (the whole model, forward and backward, per calibration sequence) is timed
on one sequence with one and with three block copies: a + L x b per sequence. Saving is
timed on the model cut to one block and scaled by the bytes of the whole. The originals
are never touched: the copies are compressed, and the block list is put back.

    seconds = compression_seconds(hf32.model, spec, tokens, device)
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from compsafe.compress.gradients import squared_gradient_sums
from compsafe.compress.layers import compress_sequential, find_blocks, target_linears
from compsafe.compress.spec import CompressionSpec

COPIES = 3
"""Blocks compressed per method: the first pays the one-off costs, the second is the
typical block, the last runs no second forward pass (as the model's last block)."""


@contextmanager
def block_copies(model: nn.Module, n: int) -> Iterator[nn.ModuleList]:
    """The model with its decoder blocks replaced by copies of its first ``n`` (yielded),
    the real block list put back afterwards."""
    name, blocks = find_blocks(model)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    copies = nn.ModuleList(copy.deepcopy(blocks[i]) for i in range(min(n, len(blocks))))
    setattr(parent, attr, copies)
    try:
        yield copies
    finally:
        setattr(parent, attr, blocks)


def _mark_moves(block: nn.Module, marks: list[float]) -> None:
    """Note the time of every ``block.to(...)`` call (an instance attribute shadows
    ``Module.to`` on this copy only)."""
    move = block.to

    def to(*args, **kwargs):
        marks.append(time.perf_counter())
        return move(*args, **kwargs)

    block.to = to


def n_blocks(model: nn.Module) -> int:
    return len(find_blocks(model)[1])


def all_targets(model: nn.Module, spec: CompressionSpec) -> dict[str, nn.Module]:
    """Every linear layer ``spec`` compresses, by name (as ``compress_model`` checks them)."""
    name, blocks = find_blocks(model)
    out = {}
    for i, block in enumerate(blocks):
        out.update(target_linears(model, name, block, i, spec))
    return out


def gradient_seconds(model: nn.Module, spec: CompressionSpec, tokens: torch.Tensor,
                     device) -> tuple[float, dict]:
    """GBLM's gradient pass over all ``tokens`` rows, and the gradients of the first
    ``COPIES`` blocks' layers from one row (what ``compression_seconds`` needs)."""
    layers = n_blocks(model)
    times, grads = {}, {}
    for n in sorted({1, min(COPIES, layers)}):
        with block_copies(model, n):
            t0 = time.perf_counter()
            grads = squared_gradient_sums(model, all_targets(model, spec), tokens[:1],
                                          device, progress=False)
            times[n] = time.perf_counter() - t0
    k = max(times)
    per_block = (times[k] - times[1]) / (k - 1) if k > 1 else times[1]
    per_block = max(per_block, times[k] / (k + 1))  # noise must not make blocks free
    fixed = max(times[1] - per_block, 0.0)
    return len(tokens) * (fixed + layers * per_block), grads


def compression_seconds(model: nn.Module, spec: CompressionSpec, tokens: torch.Tensor | None,
                        device, grads: dict | None = None, forward_dtype=torch.float32,
                        batch_size: int = 8) -> float:
    """Seconds ``compress_sequential`` takes on the whole model (module docstring)."""
    layers = n_blocks(model)
    with block_copies(model, COPIES) as copies:
        marks: list[list[float]] = [[] for _ in copies]
        for block, m in zip(copies, marks, strict=True):
            _mark_moves(block, m)
        t0 = time.perf_counter()
        compress_sequential(model, spec, tokens, torch.device(device), grads,
                            batch_size=batch_size, progress=False, forward_dtype=forward_dtype)
        t1 = time.perf_counter()
    k = len(copies)
    if any(len(m) != 2 for m in marks):  # the loop changed shape: scale the whole run
        return (t1 - t0) * layers / k
    turns = [m[1] - m[0] for m in marks]
    typical = turns[1] if k > 2 else turns[0]
    return (marks[0][0] - t0) + (layers - 1) * typical + turns[-1] + (t1 - marks[-1][1])


def _state_bytes(model: nn.Module) -> int:
    """Bytes of the distinct tensors of the state dict (a tied weight counted once)."""
    seen, total = set(), 0
    for t in model.state_dict().values():
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def save_seconds(model: nn.Module, tokenizer, save_bytes_per_param: float) -> float:
    """Seconds to save the whole model with ``save_bytes_per_param`` bytes per stored
    float32 value: the model cut to one block is saved to a temporary folder, and the
    time scaled by bytes."""
    full = _state_bytes(model)
    with block_copies(model, 1), tempfile.TemporaryDirectory(prefix="compsafe-plan-") as tmp:
        part = _state_bytes(model)
        t0 = time.perf_counter()
        model.save_pretrained(Path(tmp) / "model")
        tokenizer.save_pretrained(Path(tmp) / "model")
        took = time.perf_counter() - t0
    return took * (full / part) * (save_bytes_per_param / 4)
