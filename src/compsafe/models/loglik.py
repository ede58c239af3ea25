"""Batched log-likelihood of continuations with each shared context run once.

Multiple-choice benchmarks ask several continuations of one context (BBQ: 3 answers,
UnQover: 2 subjects per question). lm-evaluation-harness runs context+continuation in full
for each. Here requests are grouped by their context tokens, and each group becomes one
row of a batch: the context followed by all its continuations, with a tree-shaped
attention mask (each continuation sees the context and its own earlier tokens, never a
sibling) and positions that restart at the context length for every continuation. The
context's keys and values are thus computed once and reused by every continuation, in a
single forward pass per batch with no cache copies. Rows are length-sorted, and logits
are computed only for the columns that score a token.

Results equal plain forward passes up to float rounding; ``supports_prefix_sharing``
checks this once per model and otherwise falls back to plain, unshared forward passes
(for architectures that ignore custom 4D masks or explicit positions).

Sliding-window attention: transformers applies a custom 4D mask as given, with no window.
So for models with sliding layers (``sliding_window``), the tree mask is also windowed by
position (a token sees keys less than ``sliding_window`` positions back, as
in the plain pass), and models that mix sliding and global layers (Gemma 2/3) get one
mask per layer type, ``{"full_attention": ..., "sliding_attention": ...}``, which their
forward accepts as is. The probe includes a context longer than the window to check it.

    responses = score_token_pairs(model, [(ctx_ids, cont_ids), ...], pad_id, max_length)
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from compsafe.models.device import index_device, input_device
from compsafe.types import LoglikResponse

log = logging.getLogger(__name__)
TokenPair = tuple[Sequence[int], Sequence[int]]
ROW_TOKENS = 256
"""A context's continuations start a new row once its packed length would pass this (or
twice the context, for long contexts): attention over a row grows with its square, and
some tasks put hundreds of requests behind one short context (CrowS-Pairs, StereoSet's
intrasentence: every sentence follows the same BOS token), where sharing saves nothing."""
LOGIT_BYTES = 1 << 30
"""A batch holds at most this many bytes of float32 logits (rows x scored columns x vocab):
rows are padded to the longest, so with a large vocabulary a fixed row count is not safe."""


@dataclass
class _ContextGroup:
    context: tuple[int, ...]
    members: list[tuple[int, list[int]]] = field(default_factory=list)  # (request index, cont)

    @property
    def row_length(self) -> int:
        """Packed row length: the context, then every continuation but its last token."""
        return len(self.context) + sum(len(cont) - 1 for _, cont in self.members)


def truncate_pair(ctx: Sequence[int], cont: Sequence[int], max_length: int) -> tuple[int, ...]:
    """Left-truncate the context so context+continuation fits the model's window.

    Same effect as lm-evaluation-harness's ``(ctx + cont)[-(max_length + 1):][:-1]``.
    """
    if len(cont) > max_length:
        raise ValueError(f"continuation of {len(cont)} tokens exceeds max_length {max_length}")
    keep = max_length + 1 - len(cont)
    return tuple(ctx[-keep:]) if len(ctx) > keep else tuple(ctx)


def group_by_context(pairs: Sequence[TokenPair], max_length: int,
                     row_tokens: int = ROW_TOKENS) -> list[_ContextGroup]:
    """Group requests by (truncated) context tokens, a new group whenever a row would pass
    ``row_tokens`` or twice its context (one continuation always fits; behind a one-token
    context, only one); longest rows (context + tails) first."""
    open_groups: dict[tuple[int, ...], _ContextGroup] = {}
    groups: list[_ContextGroup] = []
    for i, (ctx, cont) in enumerate(pairs):
        if not ctx or not cont:
            raise ValueError(f"request {i}: empty context or continuation after tokenization")
        key = truncate_pair(ctx, cont, max_length)
        g = open_groups.get(key)
        # A one-token context (the BOS of CrowS-Pairs, StereoSet intrasentence) saves nothing
        # when shared: such requests get rows of their own, scored like lm-eval's.
        cap = max(row_tokens, 2 * len(key)) if len(key) > 1 else 0
        if g is None or g.row_length + len(cont) - 1 > cap:
            g = open_groups[key] = _ContextGroup(key)
            groups.append(g)
        g.members.append((i, list(cont)))
    # Longest first: the first batch is the largest, so memory trouble shows at once.
    return sorted(groups, key=lambda g: (-g.row_length, g.context))


def _sum_and_greedy(logp: torch.Tensor, target: list[int]) -> tuple[torch.Tensor, bool]:
    """Sum of ``logp[i, target[i]]`` and whether every target is the row's argmax."""
    t = torch.tensor(target, device=logp.device)
    return logp.gather(-1, t[:, None]).sum(), bool((logp.argmax(-1) == t).all())


class _TreeScorer:
    """One forward pass per batch; each row is a context followed by its continuations.

    Row layout: ``[pad | context | cont_1[:-1] | cont_2[:-1] | ...]``. The attention mask
    is causal over the context; each continuation token sees the whole context and the
    earlier tokens of its own continuation, never a sibling's; positions restart at the
    context length for every continuation. So the context's keys and values are computed
    once and reused by every continuation, which is where the 3x saving on 3-option
    benchmarks comes from. Logits are computed only for the columns that score tokens.
    """

    def __init__(self, model, pad_id: int):
        self.model = model
        self.pad_id = pad_id
        self.device = input_device(model)  # a device_map'd model: its embeddings' device
        self.dtype = next(model.parameters()).dtype
        self.logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.window, self.mixed = sliding_window(model)

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(allowed.shape, dtype=self.dtype)
        mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        return mask[:, None].to(self.device)

    def attention_mask(self, allowed: torch.Tensor, pos: torch.Tensor):
        """The additive 4D mask(s) for ``allowed`` (rows, q, k): windowed by position on
        sliding layers, one per layer type when the model mixes them."""
        if self.window is None:
            return self._additive(allowed)
        near = (pos[:, :, None] - pos[:, None, :]) < self.window
        windowed = self._additive(allowed & near)
        if not self.mixed:
            return windowed
        return {"full_attention": self._additive(allowed), "sliding_attention": windowed}

    @torch.inference_mode()
    def __call__(self, batch: list[_ContextGroup], results: list) -> None:
        layout = []  # per row: [(request index, cont, tail offset)], row length
        for g in batch:
            off, spans = len(g.context), []
            for idx, cont in g.members:
                spans.append((idx, cont, off))
                off += len(cont) - 1
            layout.append((spans, off))
        width = max(end for _, end in layout)
        # Rows are right-aligned (padding on the left), so the scored columns (each
        # context's last token and the tails) of every row fall in the last few columns and
        # the logits are computed for those alone.
        shift = [width - end for _, end in layout]
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        pos = torch.zeros((len(batch), width), dtype=torch.long)
        allowed = torch.eye(width, dtype=torch.bool).repeat(len(batch), 1, 1)  # pads: self
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        for r, (g, (spans, _)) in enumerate(zip(batch, layout, strict=True)):
            n, s = len(g.context), shift[r]
            ids[r, s:s + n] = torch.tensor(g.context)
            pos[r, s:s + n] = torch.arange(n)
            allowed[r, s:s + n, s:s + n] = causal[:n, :n]
            for _, cont, off in spans:
                k, o = len(cont) - 1, s + off
                if k:
                    ids[r, o:o + k] = torch.tensor(cont[:-1])
                    pos[r, o:o + k] = torch.arange(n, n + k)
                    allowed[r, o:o + k, s:s + n] = True
                    allowed[r, o:o + k, o:o + k] = causal[:k, :k]
        mask = self.attention_mask(allowed, pos)
        lo = min(shift[r] + len(g.context) for r, g in enumerate(batch)) - 1
        keep = torch.arange(lo, width, device=index_device(self.model))
        kwargs = {"logits_to_keep": keep} if self.logits_to_keep else {}
        dev = self.device
        out = self.model(input_ids=ids.to(dev), attention_mask=mask,
                         position_ids=pos.to(dev), use_cache=False, **kwargs)
        logits = out.logits if self.logits_to_keep else out.logits[:, lo:]
        logp = F.log_softmax(logits.float(), dim=-1)
        for r, (g, (spans, _)) in enumerate(zip(batch, layout, strict=True)):
            last = shift[r] + len(g.context) - 1 - lo
            for idx, cont, off in spans:
                o = shift[r] + off - lo
                cols = [last, *range(o, o + len(cont) - 1)]
                lp, greedy = _sum_and_greedy(logp[r, cols], cont)
                results[idx] = LoglikResponse(float(lp), greedy, len(cont))


class _PlainScorer:
    """Fallback: context+continuation in full per request, right-padded (no sharing)."""

    def __init__(self, model, pad_id: int):
        self.model, self.pad_id = model, pad_id
        self.device = input_device(model)
        self.logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters

    @torch.inference_mode()
    def __call__(self, batch: list[_ContextGroup], results: list) -> None:
        rows = [(idx, g.context, cont) for g in batch for idx, cont in g.members]
        width = max(len(c) + len(k) - 1 for _, c, k in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for j, (_, ctx, cont) in enumerate(rows):  # right padding needs no mask: causal
            ids[j, : len(ctx) + len(cont) - 1] = torch.tensor((list(ctx) + cont)[:-1])
        # Logits only from the first scored column on: with a 262k vocabulary (Gemma 3) the
        # projection of a long context's unscored columns would dominate.
        lo = min(len(ctx) - 1 for _, ctx, _ in rows)
        kwargs = {"logits_to_keep": width - lo} if self.logits_to_keep else {}
        logits = self.model(input_ids=ids.to(self.device), **kwargs).logits
        logp = F.log_softmax(logits[:, -(width - lo):].float(), dim=-1)
        for j, (idx, ctx, cont) in enumerate(rows):
            a = len(ctx) - 1 - lo
            lp, greedy = _sum_and_greedy(logp[j, a : a + len(cont)], cont)
            results[idx] = LoglikResponse(float(lp), greedy, len(cont))


def sliding_window(model) -> tuple[int | None, bool]:
    """``(window, mixed)``: the sliding window of a model with sliding-attention layers
    (else None), and whether it also has other layers. Layers are sliding as
    ``config.layer_types`` says; without it, all of them when ``config.sliding_window`` is
    set (Mistral, Phi-3; Qwen2 sets it to None unless it uses it)."""
    config = getattr(model, "config", None)
    types = set(getattr(config, "layer_types", None) or ()) or {"sliding_attention"}
    window = getattr(config, "sliding_window", None)
    if "sliding_attention" not in types or not window:
        return None, False
    return int(window), len(types) > 1


@dataclass(frozen=True)
class ProbeResult:
    """What ``prefix_sharing_probe`` found: whether the tree path is used, and why."""

    shared: bool
    max_diff: float | None
    """Largest |tree - plain| log-likelihood over the probe (None if the tree path failed)."""
    reason: str


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LONG_PROBE_MAX = 4096
"""Windows up to this long get a probe context longer than the window (Gemma 3's 512: a
few seconds on CPU; Mistral's 4096 is meant for a GPU); longer windows are not probed
past, and the probe's reason says so."""


def _probe_long(model, window: int | None) -> bool:
    """Whether the probe should pass the window: it is short enough to be cheap, and the
    model's context can exceed it (else the window never cuts anything)."""
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return (window is not None and window <= _LONG_PROBE_MAX
            and (not isinstance(context, int) or window + 4 <= context))


def _probe_pairs(vocab: int, window: int | None, long: bool) -> list[TokenPair]:
    probe = [((3, 9, 4, 7, 1, 8), [5, 2, 6]), ((3, 9, 4, 7, 1, 8), [6, 1]),
             ((5, 2), [9, 9, 3, 4]), ((5, 2), [7])]
    if long:
        # A context past the window, so its continuation's sliding layers must drop its
        # start. One continuation: siblings are checked above, and every token here costs
        # (Gemma 3: a 516-token context, seconds on a busy 2-core CPU).
        probe.append((tuple((7 * i + 3) for i in range(window + 4)), [4, 8, 2]))
    return [(tuple(t % vocab for t in c), [t % vocab for t in k]) for c, k in probe]


def prefix_sharing_probe(model, pad_id: int, again: bool = False) -> ProbeResult:
    """Score a small probe (unequal contexts, multi-token continuations, and one context
    longer than a sliding window when the model has one) both ways, once per model
    (``again``: run it anyway, as for a newly loaded model; ``compsafe sweep plan`` times
    it so)."""
    if model in _PROBES and not again:
        return _PROBES[model]
    name = type(model).__name__
    if "position_ids" not in inspect.signature(model.forward).parameters:
        result = ProbeResult(False, None, f"{name}.forward takes no position_ids")
    else:
        window, mixed = sliding_window(model)
        long = _probe_long(model, window)
        pairs = _probe_pairs(model.get_input_embeddings().num_embeddings, window, long)
        groups = group_by_context(pairs, max(64, len(pairs[-1][0]) + 8))
        # The long context in a batch of its own: the short rows are not padded to it.
        batches = [[g for g in groups if len(g.context) < 64],
                   [g for g in groups if len(g.context) >= 64]]
        tree, plain = [None] * len(pairs), [None] * len(pairs)
        try:
            for batch in filter(None, batches):
                _TreeScorer(model, pad_id)(batch, tree)
        except Exception as e:  # an architecture that rejects 4D masks or mask mappings
            result = ProbeResult(False, None, f"{name} rejects tree masks: {e}")
        else:
            for batch in filter(None, batches):
                _PlainScorer(model, pad_id)(batch, plain)
            diff = max(abs(a.logprob - b.logprob) for a, b in zip(tree, plain, strict=True))
            what = ("" if window is None else
                    f", sliding window {window} {'and global ' if mixed else ''}layers"
                    + ("" if long else " (window not probed past)"))
            result = ProbeResult(diff < 1e-3, diff,
                                 f"{name}: tree vs plain max |diff| {diff:.2e}{what}")
    _PROBES[model] = result
    log.info("%s log-likelihood scoring on %s", "prefix-shared" if result.shared
             else "plain (no prefix sharing)", result.reason)
    return result


def supports_prefix_sharing(model, pad_id: int) -> bool:
    """Whether the prefix-shared scorer reproduces plain forward passes on this model
    (``prefix_sharing_probe``); architectures that ignore explicit positions or custom
    4D attention masks fail it and are scored the plain way."""
    return prefix_sharing_probe(model, pad_id).shared


def score_token_pairs(
    model,
    pairs: Sequence[TokenPair],
    pad_id: int,
    max_length: int,
    batch_size: int = 16,
    progress: bool = False,
    share_prefixes: bool | None = None,
) -> list[LoglikResponse]:
    """Log-likelihood of each continuation given its context, in request order.

    ``share_prefixes``: None (default) uses the prefix-shared scorer when the model passes
    ``supports_prefix_sharing``; False forces plain forward passes.
    """
    results: list[LoglikResponse | None] = [None] * len(pairs)
    if share_prefixes is None:
        share_prefixes = supports_prefix_sharing(model, pad_id)
    plain = _PlainScorer(model, pad_id)
    tree = _TreeScorer(model, pad_id) if share_prefixes else plain
    vocab = model.get_input_embeddings().num_embeddings
    with tqdm(total=len(pairs), desc="log-likelihood", unit="req", disable=not progress) as bar:
        for batch, shared in plan_batches(pairs, max_length, batch_size, vocab, share_prefixes):
            (tree if shared else plain)(batch, results)
            bar.update(sum(len(g.members) for g in batch))
    return results  # type: ignore[return-value]


def plan_batches(pairs: Sequence[TokenPair], max_length: int, batch_size: int, vocab: int,
                 share_prefixes: bool) -> list[tuple[list[_ContextGroup], bool]]:
    """The batches ``score_token_pairs`` runs, in order, each with whether it takes the
    prefix-shared (tree) scorer; pure token arithmetic (``compsafe sweep plan`` counts
    work with it)."""
    groups = group_by_context(pairs, max_length)
    if share_prefixes:  # one row per group
        def shape(g: _ContextGroup) -> tuple[int, int]:
            return 1, g.row_length
    else:  # one row per request
        def shape(g: _ContextGroup) -> tuple[int, int]:
            return len(g.members), max(len(g.context) + len(c) - 1 for _, c in g.members)
    budget = max(LOGIT_BYTES // (4 * vocab), 1)  # rows x columns per batch
    # Rows of one request each need no tree mask: plain causal passes are the same
    # computation, on the attention kernels' fast path.
    return [(batch, share_prefixes and not all(len(g.members) == 1 for g in batch))
            for batch in token_batches(groups, batch_size, budget, shape)]


def batch_geometry(batch: list[_ContextGroup], shared: bool) -> tuple[int, int, int]:
    """``(rows, width, logit columns per row)`` of the forward pass that scores ``batch``:
    the tree layout of ``_TreeScorer`` (one right-aligned row per group) or the plain one
    of ``_PlainScorer`` (one right-padded row per request)."""
    if shared:
        width = max(g.row_length for g in batch)
        lo = min(width - g.row_length + len(g.context) for g in batch) - 1
        return len(batch), width, width - lo
    rows = [(g.context, c) for g in batch for _, c in g.members]
    width = max(len(ctx) + len(c) - 1 for ctx, c in rows)
    return len(rows), width, width - min(len(ctx) - 1 for ctx, _ in rows)


def token_batches(groups: list[_ContextGroup], batch_size: int, budget: int, shape
                  ) -> list[list[_ContextGroup]]:
    """Consecutive groups in batches of at most ``batch_size`` groups whose padded size
    (rows x widest row, ``shape(g) = (rows, width)``) stays within ``budget`` tokens; a
    group over the budget goes alone."""
    batches: list[list[_ContextGroup]] = []
    rows = width = 0
    for g in groups:
        r, w = shape(g)
        if batches and len(batches[-1]) < batch_size and (rows + r) * max(width, w) <= budget:
            batches[-1].append(g)
            rows, width = rows + r, max(width, w)
        else:
            batches.append([g])
            rows, width = r, w
    return batches
