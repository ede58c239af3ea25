"""SparseGPT: one-shot pruning with OBS weight updates (Frantar & Alistarh, ICML 2023,
"SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot").

For a linear layer with weight W (out, in) and calibration inputs X (tokens, in), the
layer-wise problem is min ||X W^T - X What^T||^2 over What with the target sparsity.
With H = 2/n X^T X (n = number of calibration sequences, as the official code
accumulates it) and [H^-1] its inverse, the algorithm (paper Alg. 1, official
``SparseGPT.fasterprune`` in IST-DASLab/sparsegpt) is:

* dead inputs (H_jj = 0) get H_jj = 1 and W[:, j] = 0; dampening
  H += damp * mean(diag H) * I;
* U = upper Cholesky factor of H^-1 (so row j of U holds the OBS update of column j
  given that columns < j are already fixed);
* columns are visited left to right in blocks of ``blocksize``. Unstructured: at the start
  of each block, the block's mask is chosen over the whole block (all rows together) by
  the OBS saliency  w_ij^2 / U_jj^2  of the current, already updated weights. N:M: the mask
  of every m columns is chosen when the first of them is reached, per row (prune the m-n
  lowest saliencies). Then for each column j: q = w with masked entries zeroed,
  err = (w - q) / U_jj, and the remaining columns of the block get W[:, k] -= err * U_jk;
  after the block, the later columns get the block's accumulated update (lazy batching).

Achieved sparsity. The official code prunes ``tmp <= thresh`` with thresh the
int(numel * s)-th smallest saliency, i.e. one extra weight per block plus any ties. Here
each block gets an exact quota, taken from a stable sort of its saliencies, and the quotas
sum to ``out * masks.n_pruned(in, sparsity)`` per layer (the per-layer count of the other
methods). Per-row counts vary, as in the paper: the comparison group is the block. N:M
leaves exactly m-n zeros in every group. Extra zeros can only come from dead inputs whose
count exceeds a block's quota; a kept nonzero weight that would underflow to 0 in the
output dtype is rounded away from zero instead.

    pruned = sparsegpt_prune(weight, hessian, sparsity=0.5)   # or nm=(2, 4)
"""

from __future__ import annotations

import torch
from torch import Tensor

from compsafe.compress.masks import PruningError, check_nm, n_pruned


def _inverse_cholesky(hessian: Tensor, damp: float, shape: tuple) -> Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1."""
    h = hessian
    h.diagonal().add_(damp * h.diagonal().mean())
    lower, info = torch.linalg.cholesky_ex(h)
    if info.item() == 0:
        upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
    if info.item() != 0:
        raise PruningError(
            f"SparseGPT: the Hessian of the layer with weight shape {shape} is not positive "
            f"definite after dampening {damp}; use a larger damping"
        )
    return upper


def keep_nonzero_cast(w: Tensor, mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast to ``dtype``; kept weights that underflow to 0 become the smallest subnormal."""
    out = w.to(dtype)
    lost = (out == 0) & (w != 0) & ~mask
    if lost.any():
        tiny = torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps
        out[lost] = (torch.sign(w[lost]) * tiny).to(dtype)
    return out


def sparsegpt_prune(
    weight: Tensor,
    hessian: Tensor,
    sparsity: float | None = None,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    damp: float = 0.01,
) -> Tensor:
    """The pruned and OBS-updated copy of ``weight`` (same dtype and device).

    ``hessian`` (in, in): 2/n * sum over calibration tokens of x x^T (any positive scale
    works: dampening is relative). ``nm`` wins over ``sparsity`` when both are given, as in
    ``masks.prune_mask``. For N:M the block size is rounded down to a multiple of m (at
    least m) so groups never straddle blocks.
    """
    if weight.dim() != 2:
        raise PruningError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    shape = tuple(weight.shape)
    if hessian.shape != (cols, cols):
        raise PruningError(
            f"hessian must have shape ({cols}, {cols}) for weight {shape}, got "
            f"{tuple(hessian.shape)}"
        )
    if blocksize <= 0 or not 0 <= damp < 1:
        raise PruningError(f"need blocksize > 0 and damp in [0, 1), got {blocksize}, {damp}")
    total, n, m = 0, 0, 1
    if nm is not None:
        n, m = nm
        check_nm(cols, n, m, shape)
        blocksize = max(m, blocksize // m * m)
    elif sparsity is None:
        raise PruningError("give either a sparsity or an N:M structure")
    else:
        total = rows * n_pruned(cols, sparsity)

    w = weight.detach().float().clone()
    h = hessian.detach().to(device=w.device, dtype=torch.float32).clone()
    dead = torch.nonzero(h.diagonal() == 0).flatten()
    h[dead, dead] = 1  # an input that is always zero: its weights do not affect the output
    w[:, dead] = 0
    hinv = _inverse_cholesky(h, damp, shape)
    mask = torch.zeros_like(w, dtype=torch.bool)

    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        d = hinv1.diagonal()
        mask1 = torch.zeros_like(w1, dtype=torch.bool)
        if nm is None:
            # This block's share of the layer total, by cumulative rounding, so the shares
            # add up exactly whatever the block sizes.
            quota = (total * i2 + cols // 2) // cols - (total * i1 + cols // 2) // cols
            saliency = (w1**2 / d.unsqueeze(0) ** 2).flatten()
            chosen = torch.sort(saliency, stable=True)[1][:quota]
            mask1.view(-1)[chosen] = True
        for i in range(i2 - i1):
            if nm is not None and i % m == 0:
                saliency = w1[:, i : i + m] ** 2 / d[i : i + m].unsqueeze(0) ** 2
                lowest = torch.sort(saliency, dim=1, stable=True)[1][:, : m - n]
                mask1[:, i : i + m].scatter_(1, lowest, True)
            col = w1[:, i]
            q = col.masked_fill(mask1[:, i], 0)
            e = (col - q) / d[i]
            # OBS: compensate the error of pruning column i on the block's later columns.
            w1[:, i:].sub_(e.unsqueeze(1) * hinv1[i, i:].unsqueeze(0))
            w1[:, i] = q
            err1[:, i] = e
        w[:, i1:i2] = w1
        mask[:, i1:i2] = mask1
        w[:, i2:].sub_(err1 @ hinv[i1:i2, i2:])

    w.masked_fill_(mask, 0)  # exact zeros, whatever rounding the updates left behind
    return keep_nonzero_cast(w, mask, weight.dtype)
