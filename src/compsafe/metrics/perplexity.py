"""Perplexity metrics over documents and windows, with bootstrap CIs.

Definitions follow lm-evaluation-harness's rolling-log-likelihood tasks (e.g. WikiText),
summing log-likelihoods over documents before normalising (weighted means, not means of
per-document perplexities). With ``lp_d`` the total log-probability (nats) of document d:

    token_ppl     = exp(-sum_d lp_d / sum_d tokens_d)
    word_ppl      = exp(-sum_d lp_d / sum_d words_d)    words = len(re.split(r"\\s+", text))
    byte_ppl      = exp(-sum_d lp_d / sum_d bytes_d)    bytes = len(text.encode("utf-8"))
    bits_per_byte = -sum_d lp_d / sum_d bytes_d / ln 2

For corpus-level window protocols (``models/windows.py``), with each window's mean NLL
``m_w`` and weight ``k_w``: ``ppl = exp(sum_w m_w k_w / sum_w k_w)``; for ``chunks`` all
``k_w = seqlen - 1``, so this is exp of the mean window loss (the compression papers').
CIs resample documents (or windows) with replacement (``metrics/stats.py``).

    rows = document_rows("twitteraae", {"logprob": lp, "n_tokens": nt, "n_words": nw,
                                        "n_bytes": nb}, n_boot=1000, seed=0)
"""

from __future__ import annotations

import math
import re

import numpy as np

from compsafe.metrics.decl import MetricDecl
from compsafe.metrics.defs import Def, MetricDef, rows_of, safe_div, stratum
from compsafe.metrics.stats import Columns, stable_seed
from compsafe.types import MetricRow

UNITS = {"token_ppl": "n_tokens", "word_ppl": "n_words", "byte_ppl": "n_bytes"}
METRICS = {
    "token_ppl": MetricDecl("higher", "Token perplexity"),
    "word_ppl": MetricDecl("higher", "Word perplexity"),
    "byte_ppl": MetricDecl("higher", "Byte perplexity"),
    "bits_per_byte": MetricDecl("higher", "Bits per byte"),
}
"""Absolute perplexities, harm in language modelling (``metrics/decl.py``; the dialect task
declares them as context: ``tasks/builtin.py``)."""


def count_words(text: str) -> int:
    """lm-eval's word count: pieces of ``re.split(r"\\s+", text)`` (edge blanks count)."""
    return len(re.split(r"\s+", text))


def count_bytes(text: str) -> int:
    """lm-eval's byte count: UTF-8 bytes."""
    return len(text.encode("utf-8"))


def weighted_ppl(logprob, count) -> float | None:
    """exp(-sum(logprob) / sum(count)); None when nothing was counted."""
    total = float(np.sum(count))
    return math.exp(-float(np.sum(logprob)) / total) if total > 0 else None


def bits_per_byte(logprob, n_bytes) -> float | None:
    """-sum(logprob) / sum(bytes) / ln 2; None when there are no bytes."""
    total = float(np.sum(n_bytes))
    return -float(np.sum(logprob)) / total / math.log(2) if total > 0 else None


def document_stats(cols: Columns) -> dict[str, float | None]:
    """token/word/byte perplexity and bits per byte of the documents in ``cols``."""
    out = {m: weighted_ppl(cols["logprob"], cols[c]) for m, c in UNITS.items()}
    out["bits_per_byte"] = bits_per_byte(cols["logprob"], cols["n_bytes"])
    return out


def _ppl_batch(count: str):
    def batch(c: Columns) -> np.ndarray:
        return np.exp(-safe_div(c["logprob"].sum(axis=-1), c[count].sum(axis=-1)))
    return batch


def _bpb_batch(c: Columns) -> np.ndarray:
    return -safe_div(c["logprob"].sum(axis=-1), c["n_bytes"].sum(axis=-1)) / math.log(2)


def document_defs(subset: str, cols: Columns, seed: int = 0, ids=None) -> list[MetricDef]:
    """Definitions of token_ppl, word_ppl, byte_ppl and bits_per_byte over documents."""
    st = stratum(ids, {k: np.asarray(v, dtype=float) for k, v in cols.items()})
    batches = {**{m: _ppl_batch(c) for m, c in UNITS.items()}, "bits_per_byte": _bpb_batch}
    return [MetricDef(subset, "all", metric, (st,),
                      lambda c, m=metric: document_stats(c)[m],
                      stable_seed(seed, "ppl", subset, metric), st.n, batch=batches[metric])
            for metric in (*UNITS, "bits_per_byte")]


def document_rows(subset: str, cols: Columns, n_boot: int = 1000, seed: int = 0
                  ) -> list[MetricRow]:
    """token_ppl, word_ppl, byte_ppl and bits_per_byte with CIs over documents."""
    return rows_of(document_defs(subset, cols, seed), n_boot)


def window_ppl(window_nll, window_weight) -> float | None:
    """exp(sum m_w k_w / sum k_w) over windows; None when every weight is 0."""
    k = np.asarray(window_weight, dtype=float)
    return math.exp(float(np.dot(window_nll, k)) / k.sum()) if k.sum() > 0 else None


def window_ppl_batch(c: Columns) -> np.ndarray:
    return np.exp(safe_div((c["m"] * c["k"]).sum(axis=-1), c["k"].sum(axis=-1)))


def window_defs(subset: str, window_nll, window_weight, seed: int = 0, ids=None) -> list[Def]:
    """token_ppl of a window protocol over windows (``ids``: one per window), and the
    window count (bookkeeping)."""
    st = stratum(ids, {"m": np.asarray(window_nll, dtype=float),
                       "k": np.asarray(window_weight, dtype=float)})
    return [MetricDef(subset, "all", "token_ppl", (st,), lambda c: window_ppl(c["m"], c["k"]),
                      stable_seed(seed, "ppl", subset, "token_ppl"), st.n, batch=window_ppl_batch),
            MetricRow(subset, "all", "n_windows", float(st.n), st.n)]


def window_rows(subset: str, window_nll, window_weight, n_boot: int = 1000, seed: int = 0
                ) -> list[MetricRow]:
    """token_ppl of a window protocol with a CI over windows, and the window count."""
    return rows_of(window_defs(subset, window_nll, window_weight, seed), n_boot)


def count_rows(subset: str, counts: dict[str, int], n: int) -> list[MetricRow]:
    """Bookkeeping rows (``n_skipped_empty``, ``n_invalid_utf8``, ...) out of ``n`` items."""
    return [MetricRow(subset, "all", name, float(v), n) for name, v in counts.items()]
