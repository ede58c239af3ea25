"""One block's linear layers through the pure compression maths, per ``CompressionSpec``.

The glue between the calibration statistics (``stats.py``) and the one-file-per-method
maths: magnitude (Han et al. 2015), Wanda (Sun et al. 2024), SparseGPT (Frantar &
Alistarh 2023), GBLM-Pruner (Das et al. 2023), RTN, GPTQ (Frantar et al. 2023) and AWQ
(Lin et al. 2024). All layers of a block are compressed from the statistics of one pass of
the *dense* block (the Wanda and SparseGPT default; GPTQ's optional "true sequential" order,
which re-collects statistics after each sub-layer group, is not implemented).

    reports, extras = compress_linears(linears, stats, spec, grads)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from compsafe.compress.awq import awq_apply, awq_search_clip, awq_search_scale
from compsafe.compress.gblm import gblm_scores
from compsafe.compress.gptq import gptq_quantize
from compsafe.compress.magnitude import magnitude_scores
from compsafe.compress.masks import apply_mask, prune_mask
from compsafe.compress.quant import output_sq_error
from compsafe.compress.registry import method_apply, method_info
from compsafe.compress.rtn import rtn_quantize
from compsafe.compress.sparsegpt import sparsegpt_prune
from compsafe.compress.spec import CompressionSpec
from compsafe.compress.stats import LayerStats, get_weight, set_weight, shared_input_groups
from compsafe.compress.wanda import wanda_scores

# llm-awq does not clip layers whose outputs become attention scores (queries and keys):
# clipping them hurts more than it helps. Matched on module-name fragments, as llm-awq does.
_NO_CLIP = ("q_proj", "k_proj", "query", "key", "qkv", "c_attn", "Wqkv")


def needs(spec: CompressionSpec) -> set[str]:
    """The calibration statistics ``spec``'s method declared (``compress/registry.py``)."""
    return set(method_info(spec.method).needs)


def _prune_args(spec: CompressionSpec) -> tuple[float | None, tuple[int, int] | None]:
    if spec.structure == "unstructured":
        return spec.sparsity, None
    return None, spec.nm


# -- the built-in methods' layer functions: (w, spec, stats, grad_sq) -> new w ------------

def magnitude_layer(w: Tensor, spec: CompressionSpec, stats=None, grad_sq=None) -> Tensor:
    sparsity, nm = _prune_args(spec)
    return apply_mask(w, prune_mask(magnitude_scores(w), sparsity, nm))


def wanda_layer(w: Tensor, spec: CompressionSpec, stats: LayerStats, grad_sq=None) -> Tensor:
    sparsity, nm = _prune_args(spec)
    return apply_mask(w, prune_mask(wanda_scores(w, stats.act_sq_sum, stats.n_tokens),
                                    sparsity, nm))


def gblm_layer(w: Tensor, spec: CompressionSpec, stats: LayerStats, grad_sq: Tensor) -> Tensor:
    sparsity, nm = _prune_args(spec)
    scores = gblm_scores(w, stats.act_sq_sum, stats.n_tokens, grad_sq.to(w.device),
                         stats.n_samples)
    return apply_mask(w, prune_mask(scores, sparsity, nm))


def sparsegpt_layer(w: Tensor, spec: CompressionSpec, stats: LayerStats,
                    grad_sq=None) -> Tensor:
    sparsity, nm = _prune_args(spec)
    return sparsegpt_prune(w, stats.hessian, sparsity=sparsity, nm=nm,
                           blocksize=spec.blocksize, damp=spec.damp)


def rtn_layer(w: Tensor, spec: CompressionSpec, stats=None, grad_sq=None) -> Tensor:
    return rtn_quantize(w, spec.bits, spec.group_size, spec.symmetric)


def gptq_layer(w: Tensor, spec: CompressionSpec, stats: LayerStats, grad_sq=None) -> Tensor:
    return gptq_quantize(w, stats.hessian, spec.bits, spec.group_size, spec.symmetric,
                         act_order=spec.act_order, damp=spec.damp, blocksize=spec.blocksize)


def compress_weight(w: Tensor, spec: CompressionSpec, stats: LayerStats | None = None,
                    grad_sq: Tensor | None = None) -> Tensor:
    """The compressed copy of an (out, in) float32 weight by ``spec``'s registered layer
    function (not for block methods such as AWQ)."""
    if method_info(spec.method).block:
        raise ValueError(f"{spec.method} compresses whole blocks, not single layers")
    apply = method_apply(spec.method)
    if apply is None:
        raise ValueError(f"no per-layer compression for method {spec.method!r}")
    return apply(w, spec, stats, grad_sq)


def layer_report(spec: CompressionSpec, old: Tensor, new: Tensor,
                 gram: Tensor | None = None) -> dict:
    """Achieved sparsity, or relative weight (and output, given X^T X) error of one layer."""
    rep: dict = {"shape": list(old.shape)}
    if spec.is_pruning:
        rep["sparsity"] = float((new == 0).sum()) / new.numel()
        # Zeros the dense weight already had (GGUF-dequantized weights have some): where
        # they sit among the kept weights, achieved sparsity exceeds the target by them.
        rep["dense_zeros"] = int((old == 0).sum())
    else:
        rep["rel_error"] = float((new - old).norm() / old.norm().clamp(min=1e-12))
    if gram is not None:
        ref = float(((old @ gram) * old).sum())
        rep["output_rel_error"] = (output_sq_error(old, new, gram) / max(ref, 1e-30)) ** 0.5
    return rep


def _awq_group(names: list[str], linears: dict[str, nn.Module], x: Tensor,
               spec: CompressionSpec) -> tuple[dict, dict]:
    olds = [get_weight(linears[n]) for n in names]
    x = x.to(olds[0].device)
    scale = awq_search_scale(olds, x, spec.bits, spec.group_size, spec.symmetric)
    gram = x.T @ x
    reports, scales = {}, {}
    for name, old in zip(names, olds, strict=True):
        clip = None
        if not any(f in name.rsplit(".", 1)[-1] for f in _NO_CLIP):
            clip = awq_search_clip(old * scale.view(1, -1), x / scale.view(1, -1), spec.bits,
                                   spec.group_size, spec.symmetric)
        new = awq_apply(old, scale, spec.bits, spec.group_size, spec.symmetric, clip=clip)
        set_weight(linears[name], new)
        reports[name] = layer_report(spec, old, new, gram)
        scales[name] = scale.detach().cpu().clone()  # one tensor per layer on disk
    return reports, scales


def awq_block(linears: dict[str, nn.Module], stats: dict[str, LayerStats],
              spec: CompressionSpec) -> tuple[dict[str, dict], dict[str, Tensor]]:
    """AWQ over a block: one scale search per group of layers that share an input."""
    reports: dict[str, dict] = {}
    extras: dict[str, Tensor] = {}
    for names in shared_input_groups(stats):
        reps, scales = _awq_group(names, linears, stats[names[0]].stored_inputs(), spec)
        reports.update(reps)
        extras.update(scales)
    return reports, extras


def compress_linears(linears: dict[str, nn.Module], stats: dict[str, LayerStats] | None,
                     spec: CompressionSpec, grads: dict[str, Tensor] | None = None
                     ) -> tuple[dict[str, dict], dict[str, Tensor]]:
    """Compress ``linears`` in place; returns per-layer reports and extra tensors to save
    (AWQ's scales) by name."""
    reports: dict[str, dict] = {}
    extras: dict[str, Tensor] = {}
    with torch.no_grad():
        if method_info(spec.method).block:
            return method_apply(spec.method)(linears, stats, spec)
        for name, module in linears.items():
            s = stats[name] if stats else None
            old = get_weight(module)
            new = compress_weight(old, spec, s, grads[name] if grads else None)
            set_weight(module, new)
            gram = s.xtx if s is not None and s.xtx is not None else None
            reports[name] = layer_report(spec, old, new, gram)
            if s is not None:  # free the Hessian now: a 70B block holds many of them
                s.xtx = None
    return reports, extras
