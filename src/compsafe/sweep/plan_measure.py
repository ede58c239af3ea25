"""Throughput on the current hardware, measured on the real model, for ``compsafe sweep plan``.

Every measurement goes through the code the sweep runs: a few of the cell's own batches
(``plan_work.Batch.payload``) through ``score_token_pairs``, ``score_windows`` and
``generate``; the task's scorer on real generations; metrics and store writes on the
task's full-size synthetic records in a temporary store. A batch's time is extrapolated to
the others of its kind by floating-point operations (``Arch.flops``: the blocks' weights
per token, attention over the padded width, the output projection per logit column),
with a fixed part per batch fitted where two sizes were timed.

Generation is timed on the task's largest batch with a few new tokens, every row forced to
run all steps (``min_new_tokens``): the prefill scales with flops to the other batches, and
a decode step is priced at the largest batch's (an upper bound for batches of fewer rows).

    arch = Arch.of(hf.model)
    rate = fit_rate([time_batch(hf, b, True, arch) for b in sample_batches(batches, arch)])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from compsafe.compress.layers import find_blocks
from compsafe.models.generate import DecodingConfig, generate
from compsafe.models.loglik import batch_geometry, plan_batches, score_token_pairs
from compsafe.models.rolling import score_windows, window_geometry
from compsafe.sweep.plan_work import Batch, TaskWork

MAX_TIMED_TOKENS = 2048
"""Padded tokens at most per timed batch (larger ones are cut to their first rows)."""
GENERATION_STEPS = 4
"""Decode steps timed beyond the first token (fewer when max_new_tokens is smaller)."""
BOOKKEEPING_ITEMS = 4000
"""Records on which metrics and store writes are timed; more are scaled linearly."""
API_SCORERS = ("openai-moderation", "openai-moderation-hate")
"""Scorers the plan never calls (each call is a paid request); their time is not estimated."""


@dataclass(frozen=True)
class Arch:
    """A decoder's forward cost in weights: the blocks' parameters, the layers, the
    attention width (heads x head size) and the output projection's parameters."""

    block_params: int
    layers: int
    attn_width: int
    head_params: int

    @classmethod
    def of(cls, model) -> Arch:
        _, blocks = find_blocks(model)
        config = model.config
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        heads = getattr(config, "num_attention_heads", None) or 1
        hidden = getattr(config, "hidden_size", None) or model.get_input_embeddings().embedding_dim
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        head = model.get_output_embeddings()
        return cls(sum(p.numel() for p in blocks.parameters()), len(blocks), heads * head_dim,
                   head.weight.numel() if head is not None else 0)

    def flops(self, b: Batch) -> float:
        """Multiply-adds x 2 of the batch's (prefill) forward pass."""
        r, w = b.rows, b.width
        return (2.0 * self.block_params * r * w + 4.0 * self.layers * self.attn_width * r * w * w
                + 2.0 * self.head_params * r * b.kept)


@dataclass(frozen=True)
class Rate:
    """Seconds of a forward pass: ``per_batch_s + per_flop_s * flops``."""

    per_batch_s: float
    per_flop_s: float

    def seconds(self, flops: float) -> float:
        return self.per_batch_s + self.per_flop_s * flops


def fit_rate(points: list[tuple[float, float]]) -> Rate:
    """Least squares through (flops, seconds); through the origin when only one size was
    timed or the fit would make a batch's fixed part or its slope negative."""
    n = len(points)
    mean_f = sum(f for f, _ in points) / n
    mean_t = sum(t for _, t in points) / n
    var = sum((f - mean_f) ** 2 for f, _ in points)
    if n > 1 and var > 0:
        slope = sum((f - mean_f) * (t - mean_t) for f, t in points) / var
        fixed = mean_t - slope * mean_f
        if slope > 0 and fixed >= 0:
            return Rate(fixed, slope)
    return Rate(0.0, sum(t for _, t in points) / sum(f for f, _ in points))


def sample_batches(batches: list[Batch], arch: Arch) -> list[Batch]:
    """The batches to time for one kind: the largest by flops, and the median one (the
    smallest when there are two)."""
    ranked = sorted(batches, key=arch.flops)
    if len(ranked) < 2:
        return ranked
    return [ranked[-1], ranked[len(ranked) // 2] if len(ranked) > 2 else ranked[0]]


def time_batch(hf, b: Batch, shared: bool, arch: Arch) -> tuple[float, float]:
    """``(flops, seconds)`` of running a scoring or rolling batch through the adapter, cut
    to its first (widest) rows where it holds more than ``MAX_TIMED_TOKENS`` tokens."""
    rows = b.payload[:max(1, min(b.rows, MAX_TIMED_TOKENS // max(b.width, 1)))]
    t0 = time.perf_counter()
    if b.kind == "scoring":
        pairs = [p for row in rows for p in row]
        score_token_pairs(hf.model, pairs, hf.pad_id, hf.max_length, hf.batch_size,
                          share_prefixes=shared)
        took = time.perf_counter() - t0
        vocab = hf.model.get_input_embeddings().num_embeddings
        ran = [Batch("scoring", *batch_geometry(groups, tree)) for groups, tree in
               plan_batches(pairs, hf.max_length, hf.batch_size, vocab, shared)]
    else:
        score_windows(hf.model, rows, hf.pad_id, hf.batch_size)
        took = time.perf_counter() - t0
        ran = [Batch("rolling", *window_geometry(rows))]
    return sum(arch.flops(x) for x in ran), took


@dataclass(frozen=True)
class GenerationTiming:
    """A generation batch's prefill (time and flops of the timed one) and decode step."""

    prefill_s: float
    prefill_flops: float
    step_s: float

    def seconds(self, b: Batch, arch: Arch) -> float:
        return self.prefill_s * arch.flops(b) / self.prefill_flops + b.steps * self.step_s


def time_generation(hf, batches: list[Batch], arch: Arch) -> tuple[GenerationTiming, list[str]]:
    """Prefill and decode-step seconds from the largest of ``batches`` (and its texts).

    One ``generate`` call of 1 + ``GENERATION_STEPS`` tokens, every row forced to run
    them all (``min_new_tokens``); a hook on the model notes when each forward pass
    starts: the prefill is the time to the second, a step the time between later ones."""
    big = max(batches, key=lambda b: (b.rows, arch.flops(b)))
    reqs = big.payload
    n = 1 + min(GENERATION_STEPS, big.steps)
    cfg = replace(reqs[0].decoding or DecodingConfig(), max_new_tokens=n, min_new_tokens=n)
    starts: list[float] = []
    hook = hf.model.register_forward_pre_hook(
        lambda module, args, kwargs: starts.append(time.perf_counter()), with_kwargs=True)
    try:
        t0 = time.perf_counter()
        texts = generate(hf.model, hf.tokenizer, reqs, cfg, reqs[0].seed, len(reqs),
                         hf.pad_id, hf.max_length)
        end = time.perf_counter()
    finally:
        hook.remove()
    if len(starts) < 2:  # one forward pass: no step was timed
        return GenerationTiming(end - t0, arch.flops(big), 0.0), texts
    steps = [b - a for a, b in zip(starts[1:], [*starts[2:], end], strict=True)]
    return GenerationTiming(starts[1] - t0, arch.flops(big), sum(steps) / len(steps)), texts


@dataclass(frozen=True)
class ScorerTiming:
    """A scorer's cost per call (the runner calls it once per chunk) and per text."""

    per_call_s: float
    per_text_s: float

    def seconds(self, texts: int, calls: int) -> float:
        return calls * self.per_call_s + texts * self.per_text_s


def time_scorer(scorer, texts: list[str]) -> ScorerTiming | None:
    """The scorer on real generations (no score cache read or written); None for API
    scorers, which the plan never calls."""
    if scorer.name in API_SCORERS or not texts:
        return None
    t0 = time.perf_counter()
    scorer.score(texts[:1])
    first = time.perf_counter() - t0
    if len(texts) == 1:
        return ScorerTiming(0.0, first)
    t0 = time.perf_counter()
    scorer.score(texts[1:])
    per_text = (time.perf_counter() - t0) / (len(texts) - 1)
    return ScorerTiming(max(first - per_text, 0.0), per_text)


def time_bookkeeping(task, work: TaskWork, checkpoint_every: int, folder: Path
                     ) -> tuple[float, float | None]:
    """``(store seconds, metrics seconds)`` of a cell: its records claimed, written and
    read back chunk by chunk, its metrics computed and stored, as ``evaluate_task`` does,
    in a temporary store; metrics None when they fail on synthetic records."""
    from compsafe import __version__
    from compsafe.store import Store

    records = work.records[:BOOKKEEPING_ITEMS]
    scale = len(work.records) / len(records) if records else 0.0
    key, owner = f"plan-{task.name}", "plan"
    with Store(folder / f"{task.name}.sqlite") as store:
        t0 = time.perf_counter()
        store.start_run(key, "plan", "plan", task.name, task.version, {}, __version__)
        for start in range(0, len(records), checkpoint_every):
            chunk = records[start : start + checkpoint_every]
            store.claim_items(key, [r["id"] for r in chunk], owner, 120, checkpoint_every)
            store.add_records(key, chunk)
            store.release_claims(owner)
            store.done_item_ids(key)
        stored = store.records(key)
        t1 = time.perf_counter()
        try:
            rows = task.metrics(stored)
        except Exception:  # a task whose metrics need real values: not estimated
            return (t1 - t0) * scale, None
        t2 = time.perf_counter()
        store.put_metrics(key, "plan", task.name, rows)
        store.finish_run(key, len(stored), 0)
        t3 = time.perf_counter()
    return (t1 - t0 + t3 - t2) * scale, (t2 - t1) * scale
