"""What ``gpu_check.py`` measures on: shapes, random models, a synthetic tokenizer, requests.

No weights and no files travel to the GPU machine (only the repository does, within
64 MiB), so the model is a randomly initialised Llama of the chosen shape, built directly
on the device in its dtype (a 7B model in bf16 takes seconds on a GPU, against minutes and
28 GB of host memory for a float32 CPU init), and the tokenizer is a word-level one made in
memory whose words are ``t4`` ... ``t<vocab-1>``: every token id is a word, so prompts are
written as ids and decoded texts compare token for token. Random weights are fine for
throughput and for the correctness facts (the same model scored two ways), not for
quality; the ``tiny`` shape is what the CPU test runs.

    shape = SHAPES["tiny"]; model = build_model(shape, "cpu", torch.float32)
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field

import torch

from compsafe.compress.memory import LLAMA_2_7B, Shape

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0..3; words start at id 4


@dataclass(frozen=True)
class CheckShape:
    """A model shape with the sizes of every section's workload.

    ``scoring``: (contexts, context length range, continuations per context, continuation
    length range); ``generation``: (prompts, prompt length range, new tokens, prompts decoded
    one at a time); ``calibration``: (sequences, tokens) per block, as the reference study
    calibrates; ``blocks``: how many blocks are compressed and timed (the rest
    extrapolated); ``needs_s``: a section's expected seconds, below which a section is
    skipped rather than started (the budget must hold the whole run)."""

    name: str
    memory: Shape
    max_positions: int
    scoring: tuple[int, tuple[int, int], int, tuple[int, int]]
    generation: tuple[int, tuple[int, int], int, int]
    calibration: tuple[int, int]
    blocks: int
    needs_s: dict = field(default_factory=dict)

    def config(self, layers: int | None = None):
        from transformers import LlamaConfig

        m = self.memory
        return LlamaConfig(hidden_size=m.hidden, intermediate_size=m.intermediate,
                           num_hidden_layers=layers or m.layers, num_attention_heads=m.heads,
                           num_key_value_heads=m.kv_heads, vocab_size=m.vocab,
                           max_position_embeddings=self.max_positions, rms_norm_eps=1e-5,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2,
                           tie_word_embeddings=False, attn_implementation="sdpa")


TINY = Shape("tiny", hidden=64, intermediate=128, layers=2, vocab=512, heads=4, kv_heads=2)
SHAPES = {
    "llama2-7b": CheckShape(
        "llama2-7b", LLAMA_2_7B, 4096, scoring=(256, (120, 360), 3, (3, 9)),
        generation=(32, (24, 96), 64, 4), calibration=(128, 2048), blocks=2,
        needs_s={"scoring": 60, "generation": 45, "device_map": 15, "model": 30,
                 "wanda": 30, "sparsegpt": 60, "gptq": 60}),
    "tiny": CheckShape(
        "tiny", TINY, 512, scoring=(10, (6, 24), 3, (2, 5)), generation=(6, (3, 10), 6, 3),
        calibration=(8, 32), blocks=2),
}


class Budget:
    """Seconds left of the run's budget (counted from ``start``, default now); a section
    starts only when its estimate fits."""

    def __init__(self, seconds: float, start: float | None = None):
        self.seconds = seconds
        self.start = time.perf_counter() if start is None else start

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def skip_reason(self, shape: CheckShape, section: str) -> str | None:
        need = shape.needs_s.get(section, 0)
        if self.left() < need:
            return f"skipped: {self.left():.0f} s of the budget left, needs ~{need} s"
        return None


def synthetic_tokenizer(vocab: int, max_length: int):
    """A fast word-level tokenizer of ``vocab`` ids: specials 0-3 (pad, BOS, EOS, unk), then
    the words ``t4`` ... split on whitespace; decoding joins words with spaces."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {w: i for i, w in enumerate(SPECIALS)} | {f"t{i}": i for i in range(4, vocab)}
    core = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>",
                                   model_max_length=max_length)


def build_model(shape: CheckShape, device: str | torch.device, dtype: torch.dtype,
                layers: int | None = None, seed: int = 0):
    """A randomly initialised Llama of ``shape`` (``layers`` blocks), created on ``device``
    in ``dtype`` (no host copy on a GPU), in eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(shape.config(layers), dtype=dtype)
    return model.eval()


def words(ids) -> str:
    return " ".join(f"t{i}" for i in ids)


def scoring_pairs(shape: CheckShape, seed: int = 1) -> list[tuple[tuple[int, ...], list[int]]]:
    """Multiple-choice shaped requests: contexts of random words, each with its
    continuations (as BBQ asks three answers of each context)."""
    n, (lo, hi), k, (clo, chi) = shape.scoring
    rng, vocab = random.Random(seed), shape.memory.vocab
    pairs = []
    for _ in range(n):
        ctx = tuple(rng.randrange(4, vocab) for _ in range(rng.randint(lo, hi)))
        for _ in range(k):
            pairs.append((ctx, [rng.randrange(4, vocab) for _ in range(rng.randint(clo, chi))]))
    return pairs


def prompts(shape: CheckShape, seed: int = 2) -> list[str]:
    n, (lo, hi), _, _ = shape.generation
    rng, vocab = random.Random(seed), shape.memory.vocab
    return [words(rng.randrange(4, vocab) for _ in range(rng.randint(lo, hi)))
            for _ in range(n)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """(result, seconds) of ``fn()``, with the device's queued work included."""
    synchronize(device)
    t = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - t


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeat: int = 10) -> float:
    """FLOP/s of an n x n x n matmul in ``dtype`` (3 warm-ups, the mean of ``repeat``): the
    denominator of the fraction of peak, measured in the same run."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _, seconds = timed(lambda: [a @ b for _ in range(repeat)], device)
    return 2 * n**3 * repeat / seconds


ATTENTION = re.compile(r"scaled_dot_product|flash|fmha|efficient_attention|cudnn.*att",
                       re.IGNORECASE)


def attention_kernels(fn, device: torch.device, limit: int = 4) -> list[str]:
    """Names of the attention operators and kernels that ``fn()`` ran, from torch's
    profiler: which SDPA backend (flash, memory-efficient, math, cuDNN) actually served it."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    try:
        with profile(activities=acts) as prof:
            fn()
            synchronize(device)
    except RuntimeError as e:  # a sandbox without profiler support: say so, go on
        return [f"profiler failed: {' '.join(str(e).split())[:80]}"]
    names = {e.key for e in prof.key_averages()}
    return sorted(n[:70] for n in names if ATTENTION.search(n)
                  and n != "aten::scaled_dot_product_attention")[:limit]
