"""Pruning maths (compress/masks, magnitude, wanda, sparsegpt, gblm) on small random tensors.

No model: each test builds a weight and calibration inputs, and checks achieved sparsity,
agreement with the papers' rules written out plainly, and SparseGPT's reconstruction error.
"""

from __future__ import annotations

import math

import pytest
import torch

from compsafe.compress.gblm import gblm_prune, gblm_scores
from compsafe.compress.magnitude import magnitude_prune, magnitude_scores
from compsafe.compress.masks import (
    layerwise_mask,
    lowest_k_mask,
    n_pruned,
    nm_mask,
    prune_mask,
    unstructured_mask,
)
from compsafe.compress.sparsegpt import sparsegpt_prune
from compsafe.compress.wanda import wanda_prune, wanda_scores

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def correlated_inputs(tokens: int, features: int, seed: int = 0) -> torch.Tensor:
    """Tokens with a random full covariance (plus a few loud features, as in LLMs)."""
    g = gen(seed)
    mix = torch.randn(features, features, generator=g) / math.sqrt(features)
    x = torch.randn(tokens, features, generator=g) @ mix
    return x * (1 + 4 * (torch.rand(features, generator=g) < 0.1))


def hessian(x: torch.Tensor) -> torch.Tensor:
    return 2 / x.shape[0] * x.T @ x


def recon_error(x, w, w_hat) -> float:
    return ((x @ w.T - x @ w_hat.T) ** 2).sum().item()


def nm_groups_ok(pruned: torch.Tensor, n: int, m: int) -> bool:
    zeros = (pruned == 0).reshape(pruned.shape[0], -1, m).sum(-1)
    return bool((zeros == m - n).all())


# --- masks --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 16), (5, 30), (3, 7)])
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.6, 0.9])
def test_unstructured_mask_exact_per_row(shape, sparsity):
    scores = torch.rand(shape, generator=gen(1))
    mask = unstructured_mask(scores, sparsity)
    k = round(sparsity * shape[1])
    assert (mask.sum(1) == k).all()
    # the pruned ones are the lowest of their row
    for row, m in zip(scores, mask, strict=True):
        if 0 < k < shape[1]:
            assert row[m].max() < row[~m].min()


def test_ties_are_broken_by_index_and_rounding_is_not_truncation():
    mask = unstructured_mask(torch.ones(2, 6), 0.5)
    assert mask.tolist() == [[True, True, True, False, False, False]] * 2
    assert nm_mask(torch.ones(1, 8), 2, 4).tolist() == [[True, True, False, False] * 2]
    assert n_pruned(100, 0.29) == 29  # int(0.29 * 100) would give 28


@pytest.mark.parametrize("nm", [(2, 4), (4, 8), (1, 4), (3, 8)])
def test_nm_mask_groups(nm):
    n, m = nm
    scores = torch.rand(6, 32, generator=gen(2))
    mask = nm_mask(scores, n, m)
    assert ((mask.reshape(6, -1, m)).sum(-1) == m - n).all()
    groups, gmask = scores.reshape(6, -1, m), mask.reshape(6, -1, m)
    assert (torch.where(gmask, groups, -1).amax(-1) < torch.where(gmask, 2, groups).amin(-1)).all()
    assert torch.equal(prune_mask(scores, 0.3, nm), mask)  # nm wins over sparsity


def test_nm_shape_error_names_the_shape():
    with pytest.raises(ValueError, match=r"\(4, 10\)"):
        nm_mask(torch.rand(4, 10), 2, 4)
    with pytest.raises(ValueError, match="0 < N < M"):
        nm_mask(torch.rand(4, 8), 4, 4)
    with pytest.raises(ValueError, match=r"\(4, 10\)"):
        sparsegpt_prune(torch.rand(4, 10), torch.eye(10), nm=(2, 4))
    with pytest.raises(ValueError, match="sparsity or an N:M"):
        prune_mask(torch.rand(4, 8), None, None)


@pytest.mark.parametrize("levels", [None, 3, 1])  # continuous, heavy ties, all equal
def test_selection_masks_equal_the_stable_sort_rule(levels):
    """The kthvalue selection picks exactly the first k of a stable ascending sort, row by
    row and over a whole matrix, whatever the ties."""
    scores = torch.rand(7, 40, generator=gen(11))
    if levels is not None:
        scores = (scores * levels).floor()
    for k in (0, 1, 13, 20, 39, 40):
        by_sort = torch.zeros_like(scores, dtype=torch.bool).scatter_(
            1, torch.sort(scores, dim=1, stable=True)[1][:, :k], True)
        assert torch.equal(lowest_k_mask(scores, k), by_sort), k
    flat = torch.zeros(scores.numel(), dtype=torch.bool)
    flat[torch.sort(scores.flatten(), stable=True)[1][: 7 * 12]] = True
    assert torch.equal(layerwise_mask(scores, 0.3), flat.view(scores.shape))


def test_layerwise_mask_same_count_single_threshold():
    scores = torch.rand(8, 20, generator=gen(3))
    mask = layerwise_mask(scores, 0.3)
    assert mask.sum() == 8 * n_pruned(20, 0.3)
    assert scores[mask].max() < scores[~mask].min()


# --- Wanda against the paper's rule, written out plainly ------------------------------------


def plain_wanda_mask(w, x, sparsity=None, nm=None):
    """Sun et al. 2024: per output row, S_ij = |W_ij| * ||X_j||_2; zero the lowest."""
    out_f, in_f = w.shape
    norms = [math.sqrt(sum(float(x[t, j]) ** 2 for t in range(x.shape[0]))) for j in range(in_f)]
    mask = [[False] * in_f for _ in range(out_f)]
    for i in range(out_f):
        s = [abs(float(w[i, j])) * norms[j] for j in range(in_f)]
        groups = (
            [range(in_f)] if nm is None else [range(g, g + nm[1]) for g in range(0, in_f, nm[1])]
        )
        for cols in groups:
            k = int(sparsity * in_f) if nm is None else nm[1] - nm[0]
            for j in sorted(cols, key=lambda j: s[j])[:k]:
                mask[i][j] = True
    return torch.tensor(mask)


@pytest.mark.parametrize("sparsity,nm", [(0.5, None), (None, (2, 4))])
def test_wanda_matches_paper_rule(sparsity, nm):
    w = torch.randn(8, 16, generator=gen(4))
    x = correlated_inputs(50, 16, seed=5)
    mask = prune_mask(wanda_scores(w, (x**2).sum(0), 50), sparsity, nm)
    assert torch.equal(mask, plain_wanda_mask(w, x, sparsity, nm))
    # the official scaler_row (sum x^2 / number of sequences) gives the same mask
    assert torch.equal(prune_mask(wanda_scores(w, (x**2).sum(0) / 7, 50), sparsity, nm), mask)
    pruned = wanda_prune(w, (x**2).sum(0), 50, sparsity, nm)
    assert torch.equal(pruned == 0, mask)


# --- SparseGPT --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layer():
    w = torch.randn(64, 128, generator=gen(6))
    x = correlated_inputs(512, 128, seed=7)
    return w, x, hessian(x)


def test_sparsegpt_exact_sparsity_and_beats_magnitude(layer):
    w, x, h = layer
    pruned = sparsegpt_prune(w, h, sparsity=0.5)
    assert (pruned == 0).sum() == 64 * 64
    mag = magnitude_prune(w, sparsity=0.5)
    assert recon_error(x, w, pruned) < 0.8 * recon_error(x, w, mag)

    pruned24 = sparsegpt_prune(w, h, nm=(2, 4))
    assert nm_groups_ok(pruned24, 2, 4)
    assert recon_error(x, w, pruned24) < 0.8 * recon_error(x, w, magnitude_prune(w, nm=(2, 4)))


@pytest.mark.parametrize("sparsity,blocksize", [(0.3, 32), (0.55, 48), (0.9, 128)])
def test_sparsegpt_exact_count_with_uneven_blocks(layer, sparsity, blocksize):
    w, _, h = layer
    w, h = w[:, :100], h[:100, :100]  # 100 columns: blocks of 32 or 48 do not divide it
    pruned = sparsegpt_prune(w, h, sparsity=sparsity, blocksize=blocksize)
    assert (pruned == 0).sum() == 64 * n_pruned(100, sparsity)


def test_sparsegpt_nm_odd_block_and_dead_input(layer):
    w, _, h = layer
    h = h.clone()
    h[5, :] = h[:, 5] = 0  # input 5 never fires
    pruned = sparsegpt_prune(w, h, nm=(3, 8), blocksize=20)  # rounded down to 16
    assert nm_groups_ok(pruned, 3, 8)
    assert (pruned[:, 5] == 0).all()


def test_sparsegpt_without_correlation_is_blockwise_magnitude():
    # H = I: no OBS updates, saliency w^2, one comparison group per block.
    w = torch.randn(16, 32, generator=gen(8))
    pruned = sparsegpt_prune(w, torch.eye(32), sparsity=0.5, blocksize=32, damp=0.0)
    assert torch.equal(pruned, magnitude_prune(w, sparsity=0.5, per_row=False))


# --- GBLM ------------------------------------------------------------------------------------


def test_gblm_scores_by_hand():
    w = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    act_sq_sum = torch.tensor([4.0, 9.0])  # over 4 sequences: sqrt(sum/4) = [1, 1.5]
    grad_sq_sum = torch.tensor([[1.0, 4.0], [0.0, 0.25]])  # l2 norms [[1, 2], [0, 0.5]]
    scores = gblm_scores(w, act_sq_sum, 40, grad_sq_sum, n_samples=4, alpha=100.0)
    expected = torch.tensor([[1 * (1 + 100), 2 * (1.5 + 200)], [3 * 1, 0.5 * (1.5 + 50)]])
    assert torch.allclose(scores, expected)
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        gblm_scores(w, act_sq_sum, 40, grad_sq_sum[:1], 4)


@pytest.mark.parametrize("sparsity,nm", [(0.5, None), (None, (2, 4)), (0.6, None)])
def test_gblm_without_gradient_is_wanda(sparsity, nm):
    w = torch.randn(8, 16, generator=gen(9))
    act = correlated_inputs(50, 16, seed=10).pow(2).sum(0)
    zero = torch.zeros_like(w)
    g = prune_mask(gblm_scores(w, act, 50, zero, 5), sparsity, nm)
    assert torch.equal(g, prune_mask(wanda_scores(w, act, 50), sparsity, nm))
    # and a gradient term does change the ranking
    grad = torch.rand(w.shape, generator=gen(11))
    assert not torch.equal(prune_mask(gblm_scores(w, act, 50, grad, 5), sparsity, nm), g)


# --- dtypes and devices ----------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_in_same_dtype_out(layer, dtype, device):
    w, x, h = layer
    w, h = w.to(device, dtype), h.to(device)
    act = (x**2).sum(0).to(device)
    outs = [
        magnitude_prune(w, 0.5),
        wanda_prune(w, act, 512, 0.5),
        gblm_prune(w, act, 512, torch.rand(w.shape, generator=gen(12)).to(device), 4, 0.5),
        sparsegpt_prune(w, h, 0.5),
    ]
    for out in outs:
        assert out.dtype == dtype and out.device == w.device
        assert (out == 0).sum() == 64 * 64
    assert magnitude_scores(w).dtype == torch.float32
