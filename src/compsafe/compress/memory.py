"""Peak memory of layer-by-layer compression and of evaluation, from a model's shape.

``compress_sequential`` (``layers.py``) keeps one decoder block on the accelerator at a
time, with every calibration sequence's hidden states; the rest of the model waits on the
CPU. Its accelerator peak is therefore a sum of terms, each a product of the shape and the
calibration size (N sequences of S tokens, forward batch B, forward dtype of ``a`` bytes):

=====================  =====================================================  ==============
term                   bytes                                                  methods
=====================  =====================================================  ==============
block weights          4 * P_block (float32: what gets compressed)            all
forward copy           a * P_block when a != 4 (``cast_parameters``)          calibrated
hidden states          2 * N * S * h * a (a block's inputs and outputs)       calibrated
attention scores       B * n_heads * S^2 * a (eager/math attention; 0 with    calibrated
                       a fused kernel, flash or memory-efficient SDPA)
MLP activations        3 * B * S * m * a (gate, up, their product)            calibrated
statistics             Hessians: 4 * sum over linears of in_features^2        SparseGPT, GPTQ
                       (one float32 X^T X per linear, ``stats.LayerStats``);
                       Wanda: 4 * sum of in_features; AWQ: 4 * T * sum of
                       in_features (T = min(N*S, 16384) stored input rows)
hook temporaries       4 * B * S * max_in (+ 4 * max_in^2 for a Hessian):     calibrated
                       one batch's inputs in float32 (``_LastInput``)
per-layer work         SparseGPT/GPTQ: 4 * (3 * max_in^2 + d_out * max_in)    SparseGPT, GPTQ
                       (inverse Hessian, its Cholesky factor, the weight);
                       Wanda: 8 * d_out * max_in (score and mask)
=====================  =====================================================  ==============

with P_block = h * (2h + 2 * kv) + 3 * h * m (attention with ``kv`` = KV heads x head
dim, and a gated MLP), ``max_in`` = m (the down projection's input). On a CPU everything is
in one memory and the block weights are not copied; the test that checks this model
(tests/test_memory.py) measures the peak of new allocations during ``compress_sequential``
on CPU, so it compares against ``peak(..., device="cpu")``, which leaves out the block
weights. Host memory additionally holds the whole model in float32 (4 * parameters).

Evaluation holds the weights (``a`` bytes each) plus, per batch, the logits of the scored
positions (float32, at most ``loglik.LOGIT_BYTES``) and the forward activations.

    est = compression_memory(LLAMA_2_7B, "sparsegpt", nsamples=128, seqlen=2048)
    est.total / 2**30   # GiB on the accelerator
"""

from __future__ import annotations

from dataclasses import dataclass, field

GiB = 2**30
AWQ_ROWS = 16384  # layers.compress_sequential(awq_tokens=...)


@dataclass(frozen=True)
class Shape:
    """A decoder's shape (Llama-style: gated MLP, grouped-query attention)."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    heads: int
    kv_heads: int
    tied: bool = False
    """Input embeddings and output projection share one matrix (counted once)."""

    @classmethod
    def from_config(cls, config, name: str = "") -> Shape:
        """The shape of a Hugging Face decoder config (Llama-style field names; a
        multimodal config's text part)."""
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        heads = config.num_attention_heads
        return cls(name or getattr(config, "model_type", "model"), config.hidden_size,
                   config.intermediate_size, config.num_hidden_layers, config.vocab_size, heads,
                   getattr(config, "num_key_value_heads", None) or heads,
                   bool(getattr(config, "tie_word_embeddings", False)))

    @property
    def kv(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    @property
    def block_params(self) -> int:
        h, m = self.hidden, self.intermediate
        return h * (2 * h + 2 * self.kv) + 3 * h * m

    @property
    def params(self) -> int:
        return self.layers * self.block_params + (1 if self.tied else 2) * self.vocab * self.hidden

    def linears(self) -> list[tuple[int, int]]:
        """(out_features, in_features) of one block's linear layers."""
        h, m, kv = self.hidden, self.intermediate, self.kv
        return [(h, h), (kv, h), (kv, h), (h, h), (m, h), (m, h), (h, m)]


LLAMA_2_7B = Shape("Llama-2-7B", 4096, 11008, 32, 32000, 32, 32)
LLAMA_2_13B = Shape("Llama-2-13B", 5120, 13824, 40, 32000, 40, 40)
LLAMA_2_70B = Shape("Llama-2-70B", 8192, 28672, 80, 32000, 64, 8)
SHAPES = (LLAMA_2_7B, LLAMA_2_13B, LLAMA_2_70B)

CALIBRATED = ("wanda", "sparsegpt", "gptq", "awq", "gblm")
HESSIAN = ("sparsegpt", "gptq")


@dataclass(frozen=True)
class Estimate:
    """Peak bytes as named terms; ``total`` is their sum."""

    terms: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.terms.values())


def compression_memory(shape: Shape, method: str, nsamples: int = 128, seqlen: int = 2048,
                       batch: int = 8, forward_bytes: int = 2, fused_attention: bool = True,
                       device: str = "cuda") -> Estimate:
    """The accelerator peak of ``compress_sequential`` for one block (the module docstring
    gives each term). ``device="cpu"``: the new allocations only (weights already there).
    ``fused_attention``: transformers' default SDPA attention runs a fused kernel (flash or
    memory-efficient on CUDA, flash on recent CPUs) that never holds the S x S scores;
    False for eager attention."""
    h, m, a = shape.hidden, shape.intermediate, forward_bytes
    ins = [i for _, i in shape.linears()]
    max_in = max(ins)
    d_out = max(o for o, i in shape.linears() if i == max_in)
    t: dict[str, int] = {}
    if device != "cpu":
        t["block weights"] = 4 * shape.block_params
    if method in CALIBRATED:
        n = nsamples
        if a != 4:
            t["forward copy"] = a * shape.block_params
        t["hidden states"] = 2 * n * seqlen * h * a
        b = min(batch, n)
        if not fused_attention:
            t["attention scores"] = b * shape.heads * seqlen**2 * a
        t["MLP activations"] = 3 * b * seqlen * m * a
        t["hook temporaries"] = 4 * b * seqlen * max_in + (
            4 * max_in**2 if method in HESSIAN else 0)
        if method in HESSIAN:
            t["statistics"] = 4 * sum(i * i for i in ins)
            t["per-layer work"] = 4 * (3 * max_in**2 + d_out * max_in)
        elif method == "awq":
            t["statistics"] = 4 * min(n * seqlen, AWQ_ROWS) * sum(ins)
        else:
            t["statistics"] = 4 * sum(ins)
            t["per-layer work"] = 8 * d_out * max_in
    else:  # magnitude, RTN: one layer at a time, no data
        t["per-layer work"] = 8 * d_out * max_in
    return Estimate(t)


def evaluation_memory(shape: Shape, weight_bytes: int = 2, batch_tokens: int = 16 * 512,
                      logit_bytes: int = 2**30, forward_bytes: int = 2) -> Estimate:
    """Peak of scoring: the weights, the float32 logits of the scored positions (bounded by
    ``loglik.LOGIT_BYTES``) and one layer's activations for ``batch_tokens`` tokens."""
    return Estimate({
        "weights": weight_bytes * shape.params,
        "logits": min(4 * batch_tokens * shape.vocab, logit_bytes),
        "activations": batch_tokens * (4 * shape.hidden + 3 * shape.intermediate)
        * forward_bytes,
    })


def fits(nbytes: int, gpu_gb: int) -> str:
    """"yes" when the estimate leaves 10% of a ``gpu_gb`` GB device free (allocator
    fragmentation, CUDA context), else "no"."""
    return "yes" if nbytes <= 0.9 * gpu_gb * 1e9 else "no"


def scale_table(nsamples: int = 128, seqlen: int = 2048, gpus=(24, 48, 80)) -> str:
    """The Markdown table of docs/scale.md: peak accelerator memory per model and method,
    and whether it fits each GPU size."""
    head = ("| model | job | peak (GiB) | host RAM (GiB) | "
            + " | ".join(f"{g} GB" for g in gpus) + " |")
    lines = [head, "|" + "---|" * (4 + len(gpus))]
    for shape in SHAPES:
        host = 4 * shape.params / GiB  # the float32 model waits on the CPU
        for method in ("magnitude", "wanda", "sparsegpt", "gptq", "awq"):
            est = compression_memory(shape, method, nsamples, seqlen)
            lines.append(f"| {shape.name} | {method} | {est.total / GiB:.1f} | {host:.0f} | "
                         + " | ".join(fits(est.total, g) for g in gpus) + " |")
        ev = evaluation_memory(shape)
        lines.append(f"| {shape.name} | evaluate (bf16) | {ev.total / GiB:.1f} | — | "
                     + " | ".join(fits(ev.total, g) for g in gpus) + " |")
    return "\n".join(lines)
