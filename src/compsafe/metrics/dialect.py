"""Dialect gaps in perplexity, with bootstrap CIs (reference: Xu et al. 2024, section 3.3).

For dialects a and b (e.g. AAVE and SAE) and a unit u in {token, word, byte}, with
``ppl_u`` the weighted perplexity of ``metrics/perplexity.py``:

    ppl_ratio_{a}_over_{b} = ppl_u(a) / ppl_u(b)      (> 1: the model finds a harder)
    ppl_gap                = ppl_u(a) - ppl_u(b)

Token-level rows are named as above; word and byte rows carry the unit as a prefix
(``word_ppl_ratio_aave_over_sae``, ``byte_ppl_gap``). Independent corpora are
resampled independently (two-sample bootstrap); parallel pairs (Groenwold et al. 2020)
are resampled as pairs, and also give the paired log-likelihood difference

    pair_logprob_diff           = mean_i (lp_a,i - lp_b,i)              nats per pair
    pair_logprob_diff_per_token = mean_i (lp_a,i / n_a,i - lp_b,i / n_b,i)

(< 0: the a side of a pair is less likely than its b paraphrase).

    rows = paired_rows("aave_sae_pairs", "aave", "sae", pair_cols, n_boot=1000, seed=0)
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from compsafe.metrics.decl import MetricDecl
from compsafe.metrics.defs import MetricDef, rows_of, safe_div, stratum
from compsafe.metrics.perplexity import UNITS, weighted_ppl, window_ppl, window_ppl_batch
from compsafe.metrics.stats import (  # noqa: F401  (re-exported: it used to live here)
    Columns,
    stable_seed,
    two_sample_bootstrap_ci,
)
from compsafe.types import MetricRow


def _unit(m: re.Match) -> str:
    return f"{m.group(1).capitalize()} perplexity" if m.group(1) else "Perplexity"


METRICS = {  # the gaps' names come from ``_names``; > 1 (ratio), > 0 (gap): a is harder
    r"^(?:(word|byte)_)?ppl_ratio_(\w+)_over_(\w+)$": MetricDecl(
        "higher", lambda m: f"{_unit(m)} ratio {m.group(2)}/{m.group(3)}"),
    r"^(?:(word|byte)_)?ppl_gap$": MetricDecl("higher", lambda m: f"{_unit(m)} gap"),
    "pair_logprob_diff": MetricDecl("lower", "AAVE - SAE log-likelihood per pair (nats)"),
    "pair_logprob_diff_per_token": MetricDecl("lower",
                                              "AAVE - SAE log-likelihood per token (nats)"),
}
"""What each gap is and which change is harm (``metrics/decl.py``)."""


def _ratio(pa, pb):
    return None if pa is None or pb is None else pa / pb


def _diff(pa, pb):
    return None if pa is None or pb is None else pa - pb


def _names(a: str, b: str, unit_metric: str) -> tuple[str, str]:
    prefix = "" if unit_metric == "token_ppl" else unit_metric.split("_")[0] + "_"
    return f"{prefix}ppl_ratio_{a}_over_{b}", f"{prefix}ppl_gap"


def _ppl(logprob: np.ndarray, count: np.ndarray) -> np.ndarray:
    """weighted_ppl over the last axis (NaN where nothing was counted)."""
    return np.exp(-safe_div(logprob.sum(axis=-1), count.sum(axis=-1)))


_BATCH_OPS = (np.divide, np.subtract)  # ratio, gap


def gap_defs(subset: str, a: str, b: str, cols_a: Columns, cols_b: Columns, seed: int = 0,
             ids_a=None, ids_b=None) -> list[MetricDef]:
    """Ratio and difference of a's and b's perplexities: two strata (independent corpora)."""
    sa = stratum(ids_a, {k: np.asarray(v, dtype=float) for k, v in cols_a.items()})
    sb = stratum(ids_b, {k: np.asarray(v, dtype=float) for k, v in cols_b.items()})
    defs = []
    for metric, count in UNITS.items():
        for name, op, bop in zip(_names(a, b, metric), (_ratio, _diff), _BATCH_OPS,
                                 strict=True):
            def stat(x, y, op=op, count=count):
                return op(weighted_ppl(x["logprob"], x[count]),
                          weighted_ppl(y["logprob"], y[count]))

            def batch(x, y, bop=bop, count=count):
                return bop(_ppl(x["logprob"], x[count]), _ppl(y["logprob"], y[count]))
            defs.append(MetricDef(subset, "all", name, (sa, sb), stat,
                                  stable_seed(seed, "gap", subset, name), sa.n + sb.n,
                                  batch=batch))
    return defs


def window_gap_defs(subset: str, a: str, b: str, windows_a: tuple, windows_b: tuple,
                    seed: int = 0, ids_a=None, ids_b=None) -> list[MetricDef]:
    """Ratio and difference of two corpora's window perplexities (``window_ppl``; token
    unit only, a window has no word or byte count), each corpus' windows resampled
    independently. ``windows_*`` is ``(window_nll, window_weight)``: the corpus-window
    protocol of the reference study's dialect perplexities (its
    ``src/test_perplexity.py:140-154``)."""
    sa, sb = (stratum(ids, {"m": np.asarray(w[0], dtype=float),
                            "k": np.asarray(w[1], dtype=float)})
              for ids, w in ((ids_a, windows_a), (ids_b, windows_b)))
    defs = []
    for name, op, bop in zip(_names(a, b, "token_ppl"), (_ratio, _diff), _BATCH_OPS,
                             strict=True):
        def stat(x, y, op=op):
            return op(window_ppl(x["m"], x["k"]), window_ppl(y["m"], y["k"]))

        def batch(x, y, bop=bop):
            return bop(window_ppl_batch(x), window_ppl_batch(y))
        defs.append(MetricDef(subset, "all", name, (sa, sb), stat,
                              stable_seed(seed, "gap", subset, name), sa.n + sb.n,
                              batch=batch))
    return defs


def gap_rows(subset: str, a: str, b: str, cols_a: Columns, cols_b: Columns,
             n_boot: int = 1000, seed: int = 0) -> list[MetricRow]:
    """Ratio and difference of a's and b's perplexities (independent corpora)."""
    return rows_of(gap_defs(subset, a, b, cols_a, cols_b, seed), n_boot)


def paired_defs(subset: str, a: str, b: str, cols: Columns, seed: int = 0, ids=None
                ) -> list[MetricDef]:
    """Gap definitions and paired log-likelihood differences over pairs (one stratum).

    ``cols`` has ``{a,b}_logprob``, ``{a,b}_n_tokens``, ``{a,b}_n_words``, ``{a,b}_n_bytes``.
    """
    st = stratum(ids, {k: np.asarray(v, dtype=float) for k, v in cols.items()})
    stats: list[tuple[str, Callable[[Columns], float | None], Callable]] = []
    for metric, count in UNITS.items():
        def ppl(c, side, count=count):
            return weighted_ppl(c[f"{side}_logprob"], c[f"{side}_{count}"])

        def bppl(c, side, count=count):
            return _ppl(c[f"{side}_logprob"], c[f"{side}_{count}"])
        ratio, gap = _names(a, b, metric)
        stats.append((ratio, lambda c, ppl=ppl: _ratio(ppl(c, a), ppl(c, b)),
                      lambda c, f=bppl: f(c, a) / f(c, b)))
        stats.append((gap, lambda c, ppl=ppl: _diff(ppl(c, a), ppl(c, b)),
                      lambda c, f=bppl: f(c, a) - f(c, b)))
    stats.append(("pair_logprob_diff",
                  lambda c: float(np.mean(c[f"{a}_logprob"] - c[f"{b}_logprob"])),
                  lambda c: (c[f"{a}_logprob"] - c[f"{b}_logprob"]).mean(axis=-1)))
    def per_token(c):
        return c[f"{a}_logprob"] / c[f"{a}_n_tokens"] - c[f"{b}_logprob"] / c[f"{b}_n_tokens"]
    stats.append(("pair_logprob_diff_per_token", lambda c: float(np.mean(per_token(c))),
                  lambda c: per_token(c).mean(axis=-1)))
    return [MetricDef(subset, "all", name, (st,), stat, stable_seed(seed, "pairs", subset, name),
                      st.n, batch=batch) for name, stat, batch in stats]


def paired_rows(subset: str, a: str, b: str, cols: Columns, n_boot: int = 1000, seed: int = 0
                ) -> list[MetricRow]:
    """Gap rows and paired log-likelihood differences over pairs resampled jointly.

    ``cols`` has ``{a,b}_logprob``, ``{a,b}_n_tokens``, ``{a,b}_n_words``, ``{a,b}_n_bytes``.
    """
    return rows_of(paired_defs(subset, a, b, cols, seed), n_boot)
