"""Perplexity in batched forward passes: chunks, sliding windows and rolling documents.

The windows of every protocol come from ``windows.py``; this module runs them. Windows
are grouped by the first scored position and length-sorted, right-padded (causal
attention needs no mask for right padding), and packed under a token budget so the
logits of a batch stay near ``LOGIT_BYTES``. Logits are computed only for the scored
positions (``logits_to_keep``), and the NLL is a float32 cross-entropy over slices of
1,024 positions, so temporaries stay small for any window. Results equal transformers' loss
(``model(ids, labels=ids).loss``) up to float rounding; ``tests/test_rolling.py``
checks each protocol against its reference (transformers, the HF guide, lm-eval).

    out = corpus_perplexity(model, text, "chunks", seqlen=2048)   # out["ppl"], out["protocol"]
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from compsafe.models.device import index_device, input_device
from compsafe.models.tokenize import _encode, prefix_token_id
from compsafe.models.windows import (
    Window,
    WindowedText,
    chunk_windows,
    rolling_windows,
    sliding_windows,
)
from compsafe.types import RollingRequest, RollingResponse

LOGIT_BYTES = 1 << 30  # ~1 GiB of float32 logits per forward pass


@dataclass(frozen=True)
class CorpusResponse(RollingResponse):
    """A ``RollingResponse`` for a corpus-level protocol, with its per-window details.

    ``logprob`` and ``n_tokens`` are the protocol's weighted totals, so that
    ``exp(-logprob / n_tokens)`` is its perplexity (for ``sliding``, the guide's
    ``nll_sum / n_tokens``); ``window_nll`` holds each window's mean NLL and
    ``window_weight`` the token count it is weighted by.
    """

    protocol: str = "chunks"
    seqlen: int = 0
    stride: int | None = None
    window_nll: tuple[float, ...] = ()
    window_weight: tuple[int, ...] = ()


def window_batches(windows: Sequence[Window], token_budget: int, max_rows: int):
    """Indices of windows per forward pass: same first scored position, longest first."""
    order = sorted(range(len(windows)), key=lambda i: (windows[i].lo, -len(windows[i].ids)))
    batch: list[int] = []
    for i in order:
        w = windows[i]
        if batch:
            head = windows[batch[0]]
            rows = len(batch) + 1
            if (w.lo != head.lo or rows > max_rows
                    or rows * (head.hi - head.lo) > token_budget
                    or rows * len(head.ids) > token_budget):
                yield batch
                batch = []
        batch.append(i)
    if batch:
        yield batch


@torch.inference_mode()
def score_windows(model, windows: Sequence[Window], pad_id: int, batch_size: int = 16,
                  token_budget: int | None = None, progress: bool = False) -> list[float]:
    """Summed NLL (nats) of each window's targets, in window order.

    ``token_budget`` caps rows x kept positions per forward pass (default: what keeps the
    float32 logits near ``LOGIT_BYTES``); ``batch_size`` caps rows.
    """
    if not windows:
        return []
    device = input_device(model)
    vocab = model.config.vocab_size
    keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
    out = [0.0] * len(windows)
    bar = tqdm(total=len(windows), desc="perplexity", unit="window", disable=not progress)
    for batch in window_batches(windows, window_budget(vocab, token_budget), batch_size):
        rows = [windows[i] for i in batch]
        width = max(len(w.ids) for w in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for r, w in enumerate(rows):
            ids[r, :len(w.ids)] = torch.tensor(w.ids)
        lo, hi = rows[0].lo, max(w.hi for w in rows)
        kwargs = ({"logits_to_keep": torch.arange(lo, hi, device=index_device(model))}
                  if keep_arg else {})
        logits = model(input_ids=ids.to(device), use_cache=False, **kwargs).logits
        if not keep_arg:
            logits = logits[:, lo:hi]
        for r, (i, w) in enumerate(zip(batch, rows, strict=True)):
            tgt = torch.tensor(w.targets, device=logits.device)
            total = 0.0
            # Slices of 1024 positions keep the float32 temporaries small whatever the window.
            for s in range(0, len(w.targets), 1024):
                lg = logits[r, s:min(s + 1024, len(w.targets))].float()
                total += float(F.cross_entropy(lg, tgt[s:s + len(lg)], reduction="sum"))
            out[i] = total
        bar.update(len(batch))
    bar.close()
    return out


def window_budget(vocab: int, token_budget: int | None = None) -> int:
    """Rows x kept positions per forward pass: ``token_budget``, or what keeps the float32
    logits near ``LOGIT_BYTES``."""
    return token_budget or max(LOGIT_BYTES // (4 * vocab), 1)


def window_geometry(windows: Sequence[Window]) -> tuple[int, int, int]:
    """``(rows, width, logit positions per row)`` of the forward pass ``score_windows``
    runs for one batch of ``windows`` (right-padded, logits kept from the first scored
    position to the last)."""
    lo, hi = windows[0].lo, max(w.hi for w in windows)
    return len(windows), max(len(w.ids) for w in windows), hi - lo


def corpus_windows(ids: list[int], protocol: str, seqlen: int, stride: int | None,
                   max_windows: int | None) -> list[Window]:
    """The windows of a corpus protocol (``chunks`` or ``sliding``) over its tokens."""
    if protocol == "chunks":
        return chunk_windows(ids, seqlen, max_windows)
    if protocol == "sliding":
        return sliding_windows(ids, seqlen, stride or seqlen, max_windows)
    raise ValueError(f"unknown corpus protocol {protocol!r}; known: chunks, sliding")


def corpus_perplexity(hf, text: str, protocol: str = "chunks", seqlen: int = 2048,
                      stride: int | None = None, max_windows: int | None = None,
                      ids: Sequence[int] | None = None, progress: bool = False) -> dict:
    """Perplexity of one corpus string under ``chunks`` or ``sliding`` (an ``HFModel``).

    Tokenized once as a whole (``tokenizer(text)``, the guide's and the compression papers'
    call). ``seqlen`` (the window, the guide's ``max_length``) is capped at the model's
    context. Returns ppl, nll (weighted sum), n_tokens, n_windows, per-window mean NLLs
    and weights, and the protocol with its parameters.
    """
    seqlen = min(seqlen, hf.max_length)
    if ids is None:
        ids = hf.tokenizer(text, verbose=False)["input_ids"]
    windows = corpus_windows(list(ids), protocol, seqlen, stride, max_windows)
    sums = score_windows(hf.model, windows, hf.pad_id, hf.batch_size, progress=progress)
    means = [s / len(w.targets) for s, w in zip(sums, windows, strict=True)]
    weights = [w.weight for w in windows]
    nll = sum(m * k for m, k in zip(means, weights, strict=True))
    n = sum(weights)
    return {"ppl": math.exp(nll / n) if n else None, "nll": nll, "n_tokens": n,
            "n_windows": len(windows), "window_nll": means, "window_weight": weights,
            "protocol": protocol, "seqlen": seqlen,
            "stride": stride if protocol == "sliding" else None}


def document_windows(tokenizer, texts: Sequence[str], max_length: int
                     ) -> tuple[list[Window], list[int]]:
    """Every text's rolling windows, and the index of the text each belongs to."""
    prefix = prefix_token_id(tokenizer)
    windows, owner = [], []
    for j, text in enumerate(texts):
        ids = _encode(tokenizer, text) if text else []
        for w in rolling_windows(ids, prefix, max_length):
            windows.append(w)
            owner.append(j)
    return windows, owner


def document_logprobs(hf, texts: Sequence[str], max_length: int | None = None,
                      progress: bool = False) -> list[RollingResponse]:
    """lm-eval's ``loglikelihood_rolling`` per text, windows batched across texts.

    Empty texts (no tokens) get ``RollingResponse(0.0, 0)``, as lm-eval scores them 0.
    """
    windows, owner = document_windows(hf.tokenizer, texts, max_length or hf.max_length)
    sums = score_windows(hf.model, windows, hf.pad_id, hf.batch_size, progress=progress)
    logprob, count = [0.0] * len(texts), [0] * len(texts)
    for j, w, s in zip(owner, windows, sums, strict=True):
        logprob[j] -= s
        count[j] += len(w.targets)
    return [RollingResponse(lp, n) for lp, n in zip(logprob, count, strict=True)]


def rolling_loglikelihood(hf, requests: Sequence[RollingRequest],
                          progress: bool = False) -> list[RollingResponse]:
    """Serve rolling requests: plain texts by the documents protocol, ``WindowedText`` by
    its corpus protocol (answered with a ``CorpusResponse``)."""
    out: list[RollingResponse | None] = [None] * len(requests)
    plain = [i for i, r in enumerate(requests) if not isinstance(r.text, WindowedText)]
    for i, resp in zip(plain, document_logprobs(hf, [requests[i].text for i in plain],
                                                progress=progress), strict=True):
        out[i] = resp
    for i, r in enumerate(requests):
        if isinstance(r.text, WindowedText):
            t = r.text
            res = corpus_perplexity(hf, str(t), t.protocol, t.seqlen, t.stride, t.max_windows,
                                    progress=progress)
            out[i] = CorpusResponse(-res["nll"], res["n_tokens"], t.protocol, res["seqlen"],
                                    res["stride"], tuple(res["window_nll"]),
                                    tuple(res["window_weight"]))
    return out  # type: ignore[return-value]
