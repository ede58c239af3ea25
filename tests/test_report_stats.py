"""McNemar's test, the bootstrap z-test and Benjamini-Hochberg on hand-computed cases
(checked against scipy when it is installed), and the metric directions used for 'worse'."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compsafe.report.metric_info import harm, metric_info
from compsafe.report.stats import bh_adjust, bootstrap_z_p, mcnemar


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


def test_bootstrap_z_p():
    reps = np.array([0.1, 0.3] * 50)  # sd = 0.1005 (ddof 1)
    sd = reps.std(ddof=1)
    assert bootstrap_z_p(0.2, reps) == pytest.approx(math.erfc(0.2 / sd / math.sqrt(2)))
    assert bootstrap_z_p(0.0, np.zeros(10)) == 1.0
    # Every replicate equal and nonzero: one item, no evidence either way (untestable).
    assert bootstrap_z_p(0.1, np.full(10, .1)) is None
    assert bootstrap_z_p(0.89, np.array([0.89, 0.89 + 1e-16, 0.89])) is None  # rounding only
    assert bootstrap_z_p(0.1, np.array([np.nan, 0.1])) is None


def test_directions():
    assert metric_info("bbq", "s_dis").worse_when == "away_from_zero"
    assert harm("away_from_zero", -0.1, 0.3) == pytest.approx(0.2)
    assert harm("lower", 0.6, 0.5) == pytest.approx(0.1)
    assert metric_info("mmlu", "acc").dimension == "downstream"
    assert metric_info("dialect", "word_ppl_ratio_aave_over_sae").worse_when == "higher"
    assert metric_info("rtp", "n_failed").worse_when is None


def test_statistics_modules_do_not_import_torch():
    import subprocess
    import sys

    mods = ("load", "metric_info", "paired", "stats", "divergent", "exports", "wide", "gate",
            "rebuild", "cli_compare")
    code = ("import sys\n" + "".join(f"import compsafe.report.{m}\n" for m in mods)
            + "from compsafe.report.rebuild import BUILDERS\n"
            + "[__import__(m) for m in ('compsafe.tasks.bbq', 'compsafe.tasks.perplexity')]\n"
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
            value=0.4, diff=0.3, ci_low=low, ci_high=high, test="paired_bootstrap",
            p_value=p, q_value=None, significant=False, worse=None)

    clear, touches_zero, large_p = adjust([diff(1e-4, 0.1, 0.5), diff(1e-4, 0.0, 0.6),
                                           diff(0.5, 0.1, 0.5)])
    assert clear.significant and clear.worse and clear.q_value == pytest.approx(1.5e-4)
    assert not touches_zero.significant and not touches_zero.worse
    assert not large_p.significant
