"""The layer-by-layer memory model (compress/memory.py) against measured allocations.

On CPU, torch's profiler records every tensor allocation and free; the running sum's
maximum during ``compress_sequential`` is the peak of new memory compression needs. It must
follow the formula at two model and calibration sizes (the formula is an upper bound that
stays within 30% of it), and the Llama-2 figures in docs/scale.md come from the same code.
"""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from compsafe.compress.layers import compress_sequential
from compsafe.compress.memory import (
    LLAMA_2_7B,
    LLAMA_2_70B,
    GiB,
    Shape,
    compression_memory,
    evaluation_memory,
)
from compsafe.compress.spec import CompressionSpec


def peak_new_bytes(fn) -> int:
    """Peak of (allocated - freed) tensor bytes while ``fn`` runs, from the profiler."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
@pytest.mark.parametrize("hidden,nsamples,seqlen", [(64, 16, 128), (128, 32, 256)])
def test_measured_peak_follows_the_formula(method, hidden, nsamples, seqlen):
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = Shape("tiny", hidden, 2 * hidden, 2, 1000, 4, 2)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=1000,
                         max_position_embeddings=1024)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    tokens = torch.randint(0, 1000, (nsamples, seqlen))
    spec = CompressionSpec(method=method, sparsity=0.5)
    measured = peak_new_bytes(lambda: compress_sequential(model, spec, tokens, "cpu",
                                                          progress=False))
    est = compression_memory(shape, method, nsamples, seqlen, batch=8, forward_bytes=4,
                             device="cpu")
    assert 0.7 * est.total <= measured <= 1.05 * est.total, (measured, est.terms)


def test_llama_figures_of_the_scale_doc():
    """The numbers docs/scale.md quotes: which GPU fits which compression."""
    def gib(shape, method):
        return compression_memory(shape, method, 128, 2048).total / GiB

    assert 6 < gib(LLAMA_2_7B, "sparsegpt") < 12  # fits a 24 GB GPU
    assert 24 < gib(LLAMA_2_70B, "sparsegpt") < 48  # needs a 48 GB one
    assert gib(LLAMA_2_7B, "wanda") < gib(LLAMA_2_7B, "sparsegpt")
    # evaluation: 7B in bf16 is 13.5 GB of weights, under 24 GB with the logits bound
    ev = evaluation_memory(LLAMA_2_7B)
    assert 12.5 < ev.terms["weights"] / GiB < 13 and ev.total / GiB < 20
