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


def test_plan_keeps_activations_on_the_cpu_then_shrinks_batches_then_refuses():
    """What compsafe does when a compression does not fit (docs/scale.md): first the
    calibration activations wait on the CPU, then the forward batch halves, then one line
    refuses before any work."""
    from compsafe.compress.memory import plan_compression
    from compsafe.errors import CompsafeError

    def plan(budget_gib, method="sparsegpt"):
        return plan_compression(LLAMA_2_70B, method, int(budget_gib * GiB), 128, 2048,
                                batch=8, forward_bytes=2)

    full = compression_memory(LLAMA_2_70B, "sparsegpt", 128, 2048, 8, 2)
    assert plan(full.total / GiB + 0.01).note is None  # fits: nothing changes
    offloaded = plan(full.total / GiB - 1)
    assert (offloaded.offload, offloaded.batch) == (True, 8)
    assert offloaded.estimate.terms["hidden states"] == 2 * 8 * 2048 * 8192 * 2
    assert "kept on the CPU" in offloaded.note and "more than the" in offloaded.note
    smaller = plan(offloaded.estimate.total / GiB - 0.5)
    assert smaller.offload and smaller.batch < 8 and "forward batch 8 ->" in smaller.note
    assert smaller.estimate.total <= int((offloaded.estimate.total / GiB - 0.5) * GiB)
    with pytest.raises(CompsafeError, match=r"even with the calibration activations on the "
                       r"CPU and batch 1 \(largest term: per-layer work.*does not shrink"):
        plan(1.0)
    with pytest.raises(CompsafeError, match="magnitude on Llama-2-70B needs .* for one block"):
        plan(0.01, "magnitude")


@pytest.mark.parametrize("method", ["sparsegpt", "awq"])
def test_offloaded_activations_give_the_same_compressed_model(method):
    """Activations waiting on the CPU change where tensors live, not the results."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=500)
    tokens = torch.randint(0, 500, (6, 32), generator=torch.Generator().manual_seed(1))
    spec = (CompressionSpec(method=method, sparsity=0.5) if method == "sparsegpt"
            else CompressionSpec(method=method, bits=4, group_size=32))
    weights = []
    for offload in (False, True):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
        compress_sequential(model, spec, tokens, "cpu", batch_size=4, progress=False,
                            offload=offload)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    for name, w in weights[0].items():
        assert torch.equal(w, weights[1][name]), name


def test_compress_within_a_budget_says_so_in_one_line(tiny_model_dir, tmp_path, caplog):
    """A budget smaller than the estimate (here on a CPU, where there is none by default)
    changes the plan, logs it once, and records it in compression.json."""
    import logging

    from transformers import AutoConfig

    from compsafe.compress.memory import Shape as ModelShape
    from compsafe.compress.run import compress_in_memory
    from compsafe.compress.spec import Calibration

    shape = ModelShape.from_config(AutoConfig.from_pretrained(tiny_model_dir))
    text = tmp_path / "calibration.txt"
    text.write_text(" ".join(f"word{i % 97} of the text" for i in range(3000)))
    spec = CompressionSpec(method="wanda", sparsity=0.5,
                           calibration=Calibration(source=str(text), nsamples=8, seqlen=64))
    need = compression_memory(shape, "wanda", 8, 64, 8, 4, device="cpu").total
    with caplog.at_level(logging.WARNING, logger="compsafe.compress.run"):
        done = compress_in_memory(str(tiny_model_dir), spec, "cpu", None,
                                  progress=False, memory_budget_gb=0.9 * need / GiB)
    plan = done.info["memory_plan"]
    assert plan["offload"] and "kept on the CPU" in plan["note"]
    assert [r.getMessage() for r in caplog.records if "GiB" in r.getMessage()] == [plan["note"]]
    unbounded = compress_in_memory(str(tiny_model_dir), spec, "cpu", None,
                                   progress=False)
    assert "memory_plan" not in unbounded.info
    for name, w in unbounded.hf.model.state_dict().items():
        assert torch.equal(w, done.hf.model.state_dict()[name]), name
