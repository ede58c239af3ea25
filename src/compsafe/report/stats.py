"""Paired tests and false discovery rate control for compressed-vs-dense comparisons.

- McNemar's test (McNemar 1947) for a paired binary outcome (correct / incorrect on the same
  items): with b items right under the baseline only and c right under the compressed model
  only, the exact two-sided p-value is ``min(1, 2 * P(X <= min(b, c)))``, X ~ Binomial(b+c,
  1/2); for b + c >= 25 the chi-squared form with continuity correction (Edwards 1948),
  ``(|b - c| - 1)^2 / (b + c)`` on 1 degree of freedom, which agrees with it closely there.
- Paired sign-flip permutation test (Fisher 1935; Good 2005, ch. 3) for every other
  statistic, ratios included: under the null that compression changes nothing, the two
  models' outputs on an item are exchangeable, so swapping them item by item (each with
  probability 1/2, both models' statistics recomputed on the swapped columns) draws from the
  null distribution of the difference. With at most ``EXACT_FLIPS_UP_TO`` items all 2^n
  swaps are enumerated (an exact test); above, ``n_perm`` random swaps give the Monte Carlo
  p-value ``(1 + #{|d*| >= |d|}) / (1 + n_perm)`` (Phipson & Smyth 2010), valid at every n.
  Its floor 1/(1 + n_perm) would keep a large family of rows from ever passing
  Benjamini-Hochberg, so when no swap reaches |d| the normal tail ``2 (1 - Phi(|d| / sd*))``
  of the permutation distribution is reported instead; under the null that happens with
  probability 1/(1 + n_perm), so the test's level at alpha >= 1/(1 + n_perm) is unchanged.
- Untestable rows: with fewer than ``MIN_N`` paired items no two-sided exact test can reach
  p <= 0.05 (the smallest sign-flip p-value is 2 / 2^n = 0.0625 at n = 5), so such rows
  carry no p-value and say so.
- Minimum detectable effect at 80% power (two-sided alpha = 0.05, unadjusted): with se* the
  standard deviation of the paired bootstrap replicates of the difference,
  ``MDE = (z_0.975 + z_0.8) * se*`` (Cohen 1988, the normal approximation). A row with no
  significant change but a large MDE means "not detectable at this n", not "safe".
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
MIN_N = 6
"""Rows over fewer paired items are untestable (see the module docstring)."""
EXACT_FLIPS_UP_TO = 12
"""Sign-flip test: enumerate all 2^n swaps up to this many items (4,096 patterns)."""
Z_975, Z_95, Z_80 = 1.959963984540054, 1.6448536269514722, 0.8416212335729143  # N(0,1)
MDE_Z = Z_975 + Z_80


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


def sign_flip_patterns(n: int, n_perm: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Swap patterns (rows x n, True = swap the two models' outputs) and whether they are
    all 2^n of them (exact) rather than ``n_perm`` random ones."""
    if n <= EXACT_FLIPS_UP_TO:
        codes = np.arange(2 ** n, dtype=np.int64)
        return (codes[:, None] >> np.arange(n)) & 1 == 1, True
    return rng.random((n_perm, n)) < 0.5, False


def sign_flip_p(diff: float, null: np.ndarray, exact: bool) -> float | None:
    """Two-sided p-value of ``diff`` against its sign-flip null replicates; None without any
    defined replicate. ``exact``: ``null`` holds every swap pattern (identity included)."""
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if len(null) == 0:
        return None
    tol = 1e-9 * max(1.0, abs(diff))  # float noise must not decide ties
    count = int(np.count_nonzero(np.abs(null) >= abs(diff) - tol))
    if exact:
        return count / len(null)
    p = (count + 1) / (len(null) + 1)
    sd = float(null.std())
    if count == 0 and sd > 0:  # beyond every swap: the tail of its normal approximation
        p = min(p, math.erfc(abs(diff) / sd / math.sqrt(2)))
    return p


def minimum_detectable_effect(replicates: np.ndarray) -> float | None:
    """(z_0.975 + z_0.8) x the sd of the paired bootstrap replicates; None with < 2."""
    reps = np.asarray(replicates, dtype=float)
    reps = reps[np.isfinite(reps)]
    return float(MDE_Z * reps.std(ddof=1)) if len(reps) >= 2 else None


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
