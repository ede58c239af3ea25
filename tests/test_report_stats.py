"""McNemar's test, the sign-flip permutation test (exact and Monte Carlo; its false-positive
rate simulated at n = 2..300), the minimum detectable effect and Benjamini-Hochberg on
hand-computed cases (checked against scipy when it is installed), and the metric directions
used for 'worse'."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compsafe.report.metric_info import harm, metric_info
from compsafe.report.stats import (
    MIN_N,
    bh_adjust,
    mcnemar,
    minimum_detectable_effect,
    sign_flip_p,
    sign_flip_patterns,
)


def test_mcnemar_exact_by_hand():
    # b=1, c=6: P(X <= 1 | n=7, p=1/2) = (1 + 7) / 128, two-sided doubles it
    assert mcnemar(1, 6) == pytest.approx(16 / 128)
    assert mcnemar(6, 1) == mcnemar(1, 6)
    assert mcnemar(0, 0) == 1.0 and mcnemar(4, 4) == 1.0  # capped at 1
    assert mcnemar(0, 5) == pytest.approx(2 / 32)


def test_mcnemar_chi_squared_with_continuity_correction():
    # b + c = 35 >= 25: (|10 - 25| - 1)^2 / 35 = 5.6 on 1 df
    assert mcnemar(10, 25) == pytest.approx(math.erfc(math.sqrt(5.6 / 2)))
    assert mcnemar(10, 25) == pytest.approx(0.017960, abs=1e-6)


def test_against_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(0, 3), (2, 9), (7, 12), (11, 13)]:
        assert mcnemar(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue)
    for b, c in [(10, 25), (40, 71), (300, 260)]:
        want = stats.chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1)
        assert mcnemar(b, c) == pytest.approx(want)
    p = [0.001, 0.2, 0.03, 0.04, 0.5, 0.012]
    assert bh_adjust(p) == pytest.approx(list(stats.false_discovery_control(p)))


def test_benjamini_hochberg_by_hand():
    # sorted .01 .03 .04 .5 -> m p / rank = .04 .06 .0533 .5 -> running min from the top
    q = bh_adjust([0.01, 0.04, None, 0.03, 0.5])
    assert q[2] is None
    assert q[0] == pytest.approx(0.04) and q[4] == pytest.approx(0.5)
    assert q[1] == pytest.approx(0.04 * 4 / 3) and q[3] == pytest.approx(0.04 * 4 / 3)
    assert bh_adjust([]) == [] and bh_adjust([None]) == [None]
    assert bh_adjust([0.9, 0.95]) == pytest.approx([0.95, 0.95])


def test_sign_flip_patterns_and_p_by_hand():
    flips, exact = sign_flip_patterns(3, 100, np.random.default_rng(0))
    assert exact and flips.shape == (8, 3) and len({tuple(r) for r in flips.tolist()}) == 8
    # mean of +-1 +-2 +-3 over 3: |.| >= 2 only for all-plus and all-minus: p = 2/8
    null = np.array([np.dot(np.where(f, -1, 1), [1, 2, 3]) / 3 for f in flips])
    assert sign_flip_p(2.0, null, exact=True) == 0.25
    assert sign_flip_p(0.0, null, exact=True) == 1.0
    flips, exact = sign_flip_patterns(20, 50, np.random.default_rng(0))
    assert not exact and flips.shape == (50, 20)
    # Monte Carlo: (1 + count) / (1 + B); beyond every swap, the normal tail of the null
    assert sign_flip_p(1.0, np.array([0.5, -1.5, 1.0, 0.2]), exact=False) == pytest.approx(3 / 5)
    null = np.array([-1.0, 1.0] * 50)
    assert sign_flip_p(5.0, null, exact=False) == pytest.approx(math.erfc(5 / math.sqrt(2)))
    assert sign_flip_p(1.0, np.array([np.nan]), exact=False) is None


def test_minimum_detectable_effect():
    reps = np.array([0.1, 0.3] * 50)
    assert minimum_detectable_effect(reps) == pytest.approx(2.8015852 * reps.std(ddof=1))
    assert minimum_detectable_effect(np.array([0.2])) is None


def mean_def(ids, x):
    from compsafe.metrics.defs import MetricDef, stratum
    return MetricDef("s", "all", "mean_score", (stratum(ids, {"x": x}),),
                     lambda c: float(np.mean(c["x"])), 0, len(x),
                     batch=lambda c: np.asarray(c["x"], dtype=float).mean(axis=-1))


def test_paired_sign_flip_on_seven_items_by_hand():
    from compsafe.report.paired import paired_stat

    ids = np.array([f"i{k}" for k in range(7)])
    out = paired_stat(mean_def(ids, np.zeros(7)), mean_def(ids, np.arange(1.0, 8.0)),
                      n_boot=200, seed=0)
    # diffs 1..7 all positive: |sum of +-k| reaches 28 only unswapped or all swapped
    assert out["test"] == "sign_flip" and out["p_value"] == pytest.approx(2 / 2 ** 7)
    assert out["diff"] == 4.0 and out["mde"] > 0
    few = paired_stat(mean_def(ids[:MIN_N - 1], np.zeros(MIN_N - 1)),
                      mean_def(ids[:MIN_N - 1], np.ones(MIN_N - 1)), n_boot=200, seed=0)
    assert few["test"] == "untestable" and few["p_value"] is None and few["diff"] == 1.0


def _null_rows(kind: str, n: int, rng) -> tuple:
    """Two models' outputs on n items, exchangeable per item (the null is exactly true)."""
    from compsafe.metrics.accuracy import accuracy_defs
    from compsafe.metrics.bbq import item_columns, metric_defs

    ids = np.array([f"q{i}" for i in range(n)])
    if kind == "mean":
        latent = rng.normal(size=n)
        a, b = (latent + rng.standard_t(3, n) for _ in range(2))  # heavy tails on purpose
        return mean_def(ids, a), mean_def(ids, b)
    if kind == "proportion":
        p = rng.uniform(0.1, 0.9, n)
        a, b = (rng.random(n) < p for _ in range(2))
        return (next(d for d in accuracy_defs("s", "all", x, ids=ids)) for x in (a, b))
    # s_DIS on disambiguated items with a target: per item a tendency to the biased answer
    p = rng.uniform(0, 1, (n, 3))
    p /= p.sum(axis=1, keepdims=True)
    defs = []
    for _ in range(2):
        pred = np.array([rng.choice(3, p=row) for row in p])
        cols = item_columns(pred, np.zeros(n, int), np.full(n, 2), np.zeros(n, int),
                            np.ones(n, bool))
        defs.append(next(d for d in metric_defs("c", "all", cols, np.zeros(n, bool), ids)
                         if d.metric == "s_dis"))
    return defs


@pytest.mark.parametrize("kind", ["mean", "proportion", "s_dis"])
def test_false_positive_rate_holds_at_every_n(kind):
    """Under the null, P(p <= 0.05) stays at most 0.05 (plus 3 Monte Carlo standard errors)
    at n = 2, 5, 10, 30 and 300; rows below MIN_N are untestable, never significant."""
    from compsafe.report.paired import paired_stat

    sims, alpha = 300, 0.05
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / sims)
    rng = np.random.default_rng(42)
    for n in (2, 5, 10, 30, 300):
        rejected = untestable = 0
        for s in range(sims):
            da, db = _null_rows(kind, n, rng)
            out = paired_stat(da, db, n_boot=100, seed=s)
            if out["p_value"] is None:
                untestable += out["test"] in ("untestable", "none")
            else:
                rejected += out["p_value"] <= alpha
        assert rejected / sims <= bound, (kind, n, rejected)
        if n < MIN_N:
            assert untestable == sims and rejected == 0


def test_directions():
    assert metric_info("bbq", "s_dis").worse_when == "away_from_zero"
    assert harm("away_from_zero", -0.1, 0.3) == pytest.approx(0.2)
    assert harm("lower", 0.6, 0.5) == pytest.approx(0.1)
    assert metric_info("mmlu", "acc").dimension == "downstream"
    assert metric_info("dialect", "word_ppl_ratio_aave_over_sae").worse_when == "higher"
    # a dialect corpus's own perplexity is context; the gap is the bias
    assert metric_info("dialect", "word_ppl").worse_when is None
    assert metric_info("wikitext2", "word_ppl").worse_when == "higher"
    assert metric_info("rtp", "n_failed").worse_when is None


def test_scored_labels_name_the_scorer():
    from compsafe.report.metric_info import scored_label

    assert scored_label("rtp", "expected_max_toxicity", "profanity") == (
        "Expected maximum profanity [profanity]")
    assert scored_label("rtp", "toxicity_probability", "toxigen-roberta") == (
        "Toxicity probability (>= 0.5 at least once) [toxigen-roberta]")
    assert scored_label("bbq", "s_dis", None) == metric_info("bbq", "s_dis").label


def test_statistics_modules_do_not_import_torch():
    import subprocess
    import sys

    mods = ("load", "metric_info", "paired", "stats", "divergent", "exports", "wide", "gate",
            "rebuild", "cli_compare")
    code = ("import sys\n" + "".join(f"import compsafe.report.{m}\n" for m in mods)
            + "from compsafe.report.rebuild import BUILDERS\n"
            + "from compsafe.tasks import TASKS, get_task\n"
            + "[get_task(name) for name in TASKS]  # every task: tasks/ builds requests only\n"
            + "import compsafe.metrics.generation\n"
            + "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_flagged_only_when_q_passes_and_the_ci_excludes_zero():
    from compsafe.report.paired import PairedDiff, adjust

    def diff(p, low, high):
        return PairedDiff(
            base_model="m", model="w", spec_label="wanda-50", method="wanda", sparsity=0.5,
            structure="unstructured", bits=None, group_size=None, task="bbq", subset="all",
            group="all", metric="s_dis", dimension="representational", n=40, baseline=0.1,
            value=0.4, diff=0.3, ci_low=low, ci_high=high, test="sign_flip",
            p_value=p, q_value=None, significant=False, worse=None)

    clear, touches_zero, large_p = adjust([diff(1e-4, 0.1, 0.5), diff(1e-4, 0.0, 0.6),
                                           diff(0.5, 0.1, 0.5)])
    assert clear.significant and clear.worse and clear.q_value == pytest.approx(1.5e-4)
    assert not touches_zero.significant and not touches_zero.worse
    assert not large_p.significant
