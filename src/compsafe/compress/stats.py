"""Linear layers of a block and the calibration statistics their compression needs.

Forward hooks on each ``nn.Linear`` (and GPT-2's ``Conv1D``, whose weight is stored
transposed as (in, out)) accumulate, over every calibration token x (a row of the layer's
input):

* ``act``: ``act_sq_sum = sum_t x_t**2`` per input feature and ``n_tokens`` (Wanda, Sun et
  al. 2024; GBLM-Pruner, Das et al. 2023);
* ``hessian``: ``X^T X``, exposed as ``H = 2/n X^T X`` with n the number of calibration
  sequences, as SparseGPT (Frantar & Alistarh 2023) and GPTQ (Frantar et al. 2023)
  accumulate it;
* ``inputs``: the input rows of the first ``max_tokens`` tokens (AWQ, Lin et al. 2024,
  searches its scales on them), and an input key that tells which layers share one input.

All sums are float32 whatever the model dtype (fp16 sums of squares overflow), and run
outside any autocast region. Layers that share one input tensor (q/k/v, gate/up) share its
per-batch squares and X^T X, computed once.

    with collect(linears, {"act"}) as stats: run_block(block, inputs)
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

try:  # GPT-2 style layers: y = x @ W + b with W (in, out)
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover - transformers always ships it today
    Conv1D = ()

NEEDS = ("act", "hessian", "inputs")


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (bool(Conv1D) and isinstance(module, Conv1D))


def find_linears(module: nn.Module, prefix: str = "") -> dict[str, nn.Module]:
    """Every linear layer under ``module`` by qualified name, in registration order."""
    dot = f"{prefix}." if prefix else ""
    return {dot + name: m for name, m in module.named_modules() if name and is_linear(m)}


def in_features(module: nn.Module) -> int:
    return module.weight.shape[0] if bool(Conv1D) and isinstance(module, Conv1D) \
        else module.weight.shape[1]


def get_weight(module: nn.Module) -> Tensor:
    """A float32 copy of the weight as (out, in) (never a view: callers keep the original)."""
    w = module.weight.detach()
    if bool(Conv1D) and isinstance(module, Conv1D):
        w = w.t()
    return w.to(torch.float32, copy=True)


def set_weight(module: nn.Module, weight: Tensor) -> None:
    """Write an (out, in) weight back in the module's own layout and dtype."""
    if bool(Conv1D) and isinstance(module, Conv1D):
        weight = weight.t()
    module.weight.data.copy_(weight.to(module.weight.dtype))


@dataclass
class LayerStats:
    """Statistics of one linear layer's inputs over the calibration set."""

    n_tokens: int = 0
    n_samples: int = 0
    act_sq_sum: Tensor | None = None
    xtx: Tensor | None = None
    inputs: list[Tensor] = field(default_factory=list)
    input_key: tuple | None = None

    @property
    def hessian(self) -> Tensor:
        """``2/n X^T X`` with n = calibration sequences (the SparseGPT/GPTQ scaling)."""
        return self.xtx * (2.0 / max(self.n_samples, 1))

    def stored_inputs(self) -> Tensor:
        return torch.cat(self.inputs) if self.inputs else torch.empty(0)


def _same_tensor(a: Tensor, b: Tensor) -> bool:
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape
                      and a.stride() == b.stride())


class _LastInput:
    """Per-batch quantities of the last input tensor the hooks saw.

    Layers fed the very same tensor (q/k/v, gate/up) are called one after another, so
    caching the last input's float32 rows, squares and X^T X computes each once per batch
    instead of once per layer. Holding the tensor keeps its address from being reused by a
    different one while it is cached.
    """

    def __init__(self):
        self.tensor: Tensor | None = None
        self.values: dict[str, Tensor] = {}

    def get(self, x: Tensor, key: str, compute) -> Tensor:
        if self.tensor is None or not _same_tensor(self.tensor, x):
            self.tensor, self.values = x, {}
        if key not in self.values:
            self.values[key] = compute()
        return self.values[key]

    def clear(self) -> None:
        self.tensor, self.values = None, {}


def _hook(stats: LayerStats, needs: set[str], max_tokens: int, seen: list[Tensor],
          last: _LastInput):
    def accumulate(x_in: Tensor) -> None:
        if "inputs" in needs and stats.input_key is None:
            # Layers fed the very same tensor (q/k/v, gate/up) share an input: AWQ groups
            # them. ``seen`` keeps each first input alive until collection ends, so a later
            # tensor cannot reuse a freed address and be mistaken for an earlier one.
            match = next((i for i, t in enumerate(seen) if _same_tensor(t, x_in)), None)
            if match is None:
                seen.append(x_in)
                match = len(seen) - 1
            stats.input_key = (match,)
        stats.n_tokens += x_in.numel() // x_in.shape[-1]
        stats.n_samples += x_in.shape[0] if x_in.dim() > 2 else 1
        x = last.get(x_in, "rows", lambda: x_in.reshape(-1, x_in.shape[-1]).float())
        # The cached per-batch values are shared between layers: accumulators start as
        # copies and are only ever updated in place after that.
        if "act" in needs:
            sq = last.get(x_in, "act", lambda: (x * x).sum(0))
            if stats.act_sq_sum is None:
                stats.act_sq_sum = sq.clone()
            else:
                stats.act_sq_sum.add_(sq)
        if "hessian" in needs:
            xtx = last.get(x_in, "hessian", lambda: x.T @ x)
            if stats.xtx is None:
                stats.xtx = xtx.clone()
            else:
                stats.xtx.add_(xtx)
        if "inputs" in needs:
            have = sum(t.shape[0] for t in stats.inputs)
            if have < max_tokens:
                stats.inputs.append(x[: max_tokens - have].clone())

    def hook(module, args, output):
        # The forward may run in bf16 (``layers.cast_parameters``); the statistics must
        # not: X^T X in bf16 would lose the precision SparseGPT/GPTQ rely on.
        with torch.autocast(args[0].device.type, enabled=False):
            accumulate(args[0].detach())

    return hook


@contextmanager
def collect(linears: dict[str, nn.Module], needs: set[str], max_tokens: int = 16384):
    """Hook ``linears`` while the body runs calibration data; yields name -> LayerStats."""
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"unknown statistics {sorted(unknown)}; known: {NEEDS}")
    stats = {name: LayerStats() for name in linears}
    seen: list[Tensor] = []
    last = _LastInput()
    handles = [m.register_forward_hook(_hook(stats[n], set(needs), max_tokens, seen, last))
               for n, m in linears.items()]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()
        seen.clear()
        last.clear()


def shared_input_groups(stats: dict[str, LayerStats]) -> list[list[str]]:
    """Layer names grouped by identical input tensor, groups in first-use order."""
    groups: dict[tuple, list[str]] = {}
    for name, s in stats.items():
        groups.setdefault(s.input_key or (name,), []).append(name)
    return list(groups.values())
