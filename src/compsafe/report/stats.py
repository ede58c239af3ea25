"""Paired tests and false discovery rate control for compressed-vs-dense comparisons.

- McNemar's test (McNemar 1947) for a paired binary outcome (correct / incorrect on the same
  items): with b items right under the baseline only and c right under the compressed model
  only, the exact two-sided p-value is ``min(1, 2 * P(X <= min(b, c)))``, X ~ Binomial(b+c,
  1/2); for b + c >= 25 the chi-squared form with continuity correction (Edwards 1948),
  ``(|b - c| - 1)^2 / (b + c)`` on 1 degree of freedom, which agrees with it closely there.
- Paired bootstrap z-test (Efron & Tibshirani 1993, sections 12.5 and 16.4): with the
  difference d and the standard deviation se* of its paired bootstrap replicates,
  ``p = 2 * (1 - Phi(|d| / se*))``. Unlike a p-value read off the replicates, it is not
  limited to multiples of 1/B, which matters after multiplicity correction: with B = 1000
  and m tests a count-based p-value could never pass Benjamini-Hochberg once m > 25.
- Benjamini & Hochberg (1995) step-up adjusted p-values (q-values): sort p ascending,
  ``q_(i) = min_{j >= i} min(1, m * p_(j) / j)``; rejecting q <= alpha controls the false
  discovery rate at alpha for independent or positively dependent tests.

    q = bh_adjust([0.01, 0.04, None, 0.03])   # None stays None (untestable)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EXACT_BELOW = 25
"""McNemar: exact binomial test when fewer discordant pairs than this, else chi-squared."""


def mcnemar(b: int, c: int) -> float:
    """Two-sided McNemar p-value for b and c discordant pairs (exact below ``EXACT_BELOW``)."""
    n = b + c
    if n == 0:
        return 1.0
    if n < EXACT_BELOW:
        k = min(b, c)
        # P(X <= k) for X ~ Bin(n, 1/2), summed in log space (no overflow for large n)
        log_terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                     - n * math.log(2) for i in range(k + 1)]
        return min(1.0, 2.0 * float(np.exp(log_terms).sum()))
    stat = max(abs(b - c) - 1, 0) ** 2 / n
    return math.erfc(math.sqrt(stat / 2))  # chi-squared(1) survival function


def bootstrap_z_p(diff: float, replicates: np.ndarray) -> float | None:
    """2 * (1 - Phi(|diff| / sd(replicates))); None with fewer than 2 defined replicates.

    A zero spread gives p = 1 for a zero difference and None (untestable) otherwise: every
    resample shows the same difference, which in practice means a single item (or unit),
    and one item is no evidence of a shift.
    """
    reps = np.asarray(replicates, dtype=float)
    reps = reps[np.isfinite(reps)]
    if len(reps) < 2:
        return None
    se = float(reps.std(ddof=1))
    if se <= 1e-12 * max(1.0, abs(diff)):  # equal replicates, up to float rounding
        return 1.0 if diff == 0 else None
    return math.erfc(abs(diff) / se / math.sqrt(2))


def bh_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values; None entries are skipped and stay None."""
    idx = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    m = len(idx)
    if m == 0:
        return out
    p = np.array([p_values[i] for i in idx], dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    q = np.empty(m)
    q[order] = q_sorted
    for i, v in zip(idx, q, strict=True):
        out[i] = float(v)
    return out
