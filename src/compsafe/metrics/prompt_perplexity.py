"""Prompt perplexity per group: how surprised the model is by a group's prompts.

The reference study (Xu et al. 2024, ``src/run_generation.py`` / ``src/evaluate.py``
``evaluate_prompt_perplexity``) reports it for ToxiGen, AdvPromptSet and RealToxicityPrompts
as a sign of how compression shifts the model's picture of each group. Input is one record
per prompt: ``{"prompt_id", "group", "subgroup", "nll", "n_tokens"}``, ``nll`` being the
summed negative log-likelihood in nats of the prompt's ``n_tokens`` predicted tokens (None if
scoring failed). With prompts p in a group:

    weighting="token"  (default):  PPL = exp( sum_p nll_p / sum_p n_p )
    weighting="prompt" (the reference study's):  PPL = exp( mean_p (nll_p / n_p) )

The reference computes ``np.exp(np.mean(v))`` over per-prompt mean losses (``output.loss``),
which weights a short prompt like a long one; token weighting is the usual corpus
perplexity. Rows follow :mod:`compsafe.metrics.degeneration`: groups "all", ``<group>`` and
``<group>/<subgroup>``; ``n`` is the number of prompts, and the 95% CI resamples prompts.
Failed prompts (nll None/NaN or no tokens) are left out and counted in ``n_failed``.

    rows = prompt_perplexity_rows(records, "toxigen", n_boot=1000, seed=1234)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from compsafe.metrics.decl import MetricDecl
from compsafe.metrics.defs import Def, rows_of, safe_div, stratum
from compsafe.metrics.degeneration import group_index, metric_def
from compsafe.metrics.stats import Columns
from compsafe.types import MetricRow

WEIGHTINGS = ("token", "prompt")
METRICS = {"prompt_perplexity": MetricDecl(None, "Prompt perplexity")}
"""A diagnostic of the prompts, not a harm (``metrics/decl.py``)."""


def perplexity(nll: np.ndarray, n_tokens: np.ndarray, weighting: str = "token") -> float | None:
    """exp(sum nll / sum tokens), or exp(mean of per-prompt nll / tokens); None if empty."""
    nll, n_tokens = np.asarray(nll, dtype=float), np.asarray(n_tokens, dtype=float)
    if not len(nll):
        return None
    mean_nll = nll.sum() / n_tokens.sum() if weighting == "token" else (nll / n_tokens).mean()
    return float(np.exp(mean_nll))


def _batch(weighting: str):
    """``perplexity`` over replicate rows (columns of shape (B, prompts))."""
    if weighting == "token":
        return lambda c: np.exp(safe_div(c["nll"].sum(axis=-1), c["n_tokens"].sum(axis=-1)))
    return lambda c: np.exp((c["nll"] / c["n_tokens"]).mean(axis=-1))


def prompt_perplexity_defs(
    records: Sequence[Mapping[str, Any]],
    subset: str,
    weighting: str = "token",
    seed: int = 0,
) -> list[Def]:
    """Definitions of ``prompt_perplexity_rows``' rows over prompt ids, and n_failed rows."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be 'token' or 'prompt', got {weighting!r}")
    nll = np.zeros(len(records))
    tokens = np.zeros(len(records))
    valid = np.zeros(len(records), dtype=bool)
    for i, r in enumerate(records):
        v, n = r.get("nll"), r.get("n_tokens") or 0
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and n > 0:
            nll[i], tokens[i], valid[i] = float(v), float(n), True
    pids = np.asarray([str(r.get("prompt_id")) for r in records], dtype=str)

    def stat(c: Columns) -> float | None:
        return perplexity(c["nll"], c["n_tokens"], weighting)

    defs: list[Def] = []
    for group, idx in group_index(records).items():
        ok = idx[valid[idx]]
        uniq, inv = np.unique(pids[ok], return_inverse=True)
        n_prompts = int(inv.max()) + 1 if len(inv) else 0
        cols = {"nll": np.bincount(inv, weights=nll[ok], minlength=n_prompts),
                "n_tokens": np.bincount(inv, weights=tokens[ok], minlength=n_prompts)}
        defs.append(metric_def(subset, group, "prompt_perplexity", stratum(uniq, cols), stat,
                               n_prompts, seed, _batch(weighting)))
        defs.append(MetricRow(subset, group, "n_failed", float(len(idx) - len(ok)), len(idx)))
    return defs


def prompt_perplexity_rows(
    records: Sequence[Mapping[str, Any]],
    subset: str,
    weighting: str = "token",
    n_boot: int = 1000,
    seed: int = 0,
) -> list[MetricRow]:
    """``prompt_perplexity`` and ``n_failed`` for "all", every group and every subgroup.

    Records sharing a ``prompt_id`` (a prompt scored in pieces) are summed into one prompt.
    """
    return rows_of(prompt_perplexity_defs(records, subset, weighting, seed), n_boot)
