"""What one sweep cell asks of the model, counted without running it (``compsafe sweep plan``).

The runner computes a task in chunks of ``checkpoint_every`` examples, in example order
(``runner.evaluate``); within a chunk the adapter's ``serve`` answers each request kind in
one call (``models.adapter.request_groups``), which ``HFModel`` batches with
``loglik.plan_batches``, ``rolling.window_batches`` and ``generate.generation_batches``.
``count_work`` walks the same path with the model's tokenizer and those same functions,
so every forward pass the cell will run is listed with its shape: rows x padded width,
logit columns per row, and a generation's decode steps. It also answers every request
with a synthetic response of the right shape, so the task builds its full-size records,
on which the plan times metrics and store writes without a forward pass.

Generations are counted at ``max_new_tokens`` steps: an upper bound where every row of a
batch stops early on its end-of-sequence token (a batch runs until its last row stops).

    work = count_work(task, hf_model, checkpoint_every=64, share_prefixes=True)
    work.items, work.tokens, [b.rows for b in work.batches]
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from compsafe.models.adapter import request_groups
from compsafe.models.generate import generation_batches
from compsafe.models.loglik import batch_geometry, plan_batches
from compsafe.models.rolling import (
    CorpusResponse,
    corpus_windows,
    document_windows,
    window_batches,
    window_budget,
    window_geometry,
)
from compsafe.models.tokenize import encode_pair
from compsafe.models.windows import WindowedText
from compsafe.runner.evaluate import make_render
from compsafe.tasks.base import LoglikTask
from compsafe.types import (
    DecodingConfig,
    GenerationRequest,
    LoglikRequest,
    LoglikResponse,
    RollingRequest,
    RollingResponse,
)

KINDS = ("scoring", "rolling", "generation")


@dataclass(frozen=True)
class Batch:
    """One forward pass (a generation batch: its prefill and ``steps`` decode steps).

    ``width``: padded input tokens per row; ``kept``: logit columns per row (a generation
    prefill keeps 1); ``tree``: a scoring batch in the prefix-shared layout (custom 4D
    mask); ``payload``: what the adapter needs to run exactly this batch again, one entry
    per row (a row's token pairs, a window, a generation request), for timing."""

    kind: str
    rows: int
    width: int
    kept: int
    steps: int = 0
    tree: bool = False
    payload: Any = field(default=None, compare=False, repr=False)

    @property
    def tokens(self) -> int:
        """Token positions through the model: the padded prefill plus one per row and step."""
        return self.rows * (self.width + self.steps)

    @property
    def rate_kind(self) -> str:
        """Batches that share one measured throughput: the tree layout runs attention
        without the fused kernels, so it is timed apart from plain scoring rows."""
        return "scoring-tree" if self.tree else self.kind


@dataclass
class TaskWork:
    """A cell's work: items, requests per kind, every batch, and synthetic records.

    ``prepare_s``: seconds spent tokenizing and batching, which the sweep spends again in
    every cell of the task (measured while counting)."""

    items: int
    requests: dict[str, int]
    batches: list[Batch]
    records: list[dict]
    prepare_s: float
    generations: int = 0

    @property
    def tokens(self) -> int:
        return sum(b.tokens for b in self.batches)


def _kind(key: tuple) -> str:
    if key[0] is LoglikRequest:
        return "scoring"
    if key[0] is RollingRequest:
        return "rolling"
    if key[0] is GenerationRequest:
        return "generation"
    raise TypeError(f"no model method serves request type {key[0].__name__}")


def _scoring(model, reqs: list[LoglikRequest], shared: bool) -> tuple[list[Batch], list]:
    pairs = [encode_pair(model.tokenizer, r.context, r.continuation) for r in reqs]
    vocab = model.model.get_input_embeddings().num_embeddings
    batches = []
    for groups, tree in plan_batches(pairs, model.max_length, model.batch_size, vocab, shared):
        rows, width, kept = batch_geometry(groups, tree)
        # One entry per row: a group's pairs (tree layout), or one pair (plain rows).
        payload = ([[pairs[i] for i, _ in g.members] for g in groups] if tree
                   else [[pairs[i]] for g in groups for i, _ in g.members])
        batches.append(Batch("scoring", rows, width, kept, tree=tree, payload=payload))
    return batches, [len(cont) for _, cont in pairs]


def _window_batches(model, windows: list) -> list[Batch]:
    budget = window_budget(model.model.config.vocab_size)
    out = []
    for idx in window_batches(windows, budget, model.batch_size):
        ws = [windows[i] for i in idx]
        out.append(Batch("rolling", *window_geometry(ws), payload=ws))
    return out


def _rolling(model, reqs: list[RollingRequest]) -> tuple[list[Batch], list]:
    """As ``rolling.rolling_loglikelihood``: plain texts' windows batched together, each
    corpus request (``WindowedText``) on its own."""
    facts: list = [None] * len(reqs)
    plain = [i for i, r in enumerate(reqs) if not isinstance(r.text, WindowedText)]
    windows, owner = document_windows(model.tokenizer, [reqs[i].text for i in plain],
                                      model.max_length)
    batches = _window_batches(model, windows)
    predicted: Counter = Counter()
    for w, j in zip(windows, owner, strict=True):
        predicted[j] += len(w.targets)
    for j, i in enumerate(plain):
        facts[i] = predicted[j]
    for i, r in enumerate(reqs):
        if isinstance(r.text, WindowedText):
            t = r.text
            seqlen = min(t.seqlen, model.max_length)
            ids = model.tokenizer(str(t), verbose=False)["input_ids"]
            ws = corpus_windows(list(ids), t.protocol, seqlen, t.stride, t.max_windows)
            batches += _window_batches(model, ws)
            facts[i] = (t, seqlen, ws)
    return batches, facts


def _generation(model, reqs: list[GenerationRequest], cfg: DecodingConfig
                ) -> tuple[list[Batch], list]:
    encoded, order = generation_batches(model.tokenizer, reqs, cfg, model.batch_size,
                                        model.max_length)
    batches = [Batch("generation", len(idx), max(len(encoded[i]) for i in idx), 1,
                     steps=cfg.max_new_tokens - 1, payload=[reqs[i] for i in idx])
               for idx in order]
    return batches, [cfg.max_new_tokens] * len(reqs)


def _synthetic(kind: str, fact, rng: random.Random):
    """A response of the right type and size, for records whose values do not matter."""
    if kind == "scoring":
        return LoglikResponse(-(0.5 + rng.random()) * fact, rng.random() < 0.5, fact)
    if kind == "generation":
        return " ".join(rng.choice(("the", "a", "people", "were", "said")) for _ in range(fact))
    if isinstance(fact, tuple):  # a corpus protocol: one mean loss per window
        text, seqlen, windows = fact
        nll = tuple(2.0 + rng.random() for _ in windows)
        weight = tuple(w.weight for w in windows)
        return CorpusResponse(-sum(m * k for m, k in zip(nll, weight, strict=True)),
                              sum(weight), text.protocol, seqlen,
                              text.stride if text.protocol == "sliding" else None, nll, weight)
    return RollingResponse(-(2.0 + rng.random()) * fact, fact)


def _scored(task: LoglikTask, records: list[dict], rng: random.Random) -> list[dict]:
    """A degeneration task's records with synthetic scores where its scorer would put
    them (``DegenerationTask._score``), without calling the scorer or its cache."""
    from compsafe.metrics.degeneration import REGARD_LABELS
    from compsafe.tasks.degeneration import DegenerationTask

    if not isinstance(task, DegenerationTask):
        return records
    for r in records:
        for s in r["samples"]:
            label = rng.choice(REGARD_LABELS[:3]) if task.kind == "regard" else None
            s.update(score=rng.random(), label=label, failed=False, error=None)
        r["scorer"] = task.scorer.describe()
    return records


def count_work(task: LoglikTask, model, checkpoint_every: int, share_prefixes: bool,
               seed: int = 0) -> TaskWork:
    """Every batch ``task`` sends to ``model`` (an ``HFModel``; only its tokenizer, config
    and sizes are used), and the task's records built from synthetic responses."""
    planners = {"scoring": lambda reqs, key: _scoring(model, reqs, share_prefixes),
                "rolling": lambda reqs, key: _rolling(model, reqs),
                "generation": lambda reqs, key: _generation(model, reqs, key[1])}
    rng = random.Random(seed)
    render = make_render(model, task.options.prompt)
    examples = task.examples()
    batches: list[Batch] = []
    records: list[dict] = []
    counts: Counter = Counter()
    prepare = 0.0
    for start in range(0, len(examples), checkpoint_every):
        chunk = examples[start : start + checkpoint_every]
        t0 = time.perf_counter()
        per_example = [task.requests(e, render) for e in chunk]
        flat = [r for reqs in per_example for r in reqs]
        answers: list = [None] * len(flat)
        planned = []
        for key, idx in request_groups(flat).items():
            kind = _kind(key)
            new, facts = planners[kind]([flat[i] for i in idx], key)
            batches += new
            counts[kind] += len(idx)
            planned.append((kind, idx, facts))
        prepare += time.perf_counter() - t0
        for kind, idx, facts in planned:
            for i, fact in zip(idx, facts, strict=True):
                answers[i] = _synthetic(kind, fact, rng)
        at = 0
        for e, reqs in zip(chunk, per_example, strict=True):
            records.append(task.record(e, answers[at : at + len(reqs)]))
            at += len(reqs)
    return TaskWork(len(examples), {k: counts[k] for k in KINDS if counts[k]}, batches,
                    _scored(task, records, rng), prepare, counts["generation"])
