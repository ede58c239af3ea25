"""Pruning masks from importance scores: unstructured (per output row) and N:M.

A mask is a bool tensor shaped like the weight, ``True`` = prune (set to zero). Scores are
"higher = more important"; the lowest-scoring weights are pruned. Ties are broken
deterministically: among equal scores the lower input index is pruned first (stable sort).

The comparison group of unstructured pruning is one output row, as in Wanda (Sun et al.,
2024, §3): each row of an ``(out, in)`` matrix loses exactly ``n_pruned(in, sparsity)``
weights, so every layer loses exactly ``out * n_pruned(in, sparsity)``. N:M pruning
(Mishra et al., 2021, "Accelerating Sparse Deep Neural Networks") keeps ``n`` of every
``m`` consecutive weights along the input dimension.

    weight[prune_mask(wanda_scores(weight, act_sq_sum, n_tokens), 0.5, None)] = 0
"""

from __future__ import annotations

import torch
from torch import Tensor

from compsafe.errors import CompsafeError


class PruningError(CompsafeError, ValueError):
    """An impossible pruning request (bad shape, ratio or N:M); the message names it."""


def n_pruned(in_features: int, sparsity: float) -> int:
    """Weights pruned per row: ``round(sparsity * in_features)`` (Python round, half to even).

    Rounding, not truncation, so that e.g. 0.29 * 100 = 28.999... still prunes 29. The
    orchestration uses the same function to verify achieved sparsity.
    """
    if not 0 <= sparsity <= 1:
        raise PruningError(f"sparsity must be in [0, 1], got {sparsity}")
    return int(round(sparsity * in_features))


def _check_2d(scores: Tensor) -> None:
    if scores.dim() != 2:
        raise PruningError(f"scores must be 2-D (out, in), got shape {tuple(scores.shape)}")


def lowest_k_mask(scores: Tensor, k: int) -> Tensor:
    """True at the ``k`` lowest scores of each row, ties going to the lower index.

    The same set as the first ``k`` of a stable ascending sort, found with a selection
    (``kthvalue``) instead: the k-th value is the threshold, every score below it is
    taken, and of the scores equal to it the leftmost ones fill the remaining places. The
    result is independent of the device and kernel, and twice as fast as sorting.
    """
    scores = scores.float()
    if k == 0:
        return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    threshold = scores.kthvalue(k, dim=-1, keepdim=True).values
    below = scores < threshold
    at = scores == threshold
    room = k - below.sum(-1, keepdim=True)
    return below | (at & (at.cumsum(-1) <= room))


def unstructured_mask(scores: Tensor, sparsity: float) -> Tensor:
    """Prune the ``round(sparsity * in)`` lowest-scoring weights of each output row.

    mask[i, j] = True  iff  j is among the k lowest of scores[i, :] (stable order), k = n_pruned.
    """
    _check_2d(scores)
    return lowest_k_mask(scores, n_pruned(scores.shape[1], sparsity))


def layerwise_mask(scores: Tensor, sparsity: float) -> Tensor:
    """Prune the ``out * round(sparsity * in)`` lowest scores of the whole matrix.

    The comparison group of the magnitude baseline in the SparseGPT and Wanda repositories
    (one threshold per layer, not per row). Same per-layer count as ``unstructured_mask``.
    """
    _check_2d(scores)
    k = scores.shape[0] * n_pruned(scores.shape[1], sparsity)
    return lowest_k_mask(scores.reshape(1, -1), k).view(scores.shape)


def check_nm(in_features: int, n: int, m: int, shape: tuple | None = None) -> None:
    """Raise ``PruningError`` unless 0 < n < m and m divides ``in_features``."""
    if not 0 < n < m:
        raise PruningError(f"N:M sparsity needs 0 < N < M, got {n}:{m}")
    if in_features % m:
        what = f"weight of shape {tuple(shape)}" if shape is not None else "weight"
        raise PruningError(
            f"{n}:{m} sparsity needs in_features divisible by {m}; {what} has "
            f"in_features={in_features}"
        )


def nm_mask(scores: Tensor, n: int, m: int) -> Tensor:
    """In every group of ``m`` consecutive inputs of a row, prune the ``m - n`` lowest scores.

    Groups are columns [g*m, (g+1)*m); exactly m - n weights per group are masked.
    """
    _check_2d(scores)
    out_f, in_f = scores.shape
    check_nm(in_f, n, m, scores.shape)
    groups = scores.float().reshape(out_f, in_f // m, m)
    order = torch.sort(groups, dim=2, stable=True)[1][..., : m - n]
    mask = torch.zeros(groups.shape, dtype=torch.bool, device=scores.device)
    return mask.scatter_(2, order, True).reshape(out_f, in_f)


def apply_mask(weight: Tensor, mask: Tensor) -> Tensor:
    """A copy of ``weight`` (same dtype and device) with the masked entries set to zero."""
    if mask.shape != weight.shape:
        raise PruningError(f"mask shape {tuple(mask.shape)} != weight shape {tuple(weight.shape)}")
    return weight.masked_fill(mask, 0)


def prune_mask(scores: Tensor, sparsity: float | None, nm: tuple[int, int] | None) -> Tensor:
    """N:M mask if ``nm`` is given, else the per-row unstructured mask at ``sparsity``."""
    if nm is not None:
        return nm_mask(scores, *nm)
    if sparsity is None:
        raise PruningError("give either a sparsity or an N:M structure")
    return unstructured_mask(scores, sparsity)
