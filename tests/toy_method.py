"""A user's own pruning method, written outside compsafe against its public API only.

``toyprune`` scores each weight by |w| times its input column's position (1, 2, ...), so
it prefers to keep later input columns, and prunes the lowest scores to the spec's sparsity
or N:M structure with compsafe's own mask helpers. No calibration data. It declares its own
limit on the sparsity (``validate``), which compsafe applies wherever a spec is built.
"""

from __future__ import annotations

import torch

from compsafe.compress import register_method, unregister_method
from compsafe.compress.masks import apply_mask, prune_mask
from compsafe.errors import OptionError

NAME = "toyprune"
MAX_SPARSITY = 0.9


def toyprune_layer(w: torch.Tensor, spec, stats=None, grad_sq=None) -> torch.Tensor:
    sparsity, nm = ((spec.sparsity, None) if spec.structure == "unstructured"
                    else (None, spec.nm))
    scores = w.abs() * torch.arange(1, w.shape[1] + 1, dtype=w.dtype, device=w.device)
    return apply_mask(w, prune_mask(scores, sparsity, nm))


def validate(spec) -> None:
    """Past 90% the position weights empty a layer's first input columns entirely."""
    if spec.sparsity is not None and spec.sparsity > MAX_SPARSITY:
        raise OptionError("sparsity", f"toyprune prunes at most {MAX_SPARSITY}, got "
                          f"{spec.sparsity}")


def register() -> None:
    register_method(NAME, toyprune_layer, family="pruning", validate=validate,
                    description="toy: |w| times the input column's position")


def unregister() -> None:
    unregister_method(NAME)
