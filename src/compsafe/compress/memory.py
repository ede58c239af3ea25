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

from compsafe.compress.registry import METHODS, method_info

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
    def from_config(cls, config, name: str = "") -> Shape | None:
        """The shape of a Hugging Face decoder config (Llama-style field names; a
        multimodal config's text part), or None when it lacks one of them (GPT-2, OPT,
        GPT-NeoX name theirs otherwise: no estimate is made for them)."""
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        try:
            heads = config.num_attention_heads
            return cls(name or getattr(config, "model_type", "model"), config.hidden_size,
                       config.intermediate_size, config.num_hidden_layers, config.vocab_size,
                       heads, getattr(config, "num_key_value_heads", None) or heads,
                       bool(getattr(config, "tie_word_embeddings", False)))
        except (AttributeError, TypeError):
            return None

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

CALIBRATED = METHODS.select(lambda info: info.calibrated)
HESSIAN = METHODS.select(lambda info: "hessian" in info.needs)
"""Live views of the method registry: methods with calibration statistics, with Hessians;
stored-input statistics (``"inputs"``: AWQ) are the third formula, activation norms
(Wanda, GBLM) the default."""


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
        elif "inputs" in method_info(method).needs:
            t["statistics"] = 4 * min(n * seqlen, AWQ_ROWS) * sum(ins)
        else:
            t["statistics"] = 4 * sum(ins)
            t["per-layer work"] = 8 * d_out * max_in
    else:  # magnitude, RTN: one layer at a time, no data
        t["per-layer work"] = 8 * d_out * max_in
    return Estimate(t)


@dataclass(frozen=True)
class Plan:
    """How ``compress_sequential`` runs within a memory budget: the forward ``batch``,
    whether the calibration activations wait on the CPU between blocks (``offload``), the
    resulting estimate, and the one line that says what was changed (None: nothing)."""

    batch: int
    offload: bool
    estimate: Estimate
    note: str | None = None


def plan_compression(shape: Shape, method: str, budget: int, nsamples: int, seqlen: int,
                     batch: int = 8, forward_bytes: int = 2, device: str = "cuda") -> Plan:
    """The cheapest change that fits ``budget`` bytes: none; then the calibration
    activations kept on the CPU (only one batch's on the accelerator: the hidden-states
    term becomes ``2 * B * S * h * a``); then halving the forward batch down to 1. Raises
    ``CompsafeError`` (one line, with the estimate) when even that does not fit."""
    from compsafe.errors import CompsafeError

    def estimate(b: int, offload: bool) -> Estimate:
        est = compression_memory(shape, method, nsamples, seqlen, b, forward_bytes,
                                 device=device)
        if offload and "hidden states" in est.terms:
            est = Estimate({**est.terms,
                            "hidden states": 2 * min(b, nsamples) * seqlen * shape.hidden
                            * forward_bytes})
        return est

    first = estimate(batch, False)
    if first.total <= budget:
        return Plan(batch, False, first)
    if method not in CALIBRATED:  # one block and one layer's work: nothing to shrink
        raise CompsafeError(
            f"{method} on {shape.name} needs ~{first.total / GiB:.1f} GiB for one block "
            f"({_largest(first)}), more than the {budget / GiB:.1f} GiB available")
    b, offload = batch, True
    while True:
        est = estimate(b, offload)
        if est.total <= budget:
            changes = (["calibration activations kept on the CPU"] if offload else []) + (
                [f"forward batch {batch} -> {b}"] if b != batch else [])
            return Plan(b, offload, est, (
                f"{method} on {shape.name} needs ~{first.total / GiB:.1f} GiB, more than the "
                f"{budget / GiB:.1f} GiB available: {', '.join(changes)} "
                f"(~{est.total / GiB:.1f} GiB)"))
        if b == 1:
            largest = max(est.terms, key=est.terms.get)
            advice = (f"use a shorter calibration seqlen (now {seqlen}) or a device with "
                      "more memory" if largest in _ACTIVATIONS else
                      "use a device with more memory (this term does not shrink with the "
                      "calibration size)")
            raise CompsafeError(
                f"{method} on {shape.name} needs ~{est.total / GiB:.1f} GiB even with the "
                f"calibration activations on the CPU and batch 1 ({_largest(est)}), more "
                f"than the {budget / GiB:.1f} GiB available; {advice}")
        b = max(1, b // 2)


_ACTIVATIONS = ("hidden states", "attention scores", "MLP activations", "hook temporaries")
"""Terms that grow with the calibration windows' length."""


def _largest(est: Estimate) -> str:
    name, value = max(est.terms.items(), key=lambda kv: kv[1])
    return f"largest term: {name}, {value / GiB:.1f} GiB"


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
